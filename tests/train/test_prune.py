"""`edgepose prune`: channel removal (Torch-Pruning), the pruned checkpoint format, export and INT8
build of pruned models, fine-tuning.  Models: the shipped default weights (trained on synthetic
people) pruned without training, and tiny randomised FastPose / CenterNet variants."""
from __future__ import annotations

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
pytest.importorskip("torch_pruning")

from edgepose.errors import CheckpointError, UsageError  # noqa: E402
from edgepose.models import create  # noqa: E402
from edgepose.models.checkpoint import load_checkpoint  # noqa: E402
from edgepose.models.defaults import default_weights  # noqa: E402
from edgepose.models.pruned import create_with_weights, layer_widths, save_pruned  # noqa: E402
from edgepose.train.prune import ChannelPruner  # noqa: E402

INPUT = {"default_pose": (128, 96), "default_det": (256, 256)}


def _pruned_default(name, ratio=0.5):
    """Shipped default model ``name`` pruned at ``ratio`` (no training), with its PruneResult."""
    torch.manual_seed(0)
    model = create(name)
    load_checkpoint(model, default_weights(name))
    result = ChannelPruner(model.eval(), torch.randn(1, 3, *INPUT[name]), ratio=ratio).prune()
    return model.eval(), result


@pytest.fixture(scope="module")
def pruned_pose():
    return _pruned_default("default_pose")


@pytest.fixture(scope="module")
def pruned_file(pruned_pose, tmp_path_factory):
    model, result = pruned_pose
    path = tmp_path_factory.mktemp("pruned") / "pose_pruned.pth"
    save_pruned(model, path, "default_pose", {"num_joints": 17}, result.widths_before, {"ratio": 0.5})
    return path


def test_pruning_removes_channels_in_multiples_of_8_and_keeps_the_heads(pruned_pose):
    model, result = pruned_pose
    changed = result.changed
    assert len(changed) > 20  # the trunk and the deconvolutions really shrank
    for path, (before, after) in changed.items():
        if after[1] != before[1]:  # output width changed
            assert after[1] % 8 == 0 and after[1] < before[1], (path, before, after)
    assert result.heads == ["final_layer"]
    assert result.widths_after["final_layer"][1] == 17 == result.widths_before["final_layer"][1]
    assert result.macs_after <= 0.55 * result.macs_before
    assert result.params_after < result.params_before
    assert model(torch.zeros(2, 3, 128, 96))["heatmaps"].shape == (2, 17, 32, 24)


def test_detector_heads_untouched():
    model, result = _pruned_default("default_det", 0.3)
    for head in ("hm", "wh", "reg"):
        for layer in (f"{head}.0", f"{head}.2"):
            assert result.widths_after[layer][1] == result.widths_before[layer][1]
    assert result.widths_after["hm.0"][0] == result.widths_after["deconv_layers.6"][1]  # input follows the trunk
    assert any(b[1] != a[1] for b, a in result.changed.values())


def test_pruned_file_round_trip_and_mismatch_error(pruned_pose, pruned_file):
    model, _ = pruned_pose
    raw = torch.load(str(pruned_file), map_location="cpu", weights_only=True)
    assert raw["edgepose_pruned"]["model"] == "default_pose"
    rebuilt = create_with_weights("default_pose", pruned_file).eval()
    assert layer_widths(rebuilt) == layer_widths(model)
    x = torch.randn(1, 3, 128, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(rebuilt(x)["heatmaps"], model(x)["heatmaps"])
    with pytest.raises(CheckpointError, match="wrong-shaped keys.*pruned default_pose checkpoint"):
        load_checkpoint(create("default_pose"), pruned_file)
    with pytest.raises(CheckpointError, match="pruned default_pose checkpoint, not default_det"):
        create_with_weights("default_det", pruned_file)


def test_export_cli_rebuilds_the_pruned_model_and_matches_torch_on_ort(pruned_pose, pruned_file, tmp_path):
    import onnxruntime as ort
    from click.testing import CliRunner

    from edgepose.cli import main

    out = tmp_path / "pose_pruned.onnx"
    res = CliRunner().invoke(main, ["export", "default_pose", "--weights", str(pruned_file), "--out", str(out),
                                    "--batch", "dynamic"])
    assert res.exit_code == 0, res.output
    model, _ = pruned_pose
    x = np.random.default_rng(1).standard_normal((3, 3, 128, 96)).astype(np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x))["heatmaps"].numpy()
    # FP32 export tolerance: max abs error within 1e-4 of the output's max magnitude
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_torch_runner_loads_a_pruned_file(pruned_pose, pruned_file):
    from edgepose.backends.torch_runner import TorchRunner

    model, _ = pruned_pose
    runner = TorchRunner("default_pose", weights=pruned_file)
    assert layer_widths(runner.model) == layer_widths(model)


