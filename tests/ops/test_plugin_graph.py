"""edgepose.ops.plugin_graph: the ONNX Runtime copy of a graph with CornerPool plugin nodes
(each replaced by its exact decomposition) and putting the plugin nodes back (issue 14)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgepose.errors import PluginError
from edgepose.ops.corner_pool import corner_pool_numpy
from edgepose.ops.plugin_graph import decompose_plugin_nodes, restore_plugin_nodes
from edgepose.ort_session import create_session
from edgepose.plugins import required_plugins


def _pool_graph(shape=(1, 3, 5, 7), dynamic=False):
    """X -> Relu -> CornerPool(top) -> Add(., CornerPool(right)) -> Y: two plugin nodes on one input."""
    dims = ["n", 3, "h", "w"] if dynamic else list(shape)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, dims)
    kw = {"domain": "edgepose", "plugin_version": "1", "plugin_namespace": "edgepose"}
    nodes = [helper.make_node("Relu", ["X"], ["r"], name="relu"),
             helper.make_node("CornerPool", ["r"], ["top"], name="pool_top", mode=0, **kw),
             helper.make_node("CornerPool", ["r"], ["right"], name="pool_right", mode=3, **kw),
             helper.make_node("Add", ["top", "right"], ["Y"], name="add")]
    graph = helper.make_graph(nodes, "pools", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgepose", 1)])


def _numpy_reference(x):
    r = np.maximum(x, 0)
    return corner_pool_numpy(r, "top") + corner_pool_numpy(r, "right")


def _run(model, x):
    return create_session(model).run(None, {"X": x})[0]


@pytest.mark.parametrize("dynamic", [False, True])
def test_ort_copy_is_exact_and_keeps_every_other_tensor_name(dynamic):
    model = _pool_graph(dynamic=dynamic)
    copy, sites = decompose_plugin_nodes(model)
    assert [s.name for s in sites] == ["pool_top", "pool_right"]
    assert required_plugins(copy) == set() and required_plugins(model) == {"CornerPool"}  # input untouched
    assert {"Pad", "Slice", "Max"} <= {n.op_type for n in copy.graph.node}
    names = {o for n in copy.graph.node for o in n.output}
    assert {"r", "top", "right", "Y"} <= names  # the plugins' own input/output names survive
    for shape in ((1, 3, 5, 7), (2, 3, 9, 4)) if dynamic else ((1, 3, 5, 7),):
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(_run(copy, x), _numpy_reference(x))  # max is exact: no tolerance


def test_restore_gives_the_plugin_graph_back():
    model = _pool_graph()
    copy, sites = decompose_plugin_nodes(model)
    back = restore_plugin_nodes(copy, sites)
    strip = lambda m: [(n.op_type, list(n.input), list(n.output), n.domain,  # noqa: E731
                        [onnx.helper.get_attribute_value(a) for a in n.attribute]) for n in m.graph.node]
    assert strip(back) == strip(model)
    assert {i.name for i in back.graph.initializer} == set()  # the decomposition's constants are gone
    assert any(o.domain == "edgepose" for o in back.opset_import)
    onnx.checker.check_model(back)


@pytest.mark.parametrize("fp32_first_pad", [False, True])
def test_restore_after_fp16_conversion_gives_fp16_plugin_io_and_the_same_numbers(fp32_first_pad):
    """The FP16 converter keeps Max in FP32 (Casts inside the decomposition; with
    ``fp32_first_pad`` also a Cast into its first node); the plugin comes back reading and
    writing float16 (what CornerPool reports to TensorRT), and decomposing the restored file
    again gives the FP16 graph's outputs bit for bit."""
    from edgepose.quant.fp16 import convert_fp16

    copy, sites = decompose_plugin_nodes(_pool_graph())
    half, _ = convert_fp16(copy, keep_final=False, keep_fp32=[sites[0].replaced_by[0]] if fp32_first_pad else ())
    assert any(n.op_type == "Cast" and "decomposed" in n.name for n in half.graph.node)
    back = restore_plugin_nodes(half, sites)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(back).graph.value_info}
    pools = [n for n in back.graph.node if n.op_type == "CornerPool"]
    assert len(pools) == 2 and not any("decomposed" in n.name for n in back.graph.node)
    for node in pools:
        assert types[node.input[0]] == types[node.output[0]] == TensorProto.FLOAT16
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 7)).astype(np.float32)
    again, _ = decompose_plugin_nodes(back)
    np.testing.assert_array_equal(_run(again, x), _run(half, x))


def test_restore_refuses_a_decomposition_that_is_not_whole():
    copy, sites = decompose_plugin_nodes(_pool_graph())
    inner = next(n for n in copy.graph.node if n.name == sites[0].replaced_by[0]).output[0]
    copy.graph.node.append(helper.make_node("Identity", [inner], ["leak"], name="reader"))
    with pytest.raises(PluginError, match=r"cannot put plugin node 'pool_top' back.*leaks"):
        restore_plugin_nodes(copy, sites)
    copy, sites = decompose_plugin_nodes(_pool_graph())
    copy.graph.node.remove(next(n for n in copy.graph.node if n.name == sites[1].replaced_by[-1]))
    with pytest.raises(PluginError, match=r"'pool_right' back: its decomposition lost"):
        restore_plugin_nodes(copy, sites)


def test_plugin_without_decomposition_names_the_fix():
    model = _pool_graph()
    model.graph.node[1].op_type = "HeatmapTopK"
    with pytest.raises(PluginError, match=r"HeatmapTopK.*--plugins off"):
        decompose_plugin_nodes(model)
