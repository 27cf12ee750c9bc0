"""CUDA kernels of plugins/ (no TensorRT) against the NumPy references and the standard-op
decompositions, fp32 and fp16.  The kernels are compiled with nvcc (tests/helpers/cuda_kernels.py);
their timings are a benchmark: benchmarks/kernel_timing.py, run by benchmarks/gpu_check.sh.
"""
import os

import numpy as np
import pytest
from helpers.cuda_kernels import (MODES, build_shim, corner_pool_decomposition_torch, corner_pool_gpu,
                                  heatmap_topk_gpu)
from helpers.optional import torch_or_skip

from edgepose.ops.heatmap_topk import heatmap_topk_numpy

torch = torch_or_skip()

DTYPES = {"fp32": (0, torch.float32, np.float32), "fp16": (1, torch.float16, np.float16)}


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if not torch.cuda.is_available():  # this folder is collected only where a CUDA GPU is (conftest)
        pytest.fail("this machine has a CUDA GPU but torch cannot use it (a CPU build?); install a CUDA build of "
                    "torch to test the kernels", pytrace=False)
    so, message = build_shim(os.environ.get("EDGEPOSE_KERNEL_SHIM_DIR") or tmp_path_factory.mktemp("shim"))
    print("\n" + message)
    return so


# ----------------------------------------------------------------------------- corner pool
def corner_pool_reference(x, mode):
    from edgepose.ops.corner_pool import corner_pool_numpy

    return corner_pool_numpy(x, mode)


CP_SHAPES = [(1, 1, 1, 1), (2, 3, 17, 33), (1, 2, 1, 70), (2, 4, 65, 1), (1, 5, 31, 32), (1, 3, 40, 97)]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape", CP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_corner_pool_exact(lib, shape, mode, dtype):
    _, tdt, ndt = DTYPES[dtype]
    rng = np.random.default_rng(sum(shape) + MODES[mode])
    x = rng.normal(size=shape).astype(ndt)
    x.reshape(-1)[:: 7] = x.reshape(-1)[0]  # repeated values (ties)
    got = corner_pool_gpu(lib, torch.from_numpy(x).cuda(), mode).cpu().numpy()
    ref = corner_pool_reference(x, mode)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)  # max is exact in any precision


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_corner_pool_matches_the_decomposition(lib, dtype):
    _, tdt, _ = DTYPES[dtype]
    x = torch.randn(1, 128, 64, 64, device="cuda", dtype=tdt)  # CornerNet-Squeeze pool input size
    for mode in MODES:
        assert torch.equal(corner_pool_gpu(lib, x, mode), corner_pool_decomposition_torch(x, mode)), mode


# ----------------------------------------------------------------------------- heatmap top-k
def _topk_inputs(rng, n, c, h, w, ndt):
    hm = rng.normal(0, 2, size=(n, c, h, w)).astype(ndt)
    wh = rng.uniform(0.5, 30, size=(n, 2, h, w)).astype(ndt)
    reg = rng.uniform(0, 1, size=(n, 2, h, w)).astype(ndt)
    return hm, wh, reg


def _rows(boxes, scores, classes, sel):
    r = np.concatenate([scores[sel, None].astype(np.float64), classes[sel, None].astype(np.float64),
                        boxes[sel].astype(np.float64)], 1)
    return r[np.lexsort(r.T[::-1])]


def assert_same_detections(got, ref, atol_score, atol_box):
    gb, gs, gc = (np.asarray(v) for v in got)
    rb, rs, rc = (np.asarray(v) for v in ref)
    assert gb.shape == rb.shape and gs.shape == rs.shape and gc.shape == rc.shape
    np.testing.assert_allclose(gs.astype(np.float32), rs, atol=atol_score, rtol=0)
    for n in range(rs.shape[0]):
        cut = rs[n, -1]
        gsel, rsel = gs[n] > cut + atol_score, rs[n] > cut + atol_score
        assert gsel.sum() == rsel.sum()
        g, r = _rows(gb[n], gs[n], gc[n], gsel), _rows(rb[n], rs[n], rc[n], rsel)
        np.testing.assert_array_equal(g[:, 1], r[:, 1])  # classes
        np.testing.assert_allclose(g[:, 2:], r[:, 2:], atol=atol_box, rtol=0)


TOPK_CASES = [(1, 1, 1, 1, 1), (2, 3, 7, 5, 10), (2, 2, 9, 1, 12), (1, 80, 128, 128, 100), (2, 80, 64, 64, 100),
              (1, 4, 32, 32, 1000), (1, 80, 96, 96, 4096)]


