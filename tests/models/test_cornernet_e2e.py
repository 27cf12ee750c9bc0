"""CornerNet-Squeeze end to end (issue 6, item 6): export with plugin nodes and with the
standard-op decomposition, decode, and use it as the pipeline's detector."""
import numpy as np
import onnx
import pytest
import torch

from edgepose.backends.onnxruntime import ORTRunner
from edgepose.backends.torch_runner import TorchRunner
from edgepose.errors import PluginError
from edgepose.export import torch2onnx
from edgepose.metadata import ModelMeta
from edgepose.models import create
from edgepose.models.alphapose import simplepose
from edgepose.pipeline.pipeline import Pipeline
from edgepose.plugins import ensure_plugins_for, required_plugins


def _randomised_cornernet():
    torch.manual_seed(3)  # the conv weights too: whether it finds boxes must not depend on test order
    model = create("cornernet_squeeze")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
        for head in ("tl_heats", "br_heats"):  # confident person (class 0) corners
            bias = getattr(model, head)[-1][-1].bias
            bias.fill_(-4.0)
            bias[0] = 1.0
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cornernet")
    model = _randomised_cornernet()
    decomposed = torch2onnx(model, tmp / "det.onnx", input_size=(127, 127), plugins="off")
    plugin = torch2onnx(model, tmp / "det.plugin.onnx", input_size=(127, 127), plugins="on")
    pose = simplepose(num_layers=18, num_joints=17, deconv_filters=(16, 16, 16), widths=(8, 16, 16, 32)).eval()
    pose_meta = ModelMeta(model="tiny_pose", task="sppe", input_size=(64, 32), channel_order="RGB",
                          mean=(0.406, 0.457, 0.480), keypoint_names=[str(i) for i in range(17)])
    torch2onnx(pose, tmp / "pose.onnx", batch="dynamic", meta=pose_meta)
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
