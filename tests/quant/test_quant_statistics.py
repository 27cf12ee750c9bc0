"""Batched statistics pass and vectorised range methods (issue 15 item 1).

* Batched vs one-sample-at-a-time statistics on the tiny zoo models (a fixed batch-1
  detector run through its dynamic-batch copy, a dynamic-batch pose model): same bin grid,
  histograms within one count per tensor, ranges equal -- exact for minmax, rel 1e-3 for the
  histogram-derived methods (stated tolerance; in practice they are identical).
* The vectorised entropy / MSE thresholds against a plain per-candidate NumPy loop (the
  reference below, the former implementation): equal to rel 1e-9.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgepose.quant import calibration as C
from edgepose.quant import statistics as S
from edgepose.workflows import calibration_feeds as F
from edgepose.quant.int8 import prepare_fp32
from helpers.quant_models import make_tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_stats"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return F.load_calibration_images("synthetic:6:0", size=6, progress=False,
                                     cache_dir=tmp_path_factory.mktemp("synth_stats"))


def _assert_same_statistics(one, batched):
    assert one.keys() == batched.keys()
    for name in one:
        a, b = one[name], batched[name]
        assert (a.lo, a.hi, a.zeros, a.width) == (b.lo, b.hi, b.zeros, b.width), name
        assert len(a.hist) == len(b.hist) and a.hist.sum() == b.hist.sum(), name
        # a value exactly on the grid's top edge lands one bin lower when it is a feed's maximum
        assert np.abs(a.hist - b.hist).sum() <= 2, name


def _assert_same_ranges(one, batched, heads):
    for method in C.METHODS:
        ra = C.compute_ranges(one, method, full_range=heads)
        rb = C.compute_ranges(batched, method, full_range=heads)
        for name in ra:
            if method == "minmax":
                assert ra[name] == rb[name], (method, name)
            else:
                assert rb[name] == pytest.approx(ra[name], rel=1e-3), (method, name)


def test_batched_detector_statistics_equal_one_image_at_a_time(tiny, images):
    det, _ = tiny
    prepared, _ = prepare_fp32(det)
    assert S._batch_dim(prepared) == 1 and S.batch_agnostic(prepared)  # runs as a dynamic-batch copy
    feeds = F.det_feeds(images, det)
    one = C.collect_statistics(prepared, feeds, progress=False, batch_size=1)
    batched = C.collect_statistics(prepared, feeds, progress=False, batch_size=4)
    _assert_same_statistics(one, batched)
    _assert_same_ranges(one, batched, C.head_tensors(prepared))


def test_batched_pose_statistics_equal_one_crop_at_a_time(tiny, images):
    det, pose = tiny
    prepared, _ = prepare_fp32(pose)
    feeds = F.pose_feeds(images, det, pose, score_threshold=0.1)
    assert len(feeds) >= 4 and all(len(f[next(iter(f))]) == 1 for f in feeds)
    one = C.collect_statistics(prepared, feeds, progress=False, batch_size=1)
    batched = C.collect_statistics(prepared, feeds, progress=False, batch_size=16)
    _assert_same_statistics(one, batched)
    _assert_same_ranges(one, batched, C.head_tensors(prepared))


def _reshape_model():
    """x[1,2,3] -> Relu -> Reshape([1, 6]): the Reshape pins the batch to 1."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 6])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_graph_that_pins_the_batch_runs_one_feed_at_a_time():
    model = _reshape_model()
    onnx.checker.check_model(model)
    assert not S.batch_agnostic(model)
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 2, 3)).astype(np.float32)} for _ in range(5)]
    stats = C.collect_statistics(model, feeds, progress=False, batch_size=8)  # must not fail on the Reshape
    everything = np.concatenate([f["x"] for f in feeds])
    assert stats["x"].lo == everything.min() and stats["x"].hi == everything.max()
    assert stats["r"].zeros == int((everything <= 0).sum())


