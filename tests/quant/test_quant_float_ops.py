"""float_ops_report: every compute op of an INT8 graph that stays float is listed with why."""
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepose.quant.float_ops import DEFORM_REASON, float_ops_report
from edgepose.quant.int8 import quantize_int8


def _model():
    """stem Conv -> DeformConv (offsets from a Conv) -> ConvTranspose(3x3, s2, p0: no exact
    rewrite) -> Conv, plus a grouped ConvTranspose(4x4, s2, p1) the rewrite could take."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    inits = [init("w_stem", 8, 3, 3, 3), init("w_off", 18, 8, 3, 3), init("w_dcn", 8, 8, 3, 3),
             init("w_up", 8, 8, 3, 3), init("w_gup", 8, 1, 4, 4), init("w_out", 4, 8, 1, 1)]
    nodes = [
        helper.make_node("Conv", ["x", "w_stem"], ["a"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu"),
        helper.make_node("Conv", ["a_relu", "w_off"], ["off"], name="offsets", pads=[1, 1, 1, 1]),
        helper.make_node("DeformConv", ["a_relu", "w_dcn", "off"], ["d"], name="dcn", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("ConvTranspose", ["d", "w_up"], ["u"], name="up_p0", strides=[2, 2]),
        helper.make_node("ConvTranspose", ["u", "w_gup"], ["g"], name="up_grouped", strides=[2, 2],
                         pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["g", "w_out"], ["y"], name="head"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_report_names_every_float_op_with_its_reason():
    model = _model()
    tensors = ["x", "a", "a_relu", "off", "d", "u", "g", "y"]
    q = quantize_int8(model, {t: 2.0 for t in tensors}, None, nodes_to_exclude=["stem"])
    report = {r["node"]: r for r in float_ops_report(q, kept={"stem": "reads the image"})}
    assert set(report) == {"stem", "dcn", "up_p0", "up_grouped", "head"}
    assert report["stem"]["reason"] == "reads the image"
    assert report["dcn"]["op_type"] == "DeformConv" and report["dcn"]["reason"] == DEFORM_REASON
    assert "no INT8 ConvTranspose" in report["up_p0"]["reason"] and "cannot" in report["up_p0"]["reason"]
    assert "pads" in report["up_p0"]["reason"]
    assert "would turn it into an INT8 Conv" in report["up_grouped"]["reason"]
    # INT8 in, float out: the head is a graph output (the offsets conv's output is quantized)
    assert "a graph output" in report["head"]["reason"] and "ONNX Runtime CPU" in report["head"]["reason"]
    # a kept list without reasons gets the generic one
    plain = {r["node"]: r["reason"] for r in float_ops_report(q, kept=["stem"])}
    assert "kept in FP32" in plain["stem"]


def test_conv_whose_quantized_output_forks_is_reported():
    """ORT CPU leaves DQ -> Conv -> Q -> DQ -> {Slice, Slice} in float (DLA-34's offset/mask
    convs): the report must say so, and the same conv with one reader must not be listed."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    starts = [numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s0"), (2, "s2"), (4, "s4"))]
    axes = numpy_helper.from_array(np.array([1], np.int64), "ax")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Slice", ["c", "s0", "s2", "ax"], ["y0"], name="slice0"),
             helper.make_node("Slice", ["c", "s2", "s4", "ax"], ["y1"], name="slice1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y0", "y1")],
                              [w, axes, *starts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = quantize_int8(model, {"x": 3.0, "c": 5.0, "y0": 5.0, "y1": 5.0}, None, quantize_outputs=True)
    report = float_ops_report(q)
    assert [r["node"] for r in report] == ["conv"] and "forks to 2 readers" in report[0]["reason"]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(Path(tempfile.mkdtemp()) / "opt.onnx")
    ort.InferenceSession(q.SerializeToString(), opts, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["CommonSubexpressionElimination"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    assert "QLinearConv" not in ops  # what the reason claims about ONNX Runtime CPU


def test_fully_quantized_graph_reports_nothing():  # output quantized too, so nothing runs float
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = quantize_int8(model, {"x": 3.0, "y": 5.0}, None, quantize_outputs=True)
    assert float_ops_report(q) == []
    assert [r["op_type"] for r in float_ops_report(onnx.load_from_string(model.SerializeToString()))] == ["Conv"]
