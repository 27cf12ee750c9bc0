"""INT8 Q/DQ: agreement with FP32 on real pipeline inputs, ORT fusion, exact rewrites,
calibration sources, hashes and range methods.

The models are slim random-weight zoo architectures (CenterNet ResNet-18 at 64x64 and
SimplePose ResNet-18 at 64x48) with randomised BatchNorm statistics, so activations have
realistic, non-trivial distributions; inputs are synthetic people images run through the
runtime's own preprocessing.
"""

import numpy as np
import onnx
import pytest

from edgepose.errors import CalibrationError
from edgepose.quant import calibration as C
from edgepose.workflows import calibration_feeds as F
from edgepose.quant.int8 import fusion_summary, prepare_fp32, quantizable_nodes, quantize_int8
from edgepose.quant.lint import lint_qdq
from helpers.quant_models import make_tiny_models, run_onnx as _run


# ----------------------------------------------------------------------------- tiny models
# (built by tests/helpers/quant_models.py, shared with the FP16 / build / agreement tests)
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("synth_cache")


def _cosine(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ----------------------------------------------------------------------------- agreement
@pytest.mark.parametrize("method", C.METHODS)
def test_int8_detector_agrees_with_fp32_on_pipeline_inputs(tiny, synth_dir, method):
    det, _ = tiny
    calib = F.load_calibration_images("synthetic:8:0", size=8, progress=False, cache_dir=synth_dir)
    held = F.load_calibration_images("synthetic:4:7", size=4, progress=False, cache_dir=synth_dir)
    prepared, _ = prepare_fp32(det)
    stats = C.collect_statistics(prepared, C.FeedReader(F.det_feeds(calib, det)), progress=False)
    heads = C.head_tensors(prepared)
    assert {"hm", "wh", "reg"} <= set(heads) and len(heads) == 6  # + the three heads' last hidden layers
    ranges = C.compute_ranges(stats, method, full_range=heads)
    for name in heads:
        assert ranges[name] == pytest.approx(stats[name].absmax)
    q = quantize_int8(prepared, ranges, None)
    assert lint_qdq(q) == []
    feeds = F.det_feeds(held, det)
    ref, got = _run(onnx.load(str(det)), feeds), _run(q, feeds)
    for head in ("hm", "wh", "reg"):
        assert _cosine(ref[head], got[head]) >= 0.99, (method, head)
    # and INT8 is not FP32 in disguise: the outputs do move
    assert max(float(np.abs(ref[h] - got[h]).max()) for h in ref) > 0


def test_int8_pose_on_detector_crops_agrees_with_fp32(tiny, synth_dir):
    det, pose = tiny
    calib = F.load_calibration_images("synthetic:8:0", size=8, progress=False, cache_dir=synth_dir)
    held = F.load_calibration_images("synthetic:4:7", size=4, progress=False, cache_dir=synth_dir)
    feeds = F.pose_feeds(calib, det, pose, score_threshold=0.05, max_crops=48)
    assert len(feeds) > 4
    prepared, _ = prepare_fp32(pose)
    stats = C.collect_statistics(prepared, feeds, progress=False)
    q = quantize_int8(prepared, C.compute_ranges(stats, "entropy", full_range=C.head_tensors(prepared)), None)
    test_feeds = F.pose_feeds(held, det, pose, score_threshold=0.05, max_crops=16)
    ref, got = _run(onnx.load(str(pose)), test_feeds), _run(q, test_feeds)
    assert _cosine(ref["heatmaps"], got["heatmaps"]) >= 0.99


def test_pose_crops_come_from_the_detector(tiny, synth_dir):
    det, pose = tiny
    images = F.load_calibration_images("synthetic:4:0", size=4, progress=False, cache_dir=synth_dir)
    crops, counts = F.detector_crops(images, det, pose, score_threshold=0.05)
    from edgepose.backends.onnxruntime import ORTRunner
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline(ORTRunner(det), ORTRunner(pose), score_threshold=0.05)
    boxes = [pipe.detect(img)[0] for img in images.images]
    assert counts == [int(((b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)).sum()) for b in boxes]
    assert len(crops) == sum(counts) and crops[0].shape == (1, 3, 64, 48)


# ----------------------------------------------------------------------------- ORT fusion
def test_every_conv_becomes_qlinearconv_with_cse_disabled(tiny, synth_dir):
    det, _ = tiny
    calib = F.load_calibration_images("synthetic:4:0", size=4, progress=False, cache_dir=synth_dir)
    for rewrite in (False, True):
        prepared, info = prepare_fp32(det, cpu_rewrite=rewrite)
        convs = sum(n.op_type == "Conv" for n in prepared.graph.node)
        deconvs = sum(n.op_type == "ConvTranspose" for n in prepared.graph.node)
        assert deconvs == (0 if rewrite else 3)
        ranges = C.compute_ranges(C.collect_statistics(prepared, F.det_feeds(calib, det), progress=False), "minmax")
        path = synth_dir / f"det_rw{int(rewrite)}.int8.onnx"
        quantize_int8(prepared, ranges, path)
        fused = fusion_summary(path)
        heads = len(prepared.graph.output)  # final layers take INT8 in, give float out
        assert fused["QLinearConv"] == convs - heads, fused
        assert fused["float_conv"] == deconvs + heads  # ORT CPU has no quantized ConvTranspose
        q = onnx.load(str(path))
        producers = {o: n.op_type for n in q.graph.node for o in n.output}
        assert all(producers[o.name] == "Conv" for o in q.graph.output)


def _ort_optimized(path, tmp_path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["CommonSubexpressionElimination"])
    return onnx.load(str(tmp_path / "optimized.onnx")).graph


def test_depth_to_space_runs_on_int8_and_residual_adds_fuse(tiny, synth_dir, tmp_path):
    """The placement claim, checked on the graph ORT CPU really runs (all optimisation levels):
    each rewritten deconvolution's DepthToSpace reads the QLinearConv's int8 output (possibly
    through a layout Transpose) instead of a DequantizeLinear, every residual Add becomes a
    QLinearAdd, Relus become QLinearLeakyRelu lookups, and none of it changes an output value
    beyond float rounding."""
    det, _ = tiny
    calib = F.load_calibration_images("synthetic:4:0", size=4, progress=False, cache_dir=synth_dir)
    prepared, info = prepare_fp32(det, cpu_rewrite=True)
    ranges = C.compute_ranges(C.collect_statistics(prepared, F.det_feeds(calib, det), progress=False), "entropy")
    paths = {flag: tmp_path / f"det_dm{int(flag)}.int8.onnx" for flag in (False, True)}
    for flag, path in paths.items():
        quantize_int8(prepared, ranges, path, improve_placement=flag)  # lint runs inside (raises on issues)
    graph = _ort_optimized(paths[True], tmp_path)
    producer = {o: n for n in graph.node for o in n.output}
    d2s = [n for n in graph.node if n.op_type == "DepthToSpace"]
    assert len(d2s) == len(info["deconv_rewritten"]) == 3
    for node in d2s:
        src = producer[node.input[0]]
        if src.op_type == "Transpose":
            src = producer[src.input[0]]
        # the split deconvolution's phase QLinearConvs meet in an int8 QLinearConcat
        assert src.op_type == "QLinearConcat", node.name
        assert all(producer[i].op_type == "QLinearConv" or producer[producer[i].input[0]].op_type == "QLinearConv"
                   for i in src.input[2::3]), node.name
    residual_adds = len([n for n in quantizable_nodes(prepared) if n.endswith("Add")])
    assert sum(n.op_type == "QLinearAdd" for n in graph.node) == residual_adds > 0
    # every DQ -> Relu -> Q became LeakyRelu(0) and runs as an int8 lookup; the Relus left are
    # forks (several QuantizeLinear users: residual blocks, split deconvolutions' phases) and the
    # stem's (feeding MaxPool)
    q = onnx.load(str(paths[True]))
    users = {}
    for n in q.graph.node:
        for name in n.input:
            users.setdefault(name, []).append(n.op_type)
    lookups = [n for n in q.graph.node if n.op_type == "LeakyRelu"]
    left = [n for n in q.graph.node if n.op_type == "Relu"]
    assert len(lookups) + len(left) == sum(n.op_type == "Relu" for n in prepared.graph.node)
    assert all(len(users[n.output[0]]) > 1 or users[n.output[0]] == ["MaxPool"] for n in left)
    # (the Relus feeding a split deconvolution fork to its phase convs, so they are among `left`)
    assert sum(n.op_type == "QLinearLeakyRelu" for n in graph.node) == len(lookups) > 0
    assert sum(n.op_type in ("Relu", "LeakyRelu") for n in graph.node) == len(left)
    before = _ort_optimized(paths[False], tmp_path)
    assert all(producer_op == "Concat" for producer_op in
               ({o: n.op_type for n in before.node for o in n.output}[n.input[0]]
                for n in before.node if n.op_type == "DepthToSpace"))
    feeds = F.det_feeds(calib, det)[:2]
    ref, got = _run(onnx.load(str(paths[False])), feeds), _run(onnx.load(str(paths[True])), feeds)
    for name in ref:
        assert np.abs(got[name] - ref[name]).max() <= 1e-6 * np.abs(ref[name]).max() + 1e-7, name
    assert lint_qdq(paths[True]) == []


# ----------------------------------------------------------------------------- rewrites
def _deconv_model(cin, cout, bias, seed=0):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((cin, cout, 4, 4)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", kernel_shape=[4, 4], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, cin, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, cout, 10, 14])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("cin, cout, bias", [(3, 5, True), (8, 4, False), (1, 1, True)])
def test_deconv_rewrite_equals_conv_transpose(cin, cout, bias):
    from edgepose.quant.rewrite import deconv_to_conv_d2s

    model = _deconv_model(cin, cout, bias)
    x = [{"x": np.random.default_rng(1).standard_normal((2, cin, 5, 7)).astype(np.float32)}]
    ref = _run(model, x)["y"]
    rewritten, names = deconv_to_conv_d2s(onnx.load_from_string(model.SerializeToString()))
    assert names == ["up"]
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    got = _run(rewritten, x)["y"]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def _grouped_deconv_model(cin, cout, group, kernel, stride, pads, seed=0):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((cin, cout // group, kernel, kernel)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", kernel_shape=[kernel, kernel],
                            strides=[stride, stride], pads=pads, group=group)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, cin, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# DLA-34's IDAUp: depthwise ConvTranspose(2f, stride f, pad f//2) for f = 2, 4, 8; plus grouped
# (not depthwise) and asymmetric-pad / odd-stride cases the rewrite also claims
@pytest.mark.parametrize("cin, cout, group, kernel, stride, pads", [
    (8, 8, 8, 4, 2, [1, 1, 1, 1]), (6, 6, 6, 8, 4, [2, 2, 2, 2]), (4, 4, 4, 16, 8, [4, 4, 4, 4]),
    (6, 9, 3, 4, 2, [1, 1, 1, 1]), (4, 4, 2, 3, 2, [1, 1, 0, 0]), (4, 6, 2, 6, 3, [1, 2, 2, 1])])
def test_grouped_deconv_rewrite_equals_conv_transpose(cin, cout, group, kernel, stride, pads):
    from edgepose.quant.rewrite import deconv_to_conv_d2s

    model = _grouped_deconv_model(cin, cout, group, kernel, stride, pads)
    x = [{"x": np.random.default_rng(1).standard_normal((2, cin, 5, 7)).astype(np.float32)}]
    ref = _run(model, x)["y"]
    rewritten, names = deconv_to_conv_d2s(onnx.load_from_string(model.SerializeToString()))
    assert names == ["up"] and [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    conv = rewritten.graph.node[0]
    assert onnx.helper.get_attribute_value(next(a for a in conv.attribute if a.name == "group")) == group
    got = _run(rewritten, x)["y"]
    assert got.shape == ref.shape == (2, cout, 5 * stride, 7 * stride)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_rewrite_and_bn_folding_keep_whole_models_exact(tiny, synth_dir):
    det, pose = tiny
    images = F.load_calibration_images("synthetic:2:3", size=2, progress=False, cache_dir=synth_dir)
    feeds = F.det_feeds(images, det)
    ref = _run(onnx.load(str(det)), feeds)
    prepared, info = prepare_fp32(det, cpu_rewrite=True)
    assert len(info["deconv_rewritten"]) == 3
    assert not any(n.op_type in ("ConvTranspose", "BatchNormalization") for n in prepared.graph.node)
    got = _run(prepared, feeds)
    for name in ref:
        assert np.abs(got[name] - ref[name]).max() <= 1e-5 * np.abs(ref[name]).max() + 1e-7, name


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_fold_batchnorm_is_exact(op):
    from onnx import TensorProto, helper, numpy_helper

    from edgepose.quant.rewrite import fold_batchnorm

    rng = np.random.default_rng(2)
    cin, cout = 3, 5
    w_shape = (cout, cin, 3, 3) if op == "Conv" else (cin, cout, 4, 4)
    attrs = dict(pads=[1, 1, 1, 1]) if op == "Conv" else dict(strides=[2, 2], pads=[1, 1, 1, 1])
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, cout).astype(np.float32), "g"),
             numpy_helper.from_array(rng.uniform(-0.3, 0.3, cout).astype(np.float32), "b"),
             numpy_helper.from_array(rng.uniform(-0.5, 0.5, cout).astype(np.float32), "m"),
             numpy_helper.from_array(rng.uniform(0.5, 2.0, cout).astype(np.float32), "v")]
    nodes = [helper.make_node(op, ["x", "w"], ["c"], name="conv", **attrs),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = [{"x": rng.standard_normal((1, cin, 6, 6)).astype(np.float32)}]
    ref = _run(model, x)["y"]
    folded, count = fold_batchnorm(onnx.load_from_string(model.SerializeToString()))
    assert count == 1 and [n.op_type for n in folded.graph.node] == [op]
    got = _run(folded, x)["y"]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_ineligible_deconv_is_left_alone():
    from edgepose.errors import QuantizationError
    from edgepose.quant.rewrite import deconv_to_conv_d2s

    model = _deconv_model(2, 2, False)
    for a in model.graph.node[0].attribute:
        if a.name == "pads":
            a.ints[:] = [0, 0, 0, 0]
    out, names = deconv_to_conv_d2s(model)
    assert names == [] and out.graph.node[0].op_type == "ConvTranspose"
    with pytest.raises(QuantizationError, match="pads"):
        deconv_to_conv_d2s(model, nodes={"up"})


# ----------------------------------------------------------------------------- calibration
def _write_images(folder, n, seed=0):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))


