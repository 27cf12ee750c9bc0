"""CPU-speed rewrites of `--cpu-rewrite` INT8 graphs (issue 15 item 2), each against the graph
it replaces on small models:

* split deconvolution phases (one Conv per output phase, Concat, DepthToSpace): equal to ORT's
  ConvTranspose in float (rel 1e-5) and, quantized, equal to the unsplit INT8 graph (the phases
  share the unsplit conv's range, so every value is quantized as before: tolerance rel 1e-6);
  ORT runs every phase as QLinearConv and the Concat as QLinearConcat;
* a conv whose quantized output goes on to several float ops (the SE pattern) gets one
  identity reader: ORT then runs it as QLinearConv, and the output moves by at most what one
  quantization step of that conv's output can move it.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepose.quant import calibration as C
from edgepose.quant.int8 import CPU_TARGET_KEY, quantize_int8
from edgepose.quant.lint import lint_qdq
from edgepose.quant.rewrite import deconv_to_conv_d2s, fold_batchnorm
from helpers.quant_models import run_onnx as _run


def _model(nodes, inits, x_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ort_ops(path, tmp_path) -> list:
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["CommonSubexpressionElimination"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


@pytest.mark.parametrize("cin, cout, kernel, stride, pads, convs", [
    (3, 5, 4, 2, [1, 1, 1, 1], 4), (4, 3, 3, 2, [1, 1, 0, 0], 4), (4, 6, 6, 3, [1, 2, 2, 1], 9),
    (3, 4, 8, 4, [2, 2, 2, 2], 16)])
def test_split_phases_equal_conv_transpose(cin, cout, kernel, stride, pads, convs):
    rng = np.random.default_rng(kernel)
    inits = [numpy_helper.from_array(rng.standard_normal((cin, cout, kernel, kernel)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", kernel_shape=[kernel, kernel],
                            strides=[stride, stride], pads=pads)
    model = _model([node], inits, [2, cin, 5, 7])
    x = [{"x": rng.standard_normal((2, cin, 5, 7)).astype(np.float32)}]
    ref = _run(model, x)["y"]
    split, names = deconv_to_conv_d2s(onnx.load_from_string(model.SerializeToString()), split_phases=True)
    assert names == ["up"]
    assert [n.op_type for n in split.graph.node] == ["Conv"] * convs + ["Concat", "DepthToSpace"]
    got = _run(split, x)["y"]
    assert got.shape == ref.shape == (2, cout, 5 * stride, 7 * stride)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_split_phases_leave_deconvs_without_zero_taps_whole():
    """2x2/s2/p0: every phase reads one tap, the union is one tap too -- nothing to split."""
    w = numpy_helper.from_array(np.ones((2, 3, 2, 2), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", kernel_shape=[2, 2], strides=[2, 2])
    split, names = deconv_to_conv_d2s(_model([node], [w], [1, 2, 4, 4]), split_phases=True)
    assert names == ["up"] and [n.op_type for n in split.graph.node] == ["Conv", "DepthToSpace"]


def _decoder_model(seed=0, cin=8, mid=6, cout=4):
    """conv -> relu -> 4x4/s2/p1 deconv -> relu -> 1x1 head: CenterNet's decoder in small."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((mid, cin, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(mid).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array((rng.standard_normal((mid, mid, 4, 4)) * 0.3).astype(np.float32), "wd"),
             numpy_helper.from_array(rng.standard_normal(mid).astype(np.float32) * 0.1, "bd"),
             numpy_helper.from_array((rng.standard_normal((cout, mid, 3, 3)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32) * 0.1, "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("ConvTranspose", ["r1", "wd", "bd"], ["d"], name="up", kernel_shape=[4, 4],
                              strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w2", "b2"], ["y"], name="head", pads=[1, 1, 1, 1])]
    return _model(nodes, inits, [1, cin, 12, 10])


def _quantized(model, split, feeds, path):
    prepared, _ = deconv_to_conv_d2s(fold_batchnorm(onnx.load_from_string(model.SerializeToString()))[0],
                                     split_phases=split)
    prepared.metadata_props.add(key=CPU_TARGET_KEY, value="1")
    ranges = C.compute_ranges(C.collect_statistics(prepared, feeds, progress=False), "minmax")
    quantize_int8(prepared, ranges, path)  # lint inside
    return path


def test_split_phases_int8_equals_the_unsplit_int8_graph(tmp_path):
    model = _decoder_model()
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 8, 12, 10)).astype(np.float32)} for _ in range(4)]
    whole = _quantized(model, False, feeds, tmp_path / "whole.onnx")
    split = _quantized(model, True, feeds, tmp_path / "split.onnx")
    ops = _ort_ops(split, tmp_path)
    # conv1 + the four phases in int8; the head's float output keeps it a float conv (by design)
    assert ops.count("QLinearConv") == 1 + 4 and ops.count("Conv") == 1 and ops.count("QLinearConcat") == 1
    assert lint_qdq(split) == []
    test = [{"x": rng.standard_normal((1, 8, 12, 10)).astype(np.float32)} for _ in range(3)]
    ref, got = _run(onnx.load(str(whole)), test), _run(onnx.load(str(split)), test)
    assert np.abs(got["y"] - ref["y"]).max() <= 1e-6 * np.abs(ref["y"]).max()


