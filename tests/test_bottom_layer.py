"""The shared bottom-layer helpers: compare, onnx_graph, ort_session, tasks, data.coco.

References: NumPy formulas written out here, a hand-built ONNX graph whose wiring is known,
ONNX Runtime's own output for a graph it runs, and the official normalisation constants.
"""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepose.compare import compare_arrays, compare_outputs, compare_runs, cosine, mean_rel_sq_error
from edgepose.data.coco import find_image, read_coco_json
from edgepose.errors import CalibrationError, MetadataError, SourceError
from edgepose.onnx_graph import consumers, first_real_input, input_shape, load_model, name_nodes, producers
from edgepose.ort_session import create_session, run_feeds
from edgepose.tasks import TASK_SPECS, guess_task, model_meta_fields, task_spec


def _graph_model():
    """x -> Relu -> Add(w) -> y, and x -> Neg -> z; ``w`` an initializer also listed as input."""
    w = numpy_helper.from_array(np.full((1, 3), 2.0, np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "w"], ["y"]),
             helper.make_node("Neg", ["x"], ["z"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 3]),
                     helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 3])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_compare_matches_numpy_formulas():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 5)).astype(np.float32)
    got = ref + rng.standard_normal((2, 5)).astype(np.float32) * 1e-3
    row = compare_arrays("a", ref, got, tolerance=1e-2)
    r64, g64 = ref.astype(np.float64), got.astype(np.float64)
    assert row.max_abs == pytest.approx(np.abs(g64 - r64).max(), rel=1e-12)
    assert row.max_rel == pytest.approx(np.abs(g64 - r64).max() / np.abs(r64).max(), rel=1e-12)
    assert row.cosine == pytest.approx(r64.ravel() @ g64.ravel() / np.linalg.norm(r64) / np.linalg.norm(g64))
    assert row.rel_sq == pytest.approx(np.sum((g64 - r64) ** 2) / np.sum(r64 ** 2))
    assert row.ok and not compare_arrays("a", ref, got, tolerance=1e-6).ok
    assert cosine(ref, -ref) == pytest.approx(-1.0)
    bad = compare_outputs({"a": ref}, {"a": ref[:1]}, 1.0)[0]
    assert not bad.ok and bad.max_abs == float("inf")
    # runs: worst max_rel over feeds, mean rel_sq
    runs = compare_runs([{"a": ref}, {"a": ref}], [{"a": ref}, {"a": got}], tolerance=1e-2)[0]
    assert runs.max_rel == pytest.approx(row.max_rel) and runs.rel_sq == pytest.approx(row.rel_sq / 2)
    assert mean_rel_sq_error([{"a": ref}, {"a": ref}], [{"a": ref}, {"a": got}]) == pytest.approx(row.rel_sq / 2)


def test_graph_helpers_on_a_known_graph(tmp_path):
    model = _graph_model()
    graph = model.graph
    assert producers(graph)["y"].op_type == "Add" and "x" not in producers(graph)
    users = consumers(graph)
    assert sorted((n.op_type, slot) for n, slot in users["x"]) == [("Neg", 0), ("Relu", 0)]
    assert [(n.op_type, slot) for n, slot in users["w"]] == [("Add", 1)]
    assert first_real_input(graph).name == "x"  # the weight listed as an input is skipped
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    assert input_shape(path) == ("x", (1, 3))
    assert [n.name for n in name_nodes(load_model(path)).graph.node] == ["Relu_0", "Add_0", "Neg_0"]
    with pytest.raises(MetadataError, match="no such file"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CalibrationError, match="not a readable ONNX file"):
        load_model(tmp_path / "junk.onnx", error=CalibrationError)


def test_session_factory_runs_models_and_paths(tmp_path):
    model = _graph_model()
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    out = run_feeds(create_session(model, threads=1, disable_cse=True), [{"x": x}])[0]
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0) + 2.0)
    np.testing.assert_array_equal(out["z"], -x)
    optimized = tmp_path / "opt.onnx"
    create_session(model, threads=1, optimized_path=optimized, extended_only=True)
    assert optimized.is_file() and onnx.load(str(optimized)).graph.node
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="ONNX Runtime cannot load"):
        create_session(tmp_path / "bad.onnx", error=CalibrationError)


def test_task_table_matches_the_official_rules():
    from edgepose.metadata import ALPHAPOSE_MEAN_RGB, COCO_MEAN_BGR, TASKS

    assert tuple(TASK_SPECS) == TASKS
    ctdet, sppe = model_meta_fields("ctdet", 3), model_meta_fields("sppe")
    assert ctdet["channel_order"] == "BGR" and ctdet["mean"] == COCO_MEAN_BGR and ctdet["num_classes"] == 3
    assert ctdet["heads"]["hm"] == {"channels": 3, "stride": 4, "activation": "sigmoid"}
    assert sppe["channel_order"] == "RGB" and sppe["mean"] == ALPHAPOSE_MEAN_RGB and sppe["std"] == (1.0, 1.0, 1.0)
    assert len(sppe["keypoint_names"]) == 17 and len(sppe["flip_pairs"]) == 8
    assert model_meta_fields("cornernet")["heads"]["tl_heat"]["stride"] == 8
    assert guess_task(["hm", "wh", "reg"]) == ("ctdet", None)
    assert guess_task(["dets"]) == ("ctdet", "ctdet_topk")
    assert guess_task(["coords", "scores"]) == ("sppe", "sppe_argmax")
    assert guess_task(["tl_heat", "br_heat"]) == ("cornernet", None) and guess_task(["a", "b"]) is None
    assert task_spec("ctdet").input_multiple == 32 and task_spec("sppe").role == "pose"
    with pytest.raises(MetadataError, match="unknown task"):
        task_spec("segm")


def test_coco_reader_errors_and_image_lookup(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [], "annotations": []}))
    assert read_coco_json(ann) == {"images": [], "annotations": []}
    roots = [tmp_path / "images", tmp_path]
    assert find_image("a.jpg", roots) == tmp_path / "images" / "a.jpg"
    assert find_image("b.jpg", roots) == tmp_path / "b.jpg"
    assert find_image("c.jpg", roots) == tmp_path / "images" / "c.jpg"
    with pytest.raises(SourceError, match="no such annotation file"):
        read_coco_json(tmp_path / "none.json")
    ann.write_text("{")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        read_coco_json(ann, error=CalibrationError)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(SourceError, match="not a COCO annotation file"):
        read_coco_json(ann)


def test_progress_lines_print_once_even_after_a_library_configures_logging():
    """ONNX Runtime's quantization package (among others) calls logging.basicConfig() on import;
    the progress lines say() prints must not then appear a second time as ``INFO:edgepose:...``."""
    import subprocess
    import sys

    code = ("from edgepose.progress import say; say('first', prefix='t'); import logging; "
            "logging.basicConfig(level=logging.INFO); say('second', prefix='t')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["[t] first", "[t] second"]
