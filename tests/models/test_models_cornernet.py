"""CornerNet-Squeeze: state_dict layout vs the reference manifest, shapes, ORT vs PyTorch."""
import io

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgepose import models  # noqa: E402
from edgepose.errors import UsageError  # noqa: E402
from edgepose.models.cornernet_squeeze import (  # noqa: E402
    HEAT_BIAS, OUTPUT_NAMES, check_input_size, cornernet_squeeze, output_size)
from edgepose.models.signature import VARIANTS, manifest_entries, signature  # noqa: E402
from edgepose.ops import plugin_export  # noqa: E402

MANIFEST = "cornernet_squeeze.json"
SIZE = 127  # smallest official size (128*1 - 1) -> 16x16 maps


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = cornernet_squeeze().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # randomise BN so eval-mode BN is not the identity
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
        for head in (*m.tl_heats, *m.br_heats):  # the -2.19 bias would dominate max|heat|
            head[-1].bias.copy_(torch.randn(head[-1].bias.shape, generator=g) * 0.01)
    return m


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def _export(model, x, plugins, fold=True):
    buf = io.BytesIO()
    with plugin_export(plugins), torch.no_grad():
        torch.onnx.export(model, (x,), buf, opset_version=19, dynamo=False, input_names=["image"],
                          output_names=list(OUTPUT_NAMES), do_constant_folding=fold)
    return buf.getvalue()


@pytest.mark.parametrize("variant", VARIANTS)
def test_signature_matches_manifest(net, manifest, variant):
    man = manifest(MANIFEST)
    # manifest rows carry the official "module." prefix; the bare model has none
    assert signature(manifest_entries(man), variant) == man["signature_sha256"][variant]
    assert signature(net.state_dict(), variant) == signature(manifest_entries(man, "module."), variant)


def test_param_counts_match_manifest(net, manifest):
    man = manifest(MANIFEST)
    assert sum(p.numel() for p in net.parameters()) == man["total_params"] == 31_771_852
    by_top = {}
    for name, p in net.named_parameters():
        top = name.split(".")[0]
        by_top[top] = by_top.get(top, 0) + p.numel()
    assert by_top == man["params_by_top_level_module"]


def test_registry_and_heat_bias():
    m = models.create("cornernet_squeeze")
    for heads in (m.tl_heats, m.br_heats):
        for head in heads:
            assert torch.all(head[-1].bias == torch.tensor(HEAT_BIAS))
    assert models.get_spec("cornernet_squeeze").meta().output_names == list(OUTPUT_NAMES)


def test_strict_load_of_prefix_stripped_state_dict(net):
    wrapped = {"module." + k: v.clone() for k, v in net.state_dict().items()}
    fresh = cornernet_squeeze()
    fresh.load_state_dict({k[len("module."):]: v for k, v in wrapped.items()}, strict=True)
    assert torch.equal(fresh.tl_heats[1][1].weight, net.tl_heats[1][1].weight)


def test_output_names_and_shapes(net, image):
    with torch.no_grad():
        out = net(image)
    assert tuple(out) == OUTPUT_NAMES
    s = output_size(SIZE)
    assert s == (SIZE + 1) // 8 == 16
    want = {"tl_heat": 80, "br_heat": 80, "tl_tag": 1, "br_tag": 1, "tl_regr": 2, "br_regr": 2}
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, c, s, s) for k, c in want.items()}
    assert output_size(511) == 64  # official (511 + 1) // 8


def test_bad_input_size_raises():
    check_input_size(511, 767)  # official 427x640 -> 511x767
    with pytest.raises(UsageError, match="127"):
        check_input_size(511, 600)


def test_onnxruntime_matches_torch_with_decomposition(net, image):
    model_bytes = _export(net, image, plugins=False)
    graph = onnx.load_from_string(model_bytes).graph
    assert not any(n.domain for n in graph.node), "decomposition must use standard ops only"
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    with torch.no_grad():
        want = {k: v.numpy() for k, v in net(image).items()}
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    got = dict(zip(OUTPUT_NAMES, sess.run(None, {"image": image.numpy()})))
    for name in OUTPUT_NAMES:
        scale = float(np.abs(want[name]).max())
        err = float(np.abs(got[name] - want[name]).max())
        assert scale > 0 and err <= 1e-4 * scale, (name, err, scale)


def test_plugin_export_has_four_corner_pool_nodes(net, image):
    graph = onnx.load_from_string(_export(net, image, plugins=True, fold=False)).graph
    pools = [n for n in graph.node if n.op_type == "CornerPool"]
    modes = sorted(a.i for n in pools for a in n.attribute if a.name == "mode")
    assert modes == [0, 1, 2, 3]  # last stack only: tl = top + left, br = bottom + right
