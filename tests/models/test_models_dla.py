"""CenterNet ctdet DLA-34: state_dict layout vs the reference manifest, shapes, init, ONNX export."""
from __future__ import annotations

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()

from edgepose.models.centernet_dla import DeformConv, centernet_dla34  # noqa: E402
from edgepose.models.signature import VARIANTS, manifest_entries, signature  # noqa: E402

MANIFEST = "centernet_ctdet_dla34.json"


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return centernet_dla34().eval()


def _randomise(model, seed=1):
    """Random BN statistics/affine and non-zero DCN offsets/masks so every path carries signal."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
            elif isinstance(m, DeformConv):
                om = m.conv.conv_offset_mask
                fan_in = om.weight[0].numel()
                # offsets of roughly +-1 px (fractional, so bilinear sampling is exercised)
                om.weight.copy_(torch.randn(om.weight.shape, generator=gen) * (1.0 / fan_in ** 0.5))
                om.bias.copy_(torch.randn(om.bias.shape, generator=gen) * 0.5)
    return model.eval()


def test_state_dict_signature_matches_manifest(net, manifest):
    ref = manifest(MANIFEST)
    sd = net.state_dict()
    for variant in VARIANTS:
        assert signature(sd, variant) == ref["signature_sha256"][variant], variant
    # the manifest's own rows agree with its signatures, and key-by-key with ours
    rows = manifest_entries(ref)
    assert [r[0] for r in rows] == list(sd)
    assert all(tuple(sd[k].shape) == s for k, s, _ in rows)


def test_parameter_counts_match_manifest(net, manifest):
    ref = manifest(MANIFEST)
    assert sum(p.numel() for p in net.parameters()) == ref["total_params"] == 20_188_892
    assert net.base.fc.weight.numel() + net.base.fc.bias.numel() == 513_000
    by_top = {}
    for k, p in net.named_parameters():
        by_top[k.split(".")[0]] = by_top.get(k.split(".")[0], 0) + p.numel()
    assert by_top == ref["params_by_top_level_module"]


def test_manifest_shaped_state_dict_loads_strictly(manifest):
    ref = manifest(MANIFEST)
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    sd = {e["key"]: torch.full(e["shape"], 0.5, dtype=dtypes[e["dtype"]]) for e in ref["state_dict"]}
    model = centernet_dla34()
    model.load_state_dict(sd, strict=True)
    assert model.base.fc.bias[0].item() == 0.5


@pytest.mark.parametrize("hw", [(64, 64), (64, 96)])
def test_output_shapes_stride4(net, hw):
    h, w = hw
    with torch.no_grad():
        out = net(torch.randn(1, 3, h, w))
    assert list(out) == ["hm", "wh", "reg"]
    assert tuple(out["hm"].shape) == (1, 80, h // 4, w // 4)
    assert tuple(out["wh"].shape) == (1, 2, h // 4, w // 4)
    assert tuple(out["reg"].shape) == (1, 2, h // 4, w // 4)


def test_backbone_levels_strides_and_channels(net):
    with torch.no_grad():
        levels = net.base(torch.randn(1, 3, 64, 64))
    assert [(t.shape[1], t.shape[2]) for t in levels] == [
        (16, 64), (32, 32), (64, 16), (128, 8), (256, 4), (512, 2)]


def test_init_matches_official_rules(net):
    # hm head final bias -2.19, wh/reg biases zero (official fill_fc_weights)
    assert torch.allclose(net.hm[2].bias, torch.full((80,), -2.19))
    for name in ("wh", "reg"):
        head = getattr(net, name)
        assert torch.count_nonzero(head[0].bias) == 0 and torch.count_nonzero(head[2].bias) == 0
    # bilinear depthwise kernels: 4x4 (x2) ramp [1,3,3,1]/4, 8x8 (x4) ramp [1,3,5,7,7,5,3,1]/8
    r4 = torch.tensor([1, 3, 3, 1], dtype=torch.float32) / 4
    r8 = torch.tensor([1, 3, 5, 7, 7, 5, 3, 1], dtype=torch.float32) / 8
    up1, up2 = net.ida_up.up_1, net.ida_up.up_2
    assert up1.groups == 64 and up1.bias is None and up1.stride == (2, 2) and up1.padding == (1, 1)
    assert up2.stride == (4, 4) and up2.padding == (2, 2)
    assert torch.allclose(up1.weight, torch.outer(r4, r4).expand(64, 1, 4, 4), atol=1e-7)
    assert torch.allclose(up2.weight, torch.outer(r8, r8).expand(64, 1, 8, 8), atol=1e-7)


def test_depthwise_upsampling_is_bilinear_on_constant_input(net):
    # interior of a x2 bilinear upsampling of a constant map is that constant
    up = net.dla_up.ida_0.up_1
    with torch.no_grad():
        y = up(torch.full((1, 256, 4, 4), 3.0))
    assert tuple(y.shape) == (1, 256, 8, 8)
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.full_like(y[..., 1:-1, 1:-1], 3.0), atol=1e-6)


def test_base_fc_is_not_used_in_forward():
    torch.manual_seed(0)
    model = centernet_dla34().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = model(x)
        model.base.fc.weight.normal_()
        model.base.fc.bias.fill_(100.0)
        b = model(x)
    for k in a:
        assert torch.equal(a[k], b[k])


def test_onnxruntime_matches_torch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _randomise(centernet_dla34())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    path = tmp_path / "dla34.onnx"
    torch.onnx.export(model, x, str(path), opset_version=19, dynamo=False,
                      input_names=["input"], output_names=["hm", "wh", "reg"])
    graph_ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # 2*(1 + 2 + 3) DeformConvs in dla_up + 2*2 in ida_up
    assert graph_ops.count("DeformConv") == 16
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = dict(zip(["hm", "wh", "reg"], sess.run(["hm", "wh", "reg"], {"input": x.numpy()})))
    for name, r in ref.items():
        r = r.numpy()
        err = float(np.abs(outs[name] - r).max())
        scale = float(np.abs(r).max())
        assert outs[name].shape == r.shape
        assert err <= 1e-4 * scale, f"{name}: max abs err {err:.3g} > 1e-4 * {scale:.3g}"
