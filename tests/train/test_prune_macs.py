"""`edgepose prune --ratio` as a MAC budget: the channel ratio search (scan + bisection on deep
copies), both scopes, the old channel meaning, and the pruned tiny model on ONNX Runtime.
Model: a tiny randomised person CenterNet (R18 widths 16-128, 64x64 input)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
pytest.importorskip("torch_pruning")

from edgepose.errors import UsageError  # noqa: E402
from edgepose.train.prune import SEARCH_TOLERANCE, ChannelPruner  # noqa: E402

SIZE = (64, 64)
HEAD_CONVS = [f"{h}.{i}" for h in ("hm", "wh", "reg") for i in (0, 2)]


def _tiny_centernet(seed=0):
    from edgepose.models.centernet_resnet import centernet_resnet
    from helpers.quant_models import randomise

    torch.manual_seed(seed)
    return randomise(centernet_resnet(18, False, 1, 16, (16, 32, 64, 128), (32, 32, 32)), seed + 1)


def _example():
    return torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_mac_target_is_met_by_the_smallest_channel_ratio_with_widths_in_multiples_of_8(scope):
    model = _tiny_centernet()
    untouched = copy.deepcopy(model)
    result = ChannelPruner(model, _example(), ratio=0.4, scope=scope).prune()
    assert result.ratio_of == "macs" and result.scope == scope
    assert result.target_macs == int(0.6 * result.macs_before)
    # the target is a hard upper bound (no tolerance above it) ...
    assert result.macs_after <= result.target_macs
    # ... and the search does not overshoot: a channel ratio 2 x SEARCH_TOLERANCE smaller misses it
    reference = ChannelPruner(untouched, _example(), ratio=0.4, scope=scope)
    assert reference.macs_at(result.channel_ratio - 2 * SEARCH_TOLERANCE) > result.target_macs
    assert reference.macs_at(result.channel_ratio) == result.macs_after
    narrowed = [(p, b, a) for p, (b, a) in result.changed.items() if a[1] != b[1]]
    assert narrowed
    for path, before, after in narrowed:
        assert after[1] % 8 == 0 and after[1] < before[1], (path, before, after)
    for path in HEAD_CONVS:
        assert result.widths_after[path][1] == result.widths_before[path][1], path
    assert 0 < result.channels_removed < 1
    with torch.no_grad():
        assert model(torch.zeros(1, 3, *SIZE))["hm"].shape == (1, 1, 16, 16)


def test_scopes_differ_layer_scope_narrows_every_prunable_layer():
    results = {s: ChannelPruner(_tiny_centernet(), _example(), ratio=0.5, scope=s).prune() for s in ("global", "layer")}
    layer = results["layer"]
    prunable = [p for p, (_, out) in layer.widths_before.items()
                if p.startswith("deconv_layers") and p.split(".")[-1] in ("0", "3", "6")]
    assert prunable and all(layer.widths_after[p][1] < layer.widths_before[p][1] for p in prunable)
    assert results["global"].widths_after != layer.widths_after


def test_ratio_of_channels_keeps_the_channel_meaning():
    model = _tiny_centernet()
    untouched = copy.deepcopy(model)
    result = ChannelPruner(model, _example(), ratio=0.3, ratio_of="channels").prune()
    assert result.ratio_of == "channels" and result.target_macs is None and result.channel_ratio == 0.3
    assert ChannelPruner(untouched, _example(), ratio=0.3).macs_at(0.3) == result.macs_after


def test_unreachable_mac_target_and_bad_options_are_clear_errors():
    with pytest.raises(UsageError, match=r"cannot remove 99 % of the MACs.*smaller --ratio"):
        ChannelPruner(_tiny_centernet(), _example(), ratio=0.99).prune()
    with pytest.raises(UsageError, match="scope one of"):
        ChannelPruner(_tiny_centernet(), _example(), ratio=0.5, scope="block")


def test_mac_target_pruned_model_matches_torch_on_onnx_runtime(tmp_path):
    import onnxruntime as ort

    from edgepose.export import torch2onnx
    from edgepose.models import get_spec

    model = _tiny_centernet()
    ChannelPruner(model, _example(), ratio=0.5, scope="layer").prune()
    model.eval()
    path = tmp_path / "tiny_pruned.onnx"
    meta = get_spec("default_det").meta(num_classes=1).replace(model="tiny_centernet")
    torch2onnx(model, path, input_size=SIZE, batch=1, meta=meta)
    x = np.random.default_rng(2).standard_normal((1, 3, *SIZE)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    with torch.no_grad():
        want = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    for key in ("hm", "wh", "reg"):
        # FP32 export tolerance: max abs error within 1e-4 of the output's max magnitude
        assert np.abs(got[key] - want[key]).max() <= 1e-4 * max(1e-6, np.abs(want[key]).max()), key


def test_cli_reports_the_mac_target_scope_and_channel_fraction(tmp_path):
    import json

    from click.testing import CliRunner

    from edgepose.cli import main
    from edgepose.data.synthetic import generate_dataset
    from edgepose.models.defaults import default_weights

    generate_dataset(tmp_path / "data", 2, seed=3, progress=False)
    out = tmp_path / "pose_r0.4.pth"
    res = CliRunner().invoke(main, ["prune", "default_pose", "--weights", str(default_weights("default_pose")),
                                    "--ratio", "0.4", "--scope", "layer", "--data", str(tmp_path / "data"),
                                    "--sparse-epochs", "0", "--epochs", "0", "--no-kd", "--no-progress",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["ratio_of"] == "macs" and report["scope"] == "layer" and not report["kd"]
    assert report["target_macs"] == int(0.6 * report["macs_before"]) and report["macs_after"] <= report["target_macs"]
    assert 0 < report["channels_removed"] < 1 and 0 < report["channel_ratio"] < 1
    assert "target <=" in res.output and "of the prunable conv output channels removed" in res.output