def test_histogram_counts_equal_numpy_binning():
    rng = np.random.default_rng(3)
    first, second = rng.standard_normal(10_000).astype(np.float32), 10 * rng.standard_normal(10_000).astype(np.float32)
    st = S.TensorStats(float("inf"), float("-inf"), np.zeros(64, np.int64), 0.0)
    st.add(first, 64)
    st.add(second, 64)
    w0 = np.float32(np.abs(first).max() / 64)  # the grid of the first call: its max / bins
    merges = int(round(np.log2(st.width / float(w0))))  # bin pairs merged since
    assert merges >= 1 and len(st.hist) <= 4 * 64
    # first call: 64 bins, its maximum (exactly on the top edge) in the last one; then merged
    idx_first = np.minimum(np.floor(np.abs(first) / w0).astype(np.int64), 63) >> merges
    idx_second = np.floor(np.abs(second) / np.float32(st.width)).astype(np.int64)
    expected = np.bincount(np.concatenate([idx_first, idx_second]), minlength=len(st.hist))
    np.testing.assert_array_equal(st.hist, expected)


# ------------------------------------------------------------------ range references
def _entropy_loop(st, levels=128, max_candidates=384, eps=1e-4):
    hist = st.hist.astype(np.float64)
    if st.width == 0 or hist.sum() == 0 or len(hist) <= levels:
        return st.absmax
    nb = int(np.nonzero(hist)[0][-1]) + 1
    hist = hist[:nb]
    if nb <= levels:
        return st.absmax
    step = max(1, (nb - levels) // max_candidates)
    candidates = list(range(levels, nb + 1, step)) + ([nb] if (nb - levels) % step else [])
    best, best_i = np.inf, nb
    for i in candidates:
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        starts = (np.arange(levels) * i) // levels
        nonzero = (hist[:i] > 0).astype(np.float64)
        sums, counts = np.add.reduceat(hist[:i], starts), np.add.reduceat(nonzero, starts)
        per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        q = per_bin[np.repeat(np.arange(levels), np.diff(np.append(starts, i)))] * nonzero
        q = np.where((q == 0) & (p > 0), eps, q)
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best:
            best, best_i = kl, i
    return float(min(st.absmax, best_i * st.width))


def _mse_loop(st, qmax=127, num_candidates=256):
    hist = st.hist.astype(np.float64)
    last = int(np.nonzero(hist)[0][-1]) + 1
    hist = hist[:last]
    centers = (np.arange(last) + 0.5) * st.width
    cands = np.linspace(min(st.absmax, last * st.width) / num_candidates, min(st.absmax, last * st.width),
                        num_candidates)
    errs = []
    for t in cands:
        scale = t / qmax
        q = np.clip(np.round(centers / scale), -qmax, qmax) * scale
        noise = np.minimum(st.width, scale) ** 2 / 12.0
        errs.append(np.sum(hist * ((q - centers) ** 2 + np.where(centers <= t, noise, 0.0))))
    return float(cands[int(np.argmin(errs))])


def _distributions():
    rng = np.random.default_rng(7)
    relu = np.maximum(rng.standard_normal(200_000), 0)
    sparse = np.concatenate([rng.uniform(5, 6, 3000), rng.uniform(9, 10, 50)])  # empty low bins
    return {"gauss": [rng.standard_normal(300_000)], "laplace+outlier": [rng.laplace(size=300_000), [60.0]],
            "relu": [relu], "sparse": [sparse], "growing": [rng.standard_normal(50_000) * s for s in (1, 4, 30)]}


@pytest.mark.parametrize("name", sorted(_distributions()))
def test_vectorised_entropy_and_mse_equal_the_loop(name):
    st = S.TensorStats(float("inf"), float("-inf"), np.zeros(2048, np.int64), 0.0)
    for arr in _distributions()[name]:
        st.add(np.asarray(arr, np.float32), 2048)
    assert C.compute_ranges({"t": st}, "entropy")["t"] == pytest.approx(_entropy_loop(st), rel=1e-9)
    assert C.compute_ranges({"t": st}, "mse")["t"] == pytest.approx(_mse_loop(st), rel=1e-9)
