"""torch2onnx / `edgepose export`: metadata, dynamic batch, weights, and the failure path."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from edgepose.cli import main
from edgepose.errors import ExportError, UsageError
from edgepose.export import torch2onnx
from edgepose.metadata import COCO_MEAN_BGR, COCO_STD_BGR, ModelMeta, read_metadata
from edgepose.models.checkpoint import save_checkpoint


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def test_cli_export_resdcn18_prints_equivalence_report(tmp_path):
    out = tmp_path / "d.onnx"
    result = CliRunner().invoke(main, ["export", "centernet_resdcn18", "--weights", "random", "--out", str(out),
                                       "--input-size", "128x128"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.split()[:1] in (["hm"], ["wh"], ["reg"])]
    assert len(lines) == 3 and all(line.endswith("ok") for line in lines)
    for line in lines:  # the printed relative error is the measured one and within 1e-4
        assert float(line.split()[3]) <= 1e-4
    meta = read_metadata(out)
    assert (meta.model, meta.task, meta.input_size, meta.opset) == ("centernet_resdcn18", "ctdet", (128, 128), 19)
    assert meta.mean == COCO_MEAN_BGR and meta.std == COCO_STD_BGR and meta.channel_order == "BGR"
    assert meta.heads["hm"]["stride"] == 4 and meta.output_names == ["hm", "wh", "reg"]
    assert any(n.op_type == "DeformConv" for n in onnx.load(str(out)).graph.node)


def test_weights_file_and_dynamic_batch_match_torch(tmp_path):
    from edgepose.models.alphapose import simplepose

    net = simplepose(num_layers=18, num_joints=17, deconv_filters=(16, 16, 16), widths=(8, 16, 16, 32)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    meta = ModelMeta(model="tiny_pose", task="sppe", input_size=(64, 32), channel_order="RGB")
    save_checkpoint(net, tmp_path / "w.pth", fmt="alphapose")
    report = torch2onnx(net, tmp_path / "p.onnx", batch="dynamic", meta=meta)
    assert report.verified and all(e.ok for e in report.errors)
    assert read_metadata(tmp_path / "p.onnx").batch is None
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 32)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x))["heatmaps"].numpy()
    got = _run(tmp_path / "p.onnx", x)["heatmaps"]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


class _ExportDiffers(torch.nn.Module):
    """Computes something else while being exported: a real ORT/torch disagreement."""

    def forward(self, x):
        y = x * 2.0
        if torch.onnx.is_in_onnx_export():
            y = y + 0.5
        return {"out": y}


def test_disagreement_fails_and_leaves_no_file(tmp_path):
    meta = ModelMeta(model="bad", task="sppe", input_size=(32, 32))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="disagree beyond tolerance"):
        torch2onnx(_ExportDiffers(), out, meta=meta, simplify=False)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary is left behind


def test_cli_failure_exit_code_and_bad_arguments(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["export", "centernet_res18", "--weights", str(tmp_path / "none.pth"),
                                  "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(main, ["export", "centernet_res18", "--weights", "random", "--out",
                                  str(tmp_path / "x.onnx"), "--input-size", "100x100"])
    assert result.exit_code == 2 and "multiple of 32" in result.output
    with pytest.raises(UsageError, match="opset"):
        torch2onnx("centernet_resdcn18", tmp_path / "y.onnx", input_size=(64, 64), opset=17)
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
