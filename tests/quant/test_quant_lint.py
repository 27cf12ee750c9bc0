"""The Q/DQ lint: a correct hand-built graph is clean and runs; each deliberately broken
graph trips exactly the rule it breaks."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepose.errors import QuantizationError
from edgepose.quant.lint import check_qdq, lint_qdq

C_IN, C_OUT = 4, 6


def _graph(act_zp=np.int8(0), act_scale=0.05, w_scale=None, w_axis=0, op="Conv", qdq_on_data=True,
           with_act_zp=True, weight_dtype=np.int8, int32_bias=False, dq_scale=None, extra_nodes=()):
    """x -> Q -> DQ -> Conv(W: DQ(int8 per-channel), float bias) -> y (mutable by kwargs)."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    if op == "Conv":
        w_shape = (C_OUT, C_IN, 3, 3)
    else:  # ConvTranspose: (Cin, Cout, k, k)
        w_shape = (C_IN, C_OUT, 4, 4)
    w_q = rng.integers(-127, 128, size=w_shape).astype(weight_dtype)
    n_scales = w_shape[w_axis] if w_scale is None else None
    w_scale = np.full(n_scales, 0.01, np.float32) if w_scale is None else np.asarray(w_scale, np.float32)
    inits += [numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale, "w_scale"),
              numpy_helper.from_array(np.zeros(w_scale.shape, weight_dtype), "w_zp"),
              numpy_helper.from_array(np.float32(act_scale).reshape(np.shape(act_scale)), "x_scale"),
              numpy_helper.from_array(np.asarray(act_zp).reshape(np.shape(act_scale)), "x_zp"),
              numpy_helper.from_array(np.float32(dq_scale if dq_scale is not None else act_scale)
                                      .reshape(np.shape(act_scale)), "x_scale_dq")]
    w_axis_attr = {"axis": w_axis} if w_scale.size > 1 else {}
    nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w", **w_axis_attr))
    zp_in = ["x_zp"] if with_act_zp else []
    if qdq_on_data:
        act_axis = {"axis": 1} if np.size(act_scale) > 1 else {}
        nodes.append(helper.make_node("QuantizeLinear", ["x", "x_scale"] + zp_in, ["x_q"], name="q_x", **act_axis))
        nodes.append(helper.make_node("DequantizeLinear", ["x_q", "x_scale_dq"] + zp_in, ["x_dq"], name="dq_x",
                                      **act_axis))
        data = "x_dq"
    else:
        data = "x"
    if int32_bias:
        inits += [numpy_helper.from_array(np.zeros(C_OUT, np.int32), "b_q"),
                  numpy_helper.from_array(np.float32(act_scale) * w_scale, "b_scale"),
                  numpy_helper.from_array(np.zeros(C_OUT, np.int32), "b_zp")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b"], name="dq_b", axis=0))
    else:
        inits.append(numpy_helper.from_array(np.linspace(-1, 1, C_OUT).astype(np.float32), "b"))
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]) if op == "Conv" else \
        dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    nodes.append(helper.make_node(op, [data, "w", "b"], ["y"], name="the_conv", **attrs))
    nodes.extend(extra_nodes)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C_OUT, None, None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _rules(model, **kw):
    return sorted({issue.rule for issue in lint_qdq(model, **kw)})


def test_correct_graph_is_clean_and_runs():
    import onnxruntime as ort

    for op, axis in (("Conv", 0), ("ConvTranspose", 1)):
        model = _graph(op=op, w_axis=axis)
        onnx.checker.check_model(model)
        assert lint_qdq(model) == []
        x = np.random.default_rng(1).standard_normal((1, C_IN, 8, 8)).astype(np.float32)
        y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert np.isfinite(y).all()


@pytest.mark.parametrize("kwargs, rule", [
    (dict(act_zp=np.int8(3)), "asymmetric"),
    (dict(act_zp=np.uint8(128)), "uint8"),
    (dict(act_zp=np.uint8(0)), "uint8"),
    (dict(w_scale=0.01), "weight-per-tensor"),
    (dict(qdq_on_data=False), "missing-qdq"),
    (dict(with_act_zp=False), "zero-point-missing"),
    (dict(act_scale=np.full(C_IN, 0.05, np.float32), act_zp=np.zeros(C_IN, np.int8)), "activation-per-channel"),
    (dict(op="ConvTranspose", w_axis=0), "weight-axis"),
    (dict(op="Conv", w_axis=1), "weight-axis"),
    (dict(int32_bias=True), "int32-bias"),
    (dict(dq_scale=0.07), "pair-mismatch"),
    (dict(act_scale=0.0), "bad-scale"),
])
def test_each_broken_rule_is_reported(kwargs, rule):
    model = _graph(**kwargs)
    rules = _rules(model)
    assert rule in rules, rules
    with pytest.raises(QuantizationError, match=rule):
        check_qdq(model)


def test_uint8_weights_and_operator_style_ops_are_reported():
    model = _graph(weight_dtype=np.uint8)
    assert "uint8" in _rules(model)
    extra = helper.make_node("QLinearConv", ["a", "b", "c", "d", "e", "f", "g", "h"], ["z"], name="qlc")
    assert "qlinear-op" in _rules(_graph(extra_nodes=[extra]))


def test_dq_fed_by_something_else_than_q():
    model = _graph()
    graph = model.graph
    for node in graph.node:  # dq_x now reads an int8 graph input, no QuantizeLinear before it
        if node.name == "dq_x":
            node.input[0] = "x_int8"
    graph.input.append(helper.make_tensor_value_info("x_int8", TensorProto.INT8, [1, C_IN, 8, 8]))
    assert "dq-without-q" in _rules(model)


def test_allow_float_exempts_named_layers_only():
    model = _graph(qdq_on_data=False)
    assert "missing-qdq" in _rules(model)
    assert "missing-qdq" not in _rules(model, allow_float={"the_conv"})
    assert "missing-qdq" in _rules(model, allow_float={"some_other"})
