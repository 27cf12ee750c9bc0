"""ResNet-family zoo models against the reference manifests and ONNX Runtime.

Manifests: tests/data/reference/centernet_ctdet_res18.json, centernet_ctdet_resdcn18.json,
alphapose_fastpose_res50_256x192.json, alphapose_simplepose_res50_256x192.json.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgepose.errors import UsageError
from edgepose.models import create
from edgepose.models.alphapose import fastpose, fastpose_res50, simplepose, simplepose_res50
from edgepose.models.centernet_resnet import centernet_res18, centernet_resdcn18, centernet_resnet
from edgepose.models.resnet import ResNet
from edgepose.models.signature import VARIANTS, signature
from edgepose.ops.deform_conv import DCN

torch.set_num_threads(1)

ZOO = {
    "centernet_res18": (centernet_res18, "centernet_ctdet_res18.json"),
    "centernet_resdcn18": (centernet_resdcn18, "centernet_ctdet_resdcn18.json"),
    "fastpose_res50": (fastpose_res50, "alphapose_fastpose_res50_256x192.json"),
    "simplepose_res50": (simplepose_res50, "alphapose_simplepose_res50_256x192.json"),
}
DET_IN = (64, 64)    # manifests probe 512x512 -> shapes / 8
POSE_IN = (128, 96)  # manifests probe 256x192 -> shapes / 2 (W must be a multiple of 32)


@pytest.fixture(scope="module")
def zoo_models():
    return {}


def _get(zoo_models, name):
    if name not in zoo_models:
        torch.manual_seed(0)
        zoo_models[name] = ZOO[name][0]()
    return zoo_models[name]


@pytest.mark.parametrize("name", list(ZOO))
def test_state_dict_signature_matches_manifest(name, manifest, zoo_models):
    m = manifest(ZOO[name][1])
    model = _get(zoo_models, name)
    sd = model.state_dict()
    for variant in VARIANTS:
        assert signature(sd, variant) == m["signature_sha256"][variant], (name, variant)
    assert sum(p.numel() for p in model.parameters()) == m["total_params"]
    assert list(sd) == [e["key"] for e in m["state_dict"]]


def _expected_shapes(m, name, batch, hw):
    if name.startswith("centernet"):
        probe = m["forward_output_shapes_for_probe"][0]
        scale = 512 // hw[0]
        return {k: [batch, v[1], v[2] // scale, v[3] // scale] for k, v in probe.items()}
    n, j, h, w = m["forward_output_shape_for_probe_2x3x256x192"]
    return {"heatmaps": [batch, j, h * hw[0] // 256, w * hw[1] // 192]}


def _randomise(model, seed=0):
    """Eval mode; non-trivial BN statistics, weights of unit-gain scale, DCN offsets of ~1 px."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = mod.weight
                fan_in = w[0].numel() if not isinstance(mod, nn.ConvTranspose2d) else w.shape[0] * w[0, 0].numel() / 4
                w.copy_(torch.randn(w.shape, generator=g) * (1.0 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
            elif isinstance(mod, DCN):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (1.0 / fan_in) ** 0.5)
        for mod in model.modules():
            if isinstance(mod, DCN):  # after the generic pass: offsets of order 1 px
                w = mod.conv_offset_mask.weight
                w.copy_(torch.randn(w.shape, generator=g) * 0.3 / w[0].numel() ** 0.5)
                mod.conv_offset_mask.bias.copy_(torch.randn(27, generator=g))
    return model.eval()


@pytest.mark.parametrize("name", list(ZOO))
def test_forward_shapes_scaled_from_manifest_probe(name, manifest, zoo_models):
    m = manifest(ZOO[name][1])
    model = _get(zoo_models, name).eval()
    hw = DET_IN if name.startswith("centernet") else POSE_IN
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    expected = _expected_shapes(m, name, 2, hw)
    assert list(out) == list(expected)  # head order hm, wh, reg (manifest forward_head_order)
    if name.startswith("centernet"):
        assert list(out) == m["forward_head_order"]
    assert {k: list(v.shape) for k, v in out.items()} == expected


def _export_and_compare(model, x, tmp_path, fname):
    model = model.eval()
    with torch.no_grad():
        ref = model(x)
    names = list(ref)
    path = tmp_path / fname
    torch.onnx.export(model, (x,), str(path), opset_version=19, dynamo=False, input_names=["input"],
                      output_names=names)
    proto = onnx.load(str(path), load_external_data=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = sess.run(names, {"input": x.numpy()})
    errs = {}
    for n, g in zip(names, got):
        r = ref[n].numpy()
        assert g.shape == r.shape, n
        errs[n] = float(np.abs(g - r).max() / np.abs(r).max())
        assert np.abs(g - r).max() <= 1e-4 * np.abs(r).max(), (n, errs[n])
    return proto, errs


@pytest.mark.parametrize("name", list(ZOO))
def test_onnxruntime_matches_torch(name, tmp_path, zoo_models):
    model = _randomise(_get(zoo_models, name), seed=1)
    hw = DET_IN if name.startswith("centernet") else POSE_IN
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(2))
    proto, errs = _export_and_compare(model, x, tmp_path, f"{name}.onnx")
    ops = {n.op_type for n in proto.graph.node}
    assert ("DeformConv" in ops) == (name == "centernet_resdcn18")
    print(name, "max rel err", errs)


def test_slim_builders_shapes_and_onnx(tmp_path):
    torch.manual_seed(0)
    det = _randomise(centernet_resnet(18, dcn=True, num_classes=1, head_conv=16, widths=(8, 16, 16, 32),
                                      deconv_planes=(32, 16, 16)), seed=3)
    x = torch.randn(1, 3, 64, 96)
    _, errs = _export_and_compare(det, x, tmp_path, "det.onnx")
    with torch.no_grad():
        out = det(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"hm": (1, 1, 16, 24), "wh": (1, 2, 16, 24),
                                                             "reg": (1, 2, 16, 24)}
    for builder in (lambda: fastpose(50, 17, widths=(8, 16, 16, 32)),
                    lambda: simplepose(18, 17, deconv_filters=(16, 16, 16), widths=(8, 16, 16, 32))):
        pose = _randomise(builder(), seed=4)
        x = torch.randn(2, 3, 64, 32)
        _export_and_compare(pose, x, tmp_path, "pose.onnx")
        with torch.no_grad():
            assert tuple(pose(x)["heatmaps"].shape) == (2, 17, 16, 8)


def test_official_init_details():
    model = centernet_resdcn18(num_classes=3)
    # hm final bias -2.19 (manifest output_heads: "final conv bias initialised to -2.19")
    assert torch.all(model.hm[2].bias == -2.19)
    assert torch.all(model.wh[2].bias == 0)
    # bilinear ConvTranspose init (fill_up_weights), k=4: 1-|i/2-0.75| = .25,.75,.75,.25
    b = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for idx in (3, 9, 15):
        w = model.deconv_layers[idx].weight
        torch.testing.assert_close(w[:, 0], (b[:, None] * b[None, :]).expand(w.shape[0], 4, 4))
    # DCN offsets start at zero
    assert torch.all(model.deconv_layers[0].conv_offset_mask.weight == 0)
    assert torch.all(centernet_res18(num_classes=3).hm[2].bias == -2.19)


def test_se_only_on_first_block_of_each_stage():
    trunk = ResNet(50, widths=(8, 8, 8, 8), se_first_block=True)
    se_blocks = sorted(n[: -len(".se")] for n, _ in trunk.named_modules() if n.endswith(".se"))
    assert se_blocks == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    # SE scales bn3's output before the residual add: a zero-bias gate of 0 removes the branch
    block = trunk.layer2[0]
    with torch.no_grad():
        block.se.fc[2].weight.zero_()
        block.se.fc[2].bias.fill_(-1e4)  # sigmoid -> 0
    block.eval()
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(block.downsample(x)))


def test_registry_builds_these_models():
    model = create("centernet_res18", num_classes=1)
    assert model.hm[2].out_channels == 1
    assert isinstance(create("simplepose_res50").final_layer, nn.Conv2d)


def test_bad_arguments_raise_usage_errors():
    with pytest.raises(UsageError, match="depth"):
        ResNet(19)
    with pytest.raises(UsageError, match="deconv_planes"):
        centernet_resnet(deconv_planes=(8, 8))