def test_calibration_hash_changes_when_the_data_changes(tmp_path):
    import cv2

    _write_images(tmp_path / "a", 5)
    first = F.load_calibration_images(tmp_path / "a", size=None, progress=False)
    again = F.load_calibration_images(tmp_path / "a", size=None, progress=False)
    assert len(first) == 5 and first.sha256 == again.sha256
    img = cv2.imread(str(tmp_path / "a" / "img03.png"))
    img[5, 7, 1] ^= 1  # one bit of one pixel
    cv2.imwrite(str(tmp_path / "a" / "img03.png"), img)
    changed = F.load_calibration_images(tmp_path / "a", size=None, progress=False)
    assert changed.sha256 != first.sha256
    assert F.load_calibration_images(tmp_path / "a", size=3, progress=False).sha256 != changed.sha256
    swapped = C.calibration_hash(changed.images[::-1], changed.names[::-1])
    assert swapped != changed.sha256


def test_empty_or_unreadable_sets_raise_calibration_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="--calib"):
        F.load_calibration_images(tmp_path / "empty", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match="unreadable"):
        F.load_calibration_images(tmp_path / "bad", progress=False)
    with pytest.raises(CalibrationError, match="does not exist"):
        F.load_calibration_images(tmp_path / "missing", progress=False)
    with pytest.raises(CalibrationError):
        F.load_calibration_images(None, progress=False)