def test_fastpose_duc_head_is_left_out_and_the_model_still_exports(tmp_path):
    from edgepose.export import torch2onnx
    from edgepose.models.alphapose import fastpose
    from helpers.quant_models import randomise

    torch.manual_seed(0)
    model = randomise(fastpose(18, 17, widths=(16, 32, 64, 128)), 4).eval()
    result = ChannelPruner(model, torch.randn(1, 3, 64, 48), ratio=0.5).prune()
    assert {"duc1.conv", "duc2.conv", "preact.layer4.1.conv2"} <= set(result.left_out)
    assert all("PixelShuffle" in why for why in result.left_out.values())
    for path in ("duc1.conv", "duc2.conv", "conv_out"):
        assert result.widths_after[path] == result.widths_before[path]
    assert result.widths_after["preact.layer2.0.conv1"][1] < result.widths_before["preact.layer2.0.conv1"][1]
    from edgepose.models import get_spec

    meta = get_spec("fastpose_res50").meta().replace(model="tiny_fastpose")
    report = torch2onnx(model, tmp_path / "fp.onnx", input_size=(64, 48), meta=meta)
    assert report.verified


def test_deformable_models_are_refused_clearly():
    from edgepose.models.centernet_resnet import centernet_resnet

    model = centernet_resnet(18, True, 1, 16, (16, 32, 64, 128), (16, 16, 16))
    with pytest.raises(UsageError, match="deformable convolutions"):
        ChannelPruner(model, torch.randn(1, 3, 64, 64), ratio=0.5)


def test_regularize_adds_the_l1_subgradient_to_batchnorm_scales():
    torch.manual_seed(0)
    model = create("default_pose")
    load_checkpoint(model, default_weights("default_pose"))
    pruner = ChannelPruner(model, torch.randn(1, 3, 128, 96), ratio=0.3, reg=1e-3)
    model.train()
    model(torch.randn(2, 3, 128, 96))["heatmaps"].square().mean().backward()
    bn = model.preact.layer1[0].bn1
    before = bn.weight.grad.clone()
    pruner.regularize(model)
    expected = before.numpy() + 1e-3 * np.sign(bn.weight.detach().numpy())
    np.testing.assert_allclose(bn.weight.grad.numpy(), expected, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from edgepose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("prune_synth")
    generate_dataset(root, 6, seed=7, progress=False)
    return root


def test_finetune_with_distillation_lowers_the_loss(pruned_pose, synth_data):
    import copy

    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople, PoseDataset
    from edgepose.train.prune import distill_step_loss

    teacher = create("default_pose")
    load_checkpoint(teacher, default_weights("default_pose"))
    student = copy.deepcopy(pruned_pose[0])
    meta = teacher.edgepose_spec.meta()
    data = PoseDataset(CocoPeople(synth_data), meta, augment=False, seed=0)
    loss = distill_step_loss("sppe", teacher, 0.5)
    result = fit(student, data, loss, epochs=20, batch_size=8, lr=2e-3, warmup=2, progress=False, max_steps=20,
                 threads=1)
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < 0.7 * first, (first, last)


def test_detector_distillation_loss_runs_and_decreases(synth_data):
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople, DetDataset
    from edgepose.train.prune import distill_step_loss

    teacher = create("default_det")
    load_checkpoint(teacher, default_weights("default_det"))
    student, _ = _pruned_default("default_det", 0.5)
    data = DetDataset(CocoPeople(synth_data), teacher.edgepose_spec.meta(num_classes=1), augment=False, seed=0)
    result = fit(student, data, distill_step_loss("ctdet", teacher), epochs=12, batch_size=6, lr=2e-3, warmup=2,
                 progress=False, max_steps=12, threads=1)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])


def test_int8_build_on_pruned_onnx(pruned_pose, synth_data, tmp_path):
    from edgepose.export import torch2onnx
    from edgepose.workflows.build import BuildOptions, build
    from edgepose.quant.lint import lint_qdq

    import onnx

    det, _ = _pruned_default("default_det", 0.5)
    det_path, pose_path = tmp_path / "det.onnx", tmp_path / "pose.onnx"
    torch2onnx(det, det_path, batch=1)
    torch2onnx(pruned_pose[0], pose_path, batch="dynamic")
    out = tmp_path / "int8"
    # calibration on ground-truth boxes: the pruned detector is not fine-tuned here and may find nobody
    calib = str(synth_data / "annotations.json")
    report = build(BuildOptions(det=det_path, pose=pose_path, precision="int8", calib=calib, calib_size=4,
                                out_dir=out, det_threshold=0.05, progress=False, cache_dir=tmp_path / "cache")).report
    for role in ("det", "pose"):
        model = onnx.load(str(out / f"{role}.int8.onnx"))
        assert lint_qdq(model) == []
    assert report is not None


def test_prune_workflow_writes_a_rebuildable_file_and_report(synth_data, tmp_path):
    import json

    from edgepose.workflows.prune import PruneJob, prune_model

    out = tmp_path / "pose_r0.3.pth"
    job = PruneJob("default_pose", str(default_weights("default_pose")), str(out), data=str(synth_data), ratio=0.3,
                   epochs=1, max_steps=2, batch_size=4, latency_runs=3, progress=False)
    report = prune_model(job)
    assert report.macs_after < report.macs_before and report.latency_ms_after > 0
    assert len(report.finetune_losses) == 2 and len(report.sparse_losses) == 2
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["macs_after"] == report.macs_after and saved["heads"] == ["final_layer"]
    model = create_with_weights("default_pose", out)
    assert layer_widths(model)["preact.conv1"][1] < 32  # narrower than the unpruned 32 channels
    assert "MACs (multiply-accumulates" in report.format()
    with pytest.raises(UsageError, match="already pruned"):
        prune_model(PruneJob("default_pose", str(out), str(tmp_path / "again.pth"), data=str(synth_data)))
    assert not (tmp_path / "again.pth").exists()
