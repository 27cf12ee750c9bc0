"""CornerNet-Squeeze end to end (issue 6, item 6): export with plugin nodes and with the
standard-op decomposition, decode, and use it as the pipeline's detector."""
import numpy as np
import onnx
import pytest

from edgepose.backends.onnxruntime import ORTRunner
from edgepose.backends.torch_runner import TorchRunner
from edgepose.errors import PluginError
from edgepose.export import torch2onnx
from edgepose.pipeline.pipeline import Pipeline
from edgepose.plugins import ensure_plugins_for, required_plugins

from helpers.cornernet_models import export_tiny_pose, randomised_cornernet


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cornernet")
    model = randomised_cornernet(seed=3)
    decomposed = torch2onnx(model, tmp / "det.onnx", input_size=(127, 127), plugins="off")
    plugin = torch2onnx(model, tmp / "det.plugin.onnx", input_size=(127, 127), plugins="on")
    export_tiny_pose(tmp / "pose.onnx")
    return model, decomposed, plugin, tmp


def test_decomposition_verified_and_plugin_graph_names_corner_pools(exported):
    _, decomposed, plugin, _ = exported
    assert decomposed.verified and all(e.ok for e in decomposed.errors)
    ops = {n.op_type for n in onnx.load(str(decomposed.path)).graph.node}
    assert "CornerPool" not in ops and "Max" in ops
    nodes = [n for n in onnx.load(str(plugin.path)).graph.node if n.op_type == "CornerPool"]
    assert sorted(next(a.i for a in n.attribute if a.name == "mode") for n in nodes) == [0, 1, 2, 3]
    assert required_plugins(plugin.path) == {"CornerPool"}
    assert required_plugins(decomposed.path) == set()


def test_plugin_graph_without_library_says_how_to_build(exported, monkeypatch):
    monkeypatch.delenv("EDGEPOSE_PLUGIN_LIB", raising=False)
    with pytest.raises(PluginError, match=r"CornerPool.*cmake -S plugins"):
        ensure_plugins_for(exported[2].path)


def test_cornernet_as_pipeline_detector_matches_torch(exported):
    model, decomposed, _, tmp = exported
    frame = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pose = ORTRunner(tmp / "pose.onnx")
    onnx_pipe = Pipeline(ORTRunner(decomposed.path), pose, score_threshold=0.0, max_persons=5)
    torch_pipe = Pipeline(TorchRunner(model, meta=decomposed.meta), pose, score_threshold=0.0, max_persons=5)
    got, want = onnx_pipe(frame), torch_pipe(frame)
    assert len(want) > 0, "the randomised detector should find some boxes"
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.box_scores, want.box_scores, atol=1e-5)
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-2)
    ref = onnx_pipe.run_reference(frame)  # batched crops == one person at a time
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-4)