def test_video_source_gives_evenly_spaced_frames(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(30):
        writer.write(np.full((24, 32, 3), i * 8, np.uint8))
    writer.release()
    frames = F.load_calibration_images(path, size=4, progress=False)
    assert frames.names == [f"clip.avi#{i}" for i in (0, 10, 19, 29)]
    # frame i was painted with value 8*i (MJPG keeps flat frames within a few levels)
    assert [int(round(float(f.mean()) / 8)) for f in frames.images] == [0, 10, 19, 29]


def test_coco_source_reads_listed_images(tmp_path):
    import json

    _write_images(tmp_path / "images", 4, seed=3)
    ann = {"images": [{"id": i, "file_name": f"img{i:02d}.png"} for i in range(4)], "annotations": [],
           "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    got = F.load_calibration_images(tmp_path / "ann.json", size=2, progress=False)
    assert got.names == ["img00.png", "img03.png"]


def _stats(*arrays):
    st = C.TensorStats(float("inf"), float("-inf"), np.zeros(2048, np.int64), 0.0)
    for arr in arrays:
        st.add(np.asarray(arr, np.float32), 2048)
    return st


def test_range_methods_on_a_known_distribution():
    rng = np.random.default_rng(0)
    gauss = [rng.standard_normal(250_000) for _ in range(4)]
    st = _stats(*gauss, [0.0, 0.0])
    assert st.zeros >= 2 and st.hist.sum() == 1_000_000 - (st.zeros - 2)
    assert C.compute_ranges({"t": st}, "minmax")["t"] == pytest.approx(st.absmax)
    # |N(0,1)|: 99.99th percentile 3.89; INT8 MSE optimum ~4 sigma (rounding vs clipping noise)
    assert 3.7 < C.compute_ranges({"t": st}, "percentile")["t"] < 4.1
    assert 3.3 < C.compute_ranges({"t": st}, "mse")["t"] < 4.8
    with_outlier = _stats(*gauss, [40.0])
    assert C.compute_ranges({"t": with_outlier}, "minmax")["t"] == pytest.approx(40.0)
    assert 2.5 < C.compute_ranges({"t": with_outlier}, "entropy")["t"] < 10.0  # KL ignores one outlier
    assert C.compute_ranges({"t": with_outlier}, "percentile")["t"] < 4.1
    # the graph outputs keep their full range whatever the method
    assert C.compute_ranges({"t": with_outlier}, "entropy", full_range=["t"])["t"] == pytest.approx(40.0)


def test_mse_range_minimises_the_measured_error():
    rng = np.random.default_rng(1)
    x = rng.laplace(size=400_000).astype(np.float32)
    t = C.compute_ranges({"t": _stats(x)}, "mse")["t"]

    def err(amax):
        s = amax / 127
        return float(np.mean((np.clip(np.round(x / s), -127, 127) * s - x) ** 2))

    best = min(err(a) for a in np.linspace(1, float(np.abs(x).max()), 200))
    assert err(t) <= best * 1.05


def test_quantizable_nodes_and_exclusions(tiny, synth_dir):
    det, _ = tiny
    prepared, _ = prepare_fp32(det)
    names = quantizable_nodes(prepared)
    assert len(names) == sum(n.op_type in ("Conv", "ConvTranspose", "Add") for n in prepared.graph.node)
    calib = F.load_calibration_images("synthetic:2:0", size=2, progress=False, cache_dir=synth_dir)
    ranges = C.compute_ranges(C.collect_statistics(prepared, F.det_feeds(calib, det), progress=False), "minmax")
    keep = names[:2]
    q = quantize_int8(prepared, ranges, None, nodes_to_exclude=keep)
    assert lint_qdq(q, allow_float=keep) == []
    assert {i.rule for i in lint_qdq(q)} == {"missing-qdq"}
    from edgepose.metadata import metadata_from_proto

    assert metadata_from_proto(q).precision == "int8"
