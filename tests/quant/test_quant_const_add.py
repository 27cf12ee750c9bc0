"""An Add with a constant input (``x + bias``) is a quantizable node like any other (issue 14):
``quantize_static`` puts Q/DQ on it, so keeping every quantizable node FP32 must leave no
QuantizeLinear, and quantizing one layer must not quantize the Add too."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgepose.quant.int8 import quantizable_nodes, quantize_int8
from edgepose.quant.lint import lint_qdq
from edgepose.ort_session import create_session


def _conv_bias_add_model():
    """x -> Conv -> Add(., const) -> Relu -> Conv -> y (the bias as a separate Add)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "bias")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1] * 4),
             helper.make_node("Add", ["a", "bias"], ["b"], name="add_bias"),
             helper.make_node("Relu", ["b"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1] * 4)]
    graph = helper.make_graph(nodes, "bias_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    values = create_session(_with_all_outputs(model)).run(None, {"x": x})
    ranges = {name: float(np.abs(v).max()) for name, v in zip(("a", "b", "r", "y", "x"), values + [x])}
    return onnx.shape_inference.infer_shapes(model), ranges, x


def _with_all_outputs(model):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in ("a", "b", "r", "y"))
    return m


def _quantized_tensors(q):
    return {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}


def test_constant_add_is_quantizable():
    model, _, _ = _conv_bias_add_model()
    assert quantizable_nodes(model) == ["conv1", "add_bias", "conv2"]


def test_keeping_every_quantizable_node_fp32_leaves_no_quantize_linear():
    model, ranges, x = _conv_bias_add_model()
    q = quantize_int8(model, ranges, None, nodes_to_exclude=quantizable_nodes(model))
    assert [n.op_type for n in q.graph.node if "Quantize" in n.op_type] == []
    # FP32 through and through: the same numbers as the FP32 graph
    np.testing.assert_array_equal(create_session(q).run(None, {"x": x})[0], create_session(model).run(None, {"x": x})[0])


def test_one_layer_quantized_leaves_the_bias_add_float_and_full_int8_lints_clean():
    model, ranges, _ = _conv_bias_add_model()
    others = [n for n in quantizable_nodes(model) if n != "conv2"]  # as layer_sensitivity quantizes one layer
    only_conv2 = quantize_int8(model, ranges, None, nodes_to_exclude=others)
    assert _quantized_tensors(only_conv2) == {"r"}  # conv2's input only: nothing on the Add's a/b
    full = quantize_int8(model, ranges, None)
    assert {"a", "b"} <= _quantized_tensors(full)  # INT8 still quantizes the Add (as before)
    assert lint_qdq(full) == []
