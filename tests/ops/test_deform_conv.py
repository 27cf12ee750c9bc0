"""DCNv2 (edgepose.ops.deform_conv) against the NumPy loop reference of the semantics in
official DCNv2 semantics, plain conv2d, and ONNX Runtime."""
from __future__ import annotations

import numpy as np
import pytest

import onnx
import onnxruntime as ort
import torch

from edgepose.errors import UsageError
from edgepose.ops.deform_conv import DCN, deform_conv2d, deform_conv2d_numpy

torch.set_num_threads(1)


def _out_size(n, k=3, s=1, p=1, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _random_case(seed, n=2, c=3, h=7, w=9, oc=4, k=3, stride=1, pad=1, dil=1):
    g = torch.Generator().manual_seed(seed)
    ho, wo = _out_size(h, k, stride, pad, dil), _out_size(w, k, stride, pad, dil)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(oc, c, k, k, generator=g)
    bias = torch.randn(oc, generator=g)
    # large offsets: many samples land outside the image (and in the -1 < y < 0 band)
    offset = torch.randn(n, 2 * k * k, ho, wo, generator=g) * 3.0
    # some exactly on integer positions (incl. exactly -1 and exactly H / W -> dropped)
    offset[:, :, ::2, :] = torch.round(offset[:, :, ::2, :])
    mask = torch.rand(n, k * k, ho, wo, generator=g)
    return x, offset, weight, bias, mask


@pytest.mark.parametrize("stride,h,w", [(1, 7, 9), (2, 7, 9), (2, 8, 5), (1, 5, 6)])
def test_torch_matches_numpy_reference(stride, h, w):
    x, offset, weight, bias, mask = _random_case(stride * 100 + h, h=h, w=w, stride=stride)
    got = deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask).numpy()
    ref = deform_conv2d_numpy(x.numpy(), offset.numpy(), weight.numpy(), bias.numpy(),
                              stride=stride, padding=1, mask=mask.numpy())
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_dilation_and_no_bias_no_mask():
    x, offset, weight, _, _ = _random_case(7, h=9, w=8, dil=2, pad=2)
    got = deform_conv2d(x, offset, weight, None, stride=1, padding=2, dilation=2).numpy()
    ref = deform_conv2d_numpy(x.numpy(), offset.numpy(), weight.numpy(), None, stride=1, padding=2,
                              dilation=2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_boundary_band_rule():
    """A sample at y=-0.5 contributes half of row 0; at y=-1 or y=H it contributes nothing."""
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 1, 1] = 1.0  # only the centre tap
    offset = torch.zeros(1, 18, 3, 3)
    centre = 4
    offset[0, 2 * centre, 0, 1] = -0.5  # output (0,1) samples (-0.5, 1) -> 0.5 * x[0,1]
    offset[0, 2 * centre, 1, 1] = -2.0  # samples y = -1 exactly -> 0
    offset[0, 2 * centre, 2, 1] = 1.0   # samples y = 3 = H exactly -> 0
    out = deform_conv2d(x, offset, weight, padding=1)[0, 0]
    assert out[0, 1].item() == pytest.approx(0.5 * 2.0, abs=1e-6)
    assert out[1, 1].item() == 0.0
    assert out[2, 1].item() == 0.0
    ref = deform_conv2d_numpy(x.numpy(), offset.numpy(), weight.numpy())[0, 0]
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_offset_unit_mask_is_conv2d(stride):
    x, offset, weight, bias, _ = _random_case(11, stride=stride)
    got = deform_conv2d(x, torch.zeros_like(offset), weight, bias, stride=stride, padding=1,
                        mask=torch.ones(offset.shape[0], 9, *offset.shape[2:]))
    ref = torch.nn.functional.conv2d(x, weight, bias, stride=stride, padding=1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_dcn_module_layout_and_zero_init_equals_conv():
    m = DCN(3, 5)
    sd = m.state_dict()
    assert list(sd) == ["weight", "bias", "conv_offset_mask.weight", "conv_offset_mask.bias"]
    assert tuple(sd["conv_offset_mask.weight"].shape) == (27, 3, 3, 3)
    x = torch.randn(2, 3, 6, 7)
    # zero-initialised offsets and mask logits -> mask 0.5 everywhere
    ref = torch.nn.functional.conv2d(x, m.weight * 0.5, m.bias, padding=1)
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_errors_name_the_problem():
    x, offset, weight, bias, mask = _random_case(3)
    with pytest.raises(UsageError, match="deformable_groups"):
        deform_conv2d(x, torch.cat([offset, offset], 1), weight, bias, mask=mask)
    with pytest.raises(UsageError, match="mask must have shape"):
        deform_conv2d(x, offset, weight, bias, mask=mask[:, :4])
    with pytest.raises(UsageError, match="deformable_groups"):
        DCN(3, 4, deformable_groups=2)


class _RawDeformConv(torch.nn.Module):
    def __init__(self, weight, bias, stride):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(bias)
        self.stride = stride

    def forward(self, x, offset, mask):
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=1, mask=mask)


def _ort_run(path, feed):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


@pytest.mark.parametrize("stride", [1, 2])
def test_onnx_deformconv_layout_matches(tmp_path, stride):
    """ORT's DeformConv (ONNX spec) with our offsets/mask as graph inputs equals the reference."""
    x, offset, weight, bias, mask = _random_case(21 + stride, stride=stride)
    model = _RawDeformConv(weight, bias, stride).eval()
    path = tmp_path / "dc.onnx"
    torch.onnx.export(model, (x, offset, mask), str(path), opset_version=19, dynamo=False,
                      input_names=["x", "offset", "mask"], output_names=["y"])
    proto = onnx.load(str(path))
    nodes = [n for n in proto.graph.node if n.op_type == "DeformConv"]
    assert len(nodes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert list(attrs["strides"]) == [stride, stride] and list(attrs["pads"]) == [1, 1, 1, 1]
    (got,) = _ort_run(path, {"x": x.numpy(), "offset": offset.numpy(), "mask": mask.numpy()})
    ref = deform_conv2d_numpy(x.numpy(), offset.numpy(), weight.numpy(), bias.numpy(), stride=stride,
                              mask=mask.numpy())
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_onnx_dcn_module_matches_torch(tmp_path):
    torch.manual_seed(0)
    m = DCN(4, 6, stride=2).eval()
    with torch.no_grad():
        m.conv_offset_mask.weight.normal_(0, 0.5)
        m.conv_offset_mask.bias.normal_(0, 2.0)
        m.bias.normal_()
    x = torch.randn(2, 4, 9, 11)
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(m, (x,), str(path), opset_version=19, dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert [n.op_type for n in proto.graph.node].count("DeformConv") == 1
    with torch.no_grad():
        ref = m(x).numpy()
    (got,) = _ort_run(path, {"x": x.numpy()})
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    (got1,) = _ort_run(path, {"x": x[:1].numpy()})  # dynamic batch
    assert np.abs(got1 - ref[:1]).max() <= 1e-4 * np.abs(ref).max()


def test_gradients_match_finite_differences():
    """The torch implementation is differentiable (x, offset, weight, bias, mask) for fine-tuning."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    offset = (torch.rand(1, 18, 2, 3, generator=g, dtype=torch.float64) * 2.6 - 1.3).requires_grad_()
    weight = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 9, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, o, w, b, m: deform_conv2d(a, o, w, b, stride=2, padding=1, mask=m),
        (x, offset, weight, bias, mask), eps=1e-6, atol=1e-5)