def _se_model(seed=0, c=8):
    """x -> conv -> {GlobalAveragePool -> 1x1 conv -> Sigmoid, Mul} -> 1x1 conv: an SE block."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.3).astype(np.float32), "ws"),
             numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.3).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv3", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c1"], ["g"], name="gap"),
             helper.make_node("Conv", ["g", "ws"], ["s"], name="fc"),
             helper.make_node("Sigmoid", ["s"], ["sg"], name="sigmoid"),
             helper.make_node("Mul", ["c1", "sg"], ["m"], name="mul"),
             helper.make_node("Conv", ["m", "w2"], ["y"], name="out")]
    return _model(nodes, inits, [2, c, 9, 7])


def _se_int8(model, feeds, path, cpu: bool):
    prepared = onnx.load_from_string(model.SerializeToString())
    if cpu:
        prepared.metadata_props.add(key=CPU_TARGET_KEY, value="1")
    ranges = C.compute_ranges(C.collect_statistics(prepared, feeds, progress=False), "minmax")
    quantize_int8(prepared, ranges, path)
    return path, ranges


def test_conv_feeding_several_float_ops_runs_as_qlinearconv(tmp_path):
    model = _se_model()
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.standard_normal((2, 8, 9, 7)).astype(np.float32)} for _ in range(3)]
    before, ranges = _se_int8(model, feeds, tmp_path / "before.onnx", cpu=False)
    after, _ = _se_int8(model, feeds, tmp_path / "after.onnx", cpu=True)
    assert _ort_ops(before, tmp_path).count("QLinearConv") == 1  # fc only
    assert _ort_ops(after, tmp_path).count("QLinearConv") == 2  # conv3 too
    assert lint_qdq(after) == []
    # only conv3's rounding moves (float conv + Q vs QLinearConv's int32 requantization): at
    # most one step of its output per value, through the Mul (sigmoid <= 1) and the 1x1 conv
    step = ranges["c1"] / 127
    w2 = numpy_helper.to_array(model.graph.initializer[2])
    bound = step * np.abs(w2).sum(axis=(1, 2, 3)).max() * 1.3  # 1.3: the sigmoid's own input moves too
    ref, got = _run(onnx.load(str(before)), feeds), _run(onnx.load(str(after)), feeds)
    assert np.abs(got["y"] - ref["y"]).max() <= bound


def _duc_model(seed=0, cin=8, c=16):
    """conv -> Relu -> DepthToSpace(2) -> conv: FastPose's DUC upsampling in small."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((c, cin, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "b1"),
             numpy_helper.from_array((rng.standard_normal((3, c // 4, 3, 3)) * 0.3).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="duc_conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="duc_relu"),
             helper.make_node("DepthToSpace", ["r1"], ["d"], name="pixel_shuffle", blocksize=2, mode="CRD"),
             helper.make_node("Conv", ["d", "w2"], ["y"], name="head", pads=[1, 1, 1, 1])]
    return _model(nodes, inits, [2, cin, 6, 5])


def test_relu_after_depth_to_space_is_exact_and_runs_int8(tmp_path):
    from edgepose.quant.rewrite import relu_after_depth_to_space

    model = _duc_model()
    rng = np.random.default_rng(4)
    feeds = [{"x": rng.standard_normal((2, 8, 6, 5)).astype(np.float32)} for _ in range(3)]
    swapped = onnx.load_from_string(model.SerializeToString())
    assert relu_after_depth_to_space(swapped) == ["pixel_shuffle"]
    assert [n.op_type for n in swapped.graph.node] == ["Conv", "DepthToSpace", "Relu", "Conv"]
    ref, got = _run(model, feeds), _run(swapped, feeds)
    assert np.array_equal(ref["y"], got["y"])  # the same products in the same order
    paths = {}
    for name, graph in (("before", model), ("after", swapped)):
        graph = onnx.load_from_string(graph.SerializeToString())
        graph.metadata_props.add(key=CPU_TARGET_KEY, value="1")
        ranges = C.compute_ranges(C.collect_statistics(graph, feeds, progress=False), "minmax")
        paths[name] = quantize_int8(graph, ranges, tmp_path / f"{name}.onnx") and tmp_path / f"{name}.onnx"
    before, after = _ort_ops(paths["before"], tmp_path), _ort_ops(paths["after"], tmp_path)
    assert "Relu" in before and "Relu" not in after and after.count("QLinearLeakyRelu") == 1
    assert lint_qdq(paths["after"]) == []
    q_ref, q_got = _run(onnx.load(str(paths["before"])), feeds), _run(onnx.load(str(paths["after"])), feeds)
    assert np.abs(q_got["y"] - q_ref["y"]).max() <= 1e-6 * np.abs(q_ref["y"]).max()


def test_global_pool_as_reduce_mean_keeps_values_and_frees_the_layout(tmp_path):
    from edgepose.quant.int8 import prepare_fp32

    model = _se_model()
    rng = np.random.default_rng(6)
    feeds = [{"x": rng.standard_normal((2, 8, 9, 7)).astype(np.float32)} for _ in range(3)]
    plain = onnx.shape_inference.infer_shapes(model)
    cpu, _ = prepare_fp32(onnx.load_from_string(model.SerializeToString()), cpu_rewrite=True)
    assert [n.op_type for n in cpu.graph.node].count("ReduceMean") == 1
    assert "GlobalAveragePool" not in [n.op_type for n in cpu.graph.node]
    ref, got = _run(plain, feeds), _run(cpu, feeds)
    assert np.abs(got["y"] - ref["y"]).max() <= 1e-5 * np.abs(ref["y"]).max()
    # quantized: the same INT8 values as with the pool (same ranges), fewer layout transposes
    after, ranges = _se_int8(cpu, feeds, tmp_path / "after.onnx", cpu=False)
    before, _ = _se_int8(plain, feeds, tmp_path / "before.onnx", cpu=True)
    ops_before, ops_after = _ort_ops(before, tmp_path), _ort_ops(after, tmp_path)
    assert ops_after.count("Transpose") < ops_before.count("Transpose")
    assert ops_after.count("QLinearConv") == ops_before.count("QLinearConv") == 2
    q_ref, q_got = _run(onnx.load(str(before)), feeds), _run(onnx.load(str(after)), feeds)
    assert np.abs(q_got["y"] - q_ref["y"]).max() <= ranges["m"] / 127 * 1e-3


def _residual_model(seed=0, c=8):
    """conv -> Relu -> {conv -> Relu -> conv, identity} -> Add -> Relu -> {conv, conv}: ReLU forks."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * 0.3).astype(np.float32), f"w{i}")
             for i in range(5)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r0"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["y3"], name="head_a", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["r2", "w4"], ["y4"], name="head_b", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y3", "y4"], ["y"], name="out")]
    return _model(nodes, inits, [1, c, 10, 9])


def test_uint8_activations_fuse_relu_forks_exactly(tmp_path):
    from edgepose.quant.placement import activations_as_int8

    model = _residual_model()
    rng = np.random.default_rng(7)
    feeds = [{"x": rng.standard_normal((1, 8, 10, 9)).astype(np.float32)} for _ in range(3)]
    trt, _ = _se_int8(model, feeds, tmp_path / "trt.onnx", cpu=False)  # the TensorRT-rules graph
    cpu, _ = _se_int8(model, feeds, tmp_path / "cpu.onnx", cpu=True)
    stored = onnx.load(str(cpu))
    zps = {numpy_helper.to_array(i).dtype.name for i in stored.graph.initializer if "zero_point" in i.name}
    assert "uint8" in zps  # activations in uint8 (zero point 128), weights int8
    assert lint_qdq(cpu) == [] and lint_qdq(trt) == []  # a CPU file is linted as the int8 graph it re-expresses
    ops_trt, ops_cpu = _ort_ops(trt, tmp_path), _ort_ops(cpu, tmp_path)
    assert ops_trt.count("Relu") >= 2  # the forks' ReLUs ran in float
    assert "Relu" not in ops_cpu and ops_cpu.count("QLinearLeakyRelu") == 3
    assert ops_cpu.count("QLinearConv") == 5  # every conv, the fork readers included
    ref, got = _run(onnx.load(str(trt)), feeds), _run(stored, feeds)
    assert np.abs(got["y"] - ref["y"]).max() <= 1e-5 * np.abs(ref["y"]).max()
    back = onnx.load(str(cpu))
    assert activations_as_int8(back) and lint_qdq(back) == []
