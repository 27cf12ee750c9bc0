"""FP16 graphs: FP32 at the boundary, FP16 inside, final layers FP32, outputs within ~1e-2."""
import numpy as np
import onnx
import pytest

from edgepose.metadata import metadata_from_proto
from edgepose.workflows import calibration_feeds as F
from edgepose.quant.fp16 import convert_fp16

from helpers.quant_models import make_tiny_models, run_onnx as _run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_fp16"))


@pytest.mark.parametrize("role", ["det", "pose"])
def test_fp16_matches_fp32_within_1e2(tiny, tmp_path, role):
    det, pose = tiny
    src = det if role == "det" else pose
    out = tmp_path / f"{role}.fp16.onnx"
    model, kept = convert_fp16(src, out)
    assert out.is_file()
    fp32 = onnx.load(str(src))
    # boundary stays FP32, the weights inside really are FP16
    for vi in list(model.graph.input) + list(model.graph.output):
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    n16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert n16 >= 0.8 * sum(n.op_type in ("Conv", "ConvTranspose") for n in fp32.graph.node)
    # the final layer of each output is kept in FP32
    producers = {o: n for n in model.graph.node for o in n.output}
    finals = {n.name for n in fp32.graph.node if any(o in {g.name for g in fp32.graph.output} for o in n.output)}
    assert finals <= set(kept)
    assert metadata_from_proto(model).precision == "fp16"
    assert producers  # non-empty graph

    images = F.load_calibration_images("synthetic:3:5", size=3, progress=False, cache_dir=tmp_path)
    if role == "det":
        feeds = F.det_feeds(images, det)
    else:
        feeds = F.pose_feeds(images, det, pose, score_threshold=0.05, max_crops=8)
    ref, got = _run(fp32, feeds), _run(model, feeds)
    for name in ref:
        assert got[name].dtype == np.float32
        rel = np.abs(got[name] - ref[name]).max() / np.abs(ref[name]).max()
        assert rel <= 1e-2, (name, rel)
        assert rel > 0  # it is not FP32 in disguise


def test_fp16_keeps_head_sigmoid_in_fp32(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["logits"], name="c2"),
             helper.make_node("Sigmoid", ["logits"], ["y"], name="sig")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out, kept = convert_fp16(model)
    assert {"sig", "c2"} <= set(kept) and "c1" not in kept
    x = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}]
    ref, got = _run(model, x)["y"], _run(out, x)["y"]
    assert np.abs(got - ref).max() <= 1e-2


@pytest.mark.parametrize("role", ["det", "pose"])
def test_fp16_graph_is_topologically_sorted(tiny, role):
    """TensorRT's ONNX parser and onnx.checker need every node after its inputs' producers;
    ORT's float16 converter appends its input casts after their consumers."""
    det, pose = tiny
    out, _ = convert_fp16({"det": det, "pose": pose}[role])
    onnx.checker.check_model(out, full_check=False)
    seen = {i.name for i in out.graph.input} | {t.name for t in out.graph.initializer} | {""}
    for node in out.graph.node:
        missing = [i for i in node.input if i not in seen]
        assert not missing, f"{node.name} reads {missing} before they are produced"
        seen.update(node.output)


def test_sort_topologically_keeps_a_sorted_graph_and_orders_an_unsorted_one():
    from onnx import TensorProto, helper

    from edgepose.onnx_graph import sort_topologically

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n1"), helper.make_node("Neg", ["a"], ["b"], name="n2"),
             helper.make_node("Abs", ["x"], ["c"], name="n3"), helper.make_node("Add", ["b", "c"], ["y"], name="n4")]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])  # noqa: E731
    graph = helper.make_graph(nodes, "g", [vi("x")], [vi("y")])
    assert [n.name for n in sort_topologically(graph).node] == ["n1", "n2", "n3", "n4"]
    shuffled = helper.make_graph([nodes[3], nodes[1], nodes[2], nodes[0]], "g", [vi("x")], [vi("y")])
    assert [n.name for n in sort_topologically(shuffled).node] == ["n3", "n1", "n2", "n4"]