@pytest.mark.parametrize("n,c,h,w,k", TOPK_CASES)
@pytest.mark.parametrize("apply_sigmoid", [True, False])
def test_heatmap_topk_fp32(lib, n, c, h, w, k, apply_sigmoid):
    rng = np.random.default_rng(n + c + h + w + k)
    hm, wh, reg = _topk_inputs(rng, n, c, h, w, np.float32)
    if not apply_sigmoid:
        hm = (1 / (1 + np.exp(-hm))).astype(np.float32)
    ref = heatmap_topk_numpy(hm, wh, reg, K=k, apply_sigmoid=apply_sigmoid, stride=4)
    got = heatmap_topk_gpu(lib, *(torch.from_numpy(a).cuda() for a in (hm, wh, reg)), k, apply_sigmoid, 4)
    got = [t.cpu().numpy() for t in got]
    assert got[2].dtype == np.int32
    assert_same_detections(got, ref, atol_score=1e-6, atol_box=1e-3)


def test_heatmap_topk_plateau_and_k_above_size(lib):
    hm = np.full((1, 2, 4, 5), -4.0, np.float32)
    hm[0, 0, 1, 1] = hm[0, 0, 1, 2] = 2.0  # equal neighbours: both survive
    wh = np.ones((1, 2, 4, 5), np.float32)
    reg = np.zeros((1, 2, 4, 5), np.float32)
    k = 45  # > C*H*W = 40: rows 40.. are zero with class -1
    boxes, scores, classes = (t.cpu().numpy() for t in heatmap_topk_gpu(
        lib, *(torch.from_numpy(a).cuda() for a in (hm, wh, reg)), k, True, 1))
    ref_b, ref_s, ref_c = heatmap_topk_numpy(hm, wh, reg, K=40, stride=1)
    np.testing.assert_allclose(scores[0, :40], ref_s[0], atol=1e-6)
    np.testing.assert_allclose(boxes[0, :2], ref_b[0, :2], atol=1e-6)  # the two tied peaks, index order
    assert (classes[0, 40:] == -1).all() and (scores[0, 40:] == 0).all() and (boxes[0, 40:] == 0).all()


@pytest.mark.parametrize("n,c,h,w,k", [(2, 3, 7, 5, 10), (1, 80, 128, 128, 100), (2, 80, 64, 64, 100)])
def test_heatmap_topk_fp16(lib, n, c, h, w, k):
    """fp16: the kernel rounds sigmoid to half before the peak test, as an fp16 network does, so
    the reference gets the same rounded probabilities (apply_sigmoid=0 path and sigmoid path)."""
    rng = np.random.default_rng(c + h)
    hm, wh, reg = _topk_inputs(rng, n, c, h, w, np.float16)
    prob16 = (1 / (1 + np.exp(-hm.astype(np.float64)))).astype(np.float16)
    ref = heatmap_topk_numpy(prob16.astype(np.float32), wh.astype(np.float32), reg.astype(np.float32), K=k,
                             apply_sigmoid=False, stride=4)
    dev = [torch.from_numpy(a).cuda() for a in (prob16, wh, reg)]
    got = [t.cpu().numpy() for t in heatmap_topk_gpu(lib, *dev, k, False, 4)]
    assert got[0].dtype == np.float16 and got[1].dtype == np.float16
    assert_same_detections(got, ref, atol_score=1e-3, atol_box=0.5)  # half ulp at 512 px is 0.25
    # sigmoid inside the kernel: expf vs the reference's exp can round to a neighbouring half
    # value, so scores agree to one half ulp and >= 97% of the rows agree exactly
    dev[0] = torch.from_numpy(hm).cuda()
    gb, gs, gc = (t.cpu().numpy() for t in heatmap_topk_gpu(lib, *dev, k, True, 4))
    np.testing.assert_allclose(gs.astype(np.float32), ref[1], atol=1e-3, rtol=0)
    ref_keys = {(int(cl), *np.round(b.astype(np.float32) / 0.5)) for cl, b in zip(ref[2].reshape(-1), ref[0].reshape(-1, 4))}
    got_keys = [(int(cl), *np.round(b.astype(np.float32) / 0.5)) for cl, b in zip(gc.reshape(-1), gb.reshape(-1, 4))]
    agree = np.mean([key in ref_keys for key in got_keys])
    assert agree >= 0.97, f"only {agree:.3f} of the fp16 sigmoid rows match the reference"
