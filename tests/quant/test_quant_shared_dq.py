"""A conv that shares its input DequantizeLinear with a float op (DLA-34's projection conv and
Concat after each MaxPool, issue 14): ONNX Runtime CPU left it float.  One Q/DQ pair per
reader (quant.placement.dedicated_pair_per_reader) makes it a QLinearConv, exactly; and
float_ops names the conv with the reason when the pair is shared."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgepose.quant.float_ops import float_ops_report
from edgepose.quant.int8 import fusion_summary, quantize_int8
from edgepose.quant.lint import lint_qdq


def _maxpool_projection_model():
    """x -> Conv -> Relu -> MaxPool -> m;  m -> Conv(1x1 projection) -> Conv -> y;  Concat(m, m) -> z."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [weight("wa", 4, 3, 3, 3), weight("wp", 4, 4, 1, 1), weight("wy", 4, 4, 3, 3)]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["m"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["m", "wp"], ["p"], name="project"),
             helper.make_node("Conv", ["p", "wy"], ["y"], name="conv_y", pads=[1] * 4),
             helper.make_node("Concat", ["m", "m"], ["z"], name="concat", axis=1)]
    graph = helper.make_graph(nodes, "maxpool_projection",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 8, 8])],
                              initializer=inits)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in "armp")
    names = [o.name for o in probe.graph.output]
    values = dict(zip(names, ort.InferenceSession(probe.SerializeToString()).run(names, {"x": x})))
    ranges = {name: float(np.abs(v).max()) for name, v in {**values, "x": x}.items()}
    return model, ranges, x


def _run_unoptimised(model, x):
    """The Q/DQ graph as written (ORT optimisations off): the numbers a Q/DQ rewrite must keep."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options).run(None, {"x": x})


def test_projection_conv_after_maxpool_fuses_and_values_are_unchanged(tmp_path):
    model, ranges, x = _maxpool_projection_model()
    paths = {flag: tmp_path / f"placement{int(flag)}.onnx" for flag in (False, True)}
    graphs = {flag: quantize_int8(model, ranges, paths[flag], improve_placement=flag) for flag in paths}
    before, after = fusion_summary(paths[False]), fusion_summary(paths[True])
    assert after["QLinearConv"] == before["QLinearConv"] + 1 and after["float_conv"] == before["float_conv"] - 1
    for got, want in zip(_run_unoptimised(graphs[True], x), _run_unoptimised(graphs[False], x)):
        np.testing.assert_array_equal(got, want)  # same scales on every pair: bit-identical
    assert lint_qdq(graphs[True]) == []
    # each reader of the MaxPool output has its own pair now
    readers = [n for n in graphs[True].graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "m"]
    assert len(readers) == 2


def test_float_ops_names_the_conv_while_its_input_pair_is_shared(tmp_path):
    model, ranges, _ = _maxpool_projection_model()
    shared = {r["node"]: r["reason"] for r in float_ops_report(quantize_int8(model, ranges, None,
                                                                             improve_placement=False))}
    assert "input QuantizeLinear is shared with 1 other reader(s) (Concat)" in shared["project"]
    fixed = {r["node"] for r in float_ops_report(quantize_int8(model, ranges, None))}
    assert "project" not in fixed
