"""Modulated deformable convolution (DCNv2, as used by CenterNet), without torchvision.

Semantics (see shared/reference/README.md, "DCNv2 as used by CenterNet"):
offset channel ``2k`` is the row (y) offset and ``2k+1`` the column (x) offset of tap
``k = i*kw + j``; tap k of output pixel (r, c) samples the input bilinearly at
``(r*stride - pad + i*dil + dy, c*stride - pad + j*dil + dx)``; pixels outside the image
are 0 and a sample contributes only when ``-1 < y < H`` and ``-1 < x < W``; each sample is
multiplied by its mask before the ordinary convolution weights; then the bias is added.

Faces: :func:`deform_conv2d` (vectorised torch), :func:`deform_conv2d_numpy` (slow loop
reference) and ONNX export as the standard ``DeformConv`` op (opset >= 19).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepose.errors import UsageError

__all__ = ["deform_conv2d", "deform_conv2d_numpy", "DCN"]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise UsageError(f"expected an int or a pair of ints, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _check_shapes(x_shape, offset_shape, weight_shape, mask_shape, stride, padding, dilation):
    n, c, h, w = x_shape
    oc, ic, kh, kw = weight_shape
    if ic != c:
        raise UsageError(f"deform_conv2d: weight expects {ic} input channels but x has {c}; "
                         "grouped deformable convolution is not supported, use group=1")
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    k = kh * kw
    if tuple(offset_shape) != (n, 2 * k, ho, wo):
        if len(offset_shape) == 4 and offset_shape[1] % (2 * k) == 0 and offset_shape[1] != 2 * k:
            raise UsageError(f"deform_conv2d: offset has {offset_shape[1]} channels, i.e. "
                             f"deformable_groups={offset_shape[1] // (2 * k)}; only deformable_groups=1 "
                             "is supported")
        raise UsageError(f"deform_conv2d: offset must have shape {(n, 2 * k, ho, wo)}, got "
                         f"{tuple(offset_shape)}; pass the 2*kh*kw offset channels of the conv_offset_mask")
    if mask_shape is not None and tuple(mask_shape) != (n, k, ho, wo):
        raise UsageError(f"deform_conv2d: mask must have shape {(n, k, ho, wo)}, got {tuple(mask_shape)}")
    return ho, wo


def _deform_conv2d_impl(x, offset, weight, bias, mask, stride, padding, dilation):
    n, c, h, w = x.shape
    oc, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    dtype, dev = x.dtype, x.device
    # base sampling grid per tap: [K, Ho, Wo]
    ti = torch.arange(kh, device=dev, dtype=dtype).repeat_interleave(kw) * dilation[0]
    tj = torch.arange(kw, device=dev, dtype=dtype).repeat(kh) * dilation[1]
    rows = torch.arange(ho, device=dev, dtype=dtype) * stride[0] - padding[0]
    cols = torch.arange(wo, device=dev, dtype=dtype) * stride[1] - padding[1]
    off = offset.reshape(n, k, 2, ho, wo)
    py = rows.view(1, 1, ho, 1) + ti.view(1, k, 1, 1) + off[:, :, 0]  # [N,K,Ho,Wo]
    px = cols.view(1, 1, 1, wo) + tj.view(1, k, 1, 1) + off[:, :, 1]
    inside = (py > -1) & (py < h) & (px > -1) & (px < w)
    y0f = torch.floor(py)
    x0f = torch.floor(px)
    ly = py - y0f
    lx = px - x0f
    y0 = y0f.long()
    x0 = x0f.long()
    flat = x.reshape(n, c, h * w)
    cols_acc = None
    for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                        (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy = y0 + dy
        xx = x0 + dx
        ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(n, 1, k * ho * wo)
        vals = torch.gather(flat, 2, idx.expand(n, c, k * ho * wo)).view(n, c, k, ho, wo)
        coef = (wgt * ok.to(dtype)).unsqueeze(1)
        term = vals * coef
        cols_acc = term if cols_acc is None else cols_acc + term
    if mask is not None:
        cols_acc = cols_acc * mask.view(n, 1, k, ho, wo)
    out = torch.einsum("nckp,ock->nop", cols_acc.reshape(n, c, k, ho * wo), weight.reshape(oc, c, k))
    out = out.reshape(n, oc, ho, wo)
    if bias is not None:
        out = out + bias.view(1, oc, 1, 1)
    return out


_OP = None


def _export_op():
    """``edgepose::deform_conv2d`` custom op, traced as one node and exported as ONNX ``DeformConv``."""
    global _OP
    if _OP is not None:
        return _OP
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @torch.library.custom_op("edgepose::deform_conv2d", mutates_args=())
    def _op(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
            mask: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int]) -> torch.Tensor:
        return _deform_conv2d_impl(x, offset, weight, bias, mask, tuple(stride), tuple(padding),
                                   tuple(dilation))

    @_op.register_fake
    def _(x, offset, weight, bias, mask, stride, padding, dilation):
        n, _, ho, wo = offset.shape
        return x.new_empty((n, weight.shape[0], ho, wo))

    @parse_args("v", "v", "v", "v", "v", "is", "is", "is")
    def _symbolic(g, x, offset, weight, bias, mask, stride, padding, dilation):
        attrs = dict(dilations_i=list(dilation), group_i=1, offset_group_i=1,
                     pads_i=list(padding) + list(padding), strides_i=list(stride))
        sizes = weight.type().sizes() if hasattr(weight.type(), "sizes") else None
        if sizes:
            attrs["kernel_shape_i"] = [int(sizes[2]), int(sizes[3])]
        return g.op("DeformConv", x, weight, offset, bias, mask, **attrs)

    for opset in range(19, 26):
        register_custom_op_symbolic("edgepose::deform_conv2d", _symbolic, opset)
    _OP = _op
    return _OP


def _exporting() -> bool:
    try:
        return bool(torch.onnx.is_in_onnx_export())
    except Exception:  # pragma: no cover - very old torch
        return False


def deform_conv2d(x, offset, weight, bias=None, stride=1, padding=1, dilation=1, mask=None):
    """Modulated deformable conv2d, ``deformable_groups=1``, ``group=1``.

    x [N,C,H,W], offset [N,2*kh*kw,Ho,Wo] (y,x interleaved per tap), weight [O,C,kh,kw],
    bias [O] or None, mask [N,kh*kw,Ho,Wo] or None (= ones).  Returns [N,O,Ho,Wo].
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if not _exporting():  # while tracing, shapes are tensors; checked eagerly before export
        _check_shapes(tuple(x.shape), tuple(offset.shape), tuple(weight.shape),
                      None if mask is None else tuple(mask.shape), stride, padding, dilation)
        return _deform_conv2d_impl(x, offset, weight, bias, mask, stride, padding, dilation)
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if mask is None:
        mask = offset.new_ones((offset.shape[0], offset.shape[1] // 2) + tuple(offset.shape[2:]))
    return _export_op()(x, offset, weight, bias, mask, list(stride), list(padding), list(dilation))


class DCN(nn.Module):
    """DCNv2 layer with the official parameter names (``weight``, ``bias``, ``conv_offset_mask``)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1,
                 deformable_groups=1):
        super().__init__()
        if deformable_groups != 1:
            raise UsageError(f"DCN: deformable_groups={deformable_groups} is not supported; "
                             "only deformable_groups=1 (as in CenterNet) is implemented")
        kh, kw = _pair(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, deformable_groups * 3 * kh * kw, (kh, kw),
                                          stride=self.stride, padding=self.padding, bias=True)
        self.reset_parameters()

    def reset_parameters(self):
        n = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        stdv = 1.0 / n ** 0.5
        with torch.no_grad():
            self.weight.uniform_(-stdv, stdv)
            self.bias.zero_()
            self.conv_offset_mask.weight.zero_()
            self.conv_offset_mask.bias.zero_()

    def forward(self, x):
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(m)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                             self.dilation, mask)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}")


def deform_conv2d_numpy(x, offset, weight, bias=None, stride=1, padding=1, dilation=1, mask=None):
    """Slow loop reference of the README semantics (float64 accumulation). NumPy arrays in/out."""
    x = np.asarray(x, np.float64)
    offset = np.asarray(offset, np.float64)
    weight = np.asarray(weight, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    oc, _, kh, kw = weight.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    mask = np.ones((n, kh * kw, ho, wo)) if mask is None else np.asarray(mask, np.float64)

    def pixel(b, yy, xx):
        if 0 <= yy < h and 0 <= xx < w:
            return x[b, :, yy, xx]
        return np.zeros(c)

    out = np.zeros((n, oc, ho, wo))
    for b in range(n):
        for r in range(ho):
            for q in range(wo):
                col = np.zeros((c, kh, kw))
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        y = r * sh - ph + i * dh + offset[b, 2 * k, r, q]
                        xq = q * sw - pw + j * dw + offset[b, 2 * k + 1, r, q]
                        if not (-1 < y < h and -1 < xq < w):
                            continue
                        y0, x0 = int(np.floor(y)), int(np.floor(xq))
                        ly, lx = y - y0, xq - x0
                        v = ((1 - ly) * (1 - lx) * pixel(b, y0, x0) + (1 - ly) * lx * pixel(b, y0, x0 + 1)
                             + ly * (1 - lx) * pixel(b, y0 + 1, x0) + ly * lx * pixel(b, y0 + 1, x0 + 1))
                        col[:, i, j] = v * mask[b, k, r, q]
                out[b, :, r, q] = np.tensordot(weight, col, axes=([1, 2, 3], [0, 1, 2]))
    if bias is not None:
        out += np.asarray(bias, np.float64).reshape(1, oc, 1, 1)
    return out
