"""CornerNet-Squeeze (CornerNet-Lite), with the official state_dict layout.

Keys equal the released ``CornerNet_Squeeze_500000.pkl`` without its ``module.`` prefix
(manifest: shared/reference/cornernet_squeeze.json).  Structure: ``hg`` (pre stem of
stride 8, two hourglass stacks of fire modules, cnvs, inters, inters_, cnvs_), then per
stack tl/br corner-pool modules and heats/tags/offs heads.  ``forward`` runs both stacks'
backbone but only the last stack's heads (the official test path) and returns raw maps
``{tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr}`` of size ``ceil(in / 8)``.
Input sides must give ceil(in / 8) divisible by 16; the official ``h | 127`` rule gives
128*k - 1 (127, 255, 511, 767).
"""
from __future__ import annotations

import torch
from torch import nn

from edgepose.errors import UsageError
from edgepose.ops.corner_pool import corner_pool

OUTPUT_NAMES = ("tl_heat", "br_heat", "tl_tag", "br_tag", "tl_regr", "br_regr")
HEAT_BIAS = -2.19
STRIDE = 8
SIZE_MULTIPLE = 128  # stem /8 (ceil), then 4 stride-2 hourglass levels /16


def output_size(side: int) -> int:
    """Output map side for an input side: ceil(in / 8), which is the official
    ``(in + 1) // 8`` for the official sizes 128*k - 1."""
    return -(-int(side) // STRIDE)


def check_input_size(height: int, width: int) -> None:
    """Raise UsageError unless ceil(side / 8) is a multiple of 16 for both sides
    (128*k - 7 .. 128*k; the official test sizes are 128*k - 1: 127, 255, 511, 767)."""
    bad = [s for s in (height, width) if int(s) < 1 or output_size(s) % (SIZE_MULTIPLE // STRIDE)]
    if bad:
        raise UsageError(f"CornerNet-Squeeze input {height}x{width} is not supported: each side must be "
                         f"in 128*k-7 .. 128*k, officially 128*k - 1 (127, 255, 511, 767); "
                         f"pad the image to side | 127 as the official test code does")


class ConvBnRelu(nn.Module):
    """Official ``convolution``: k x k conv (bias only without BN) -> BN -> ReLU."""

    def __init__(self, k, inp, out, stride=1, with_bn=True):
        super().__init__()
        pad = (k - 1) // 2
        self.conv = nn.Conv2d(inp, out, k, stride=stride, padding=pad, bias=not with_bn)
        self.bn = nn.BatchNorm2d(out) if with_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + skip (1x1 conv + BN when shape changes) -> ReLU."""

    def __init__(self, inp, out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        if stride != 1 or inp != out:
            self.skip = nn.Sequential(nn.Conv2d(inp, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        else:
            self.skip = nn.Sequential()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(y + self.skip(x))


class Fire(nn.Module):
    """Fire module: 1x1 squeeze -> BN -> [1x1 || depthwise 3x3] -> BN (+x) -> ReLU."""

    def __init__(self, inp, out, sr=2, stride=1):
        super().__init__()
        mid = out // sr
        self.conv1 = nn.Conv2d(inp, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_1x1 = nn.Conv2d(mid, out // 2, 1, stride=stride, bias=False)
        self.conv_3x3 = nn.Conv2d(mid, out // 2, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.skip = stride == 1 and inp == out
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        s = self.bn1(self.conv1(x))
        y = self.bn2(torch.cat((self.conv_1x1(s), self.conv_3x3(s)), 1))
        return self.relu(y + x if self.skip else y)


def _fires(inp, out, n, first_stride=1):
    return nn.Sequential(Fire(inp, out, stride=first_stride), *[Fire(out, out) for _ in range(n - 1)])


def _fires_revr(inp, out, n):
    return nn.Sequential(*[Fire(inp, inp) for _ in range(n - 1)], Fire(inp, out))


class HourglassModule(nn.Module):
    """Recursive hourglass: up1(x) + up2(low3(low2(low1(x)))), low1 with stride 2."""

    def __init__(self, n, dims, mods):
        super().__init__()
        cur, nxt = dims[0], dims[1]
        self.up1 = _fires(cur, cur, mods[0])
        self.max1 = nn.Sequential()  # no pooling: low1 strides
        self.low1 = _fires(cur, nxt, mods[0], first_stride=2)
        self.low2 = HourglassModule(n - 1, dims[1:], mods[1:]) if n > 1 else _fires(nxt, nxt, mods[1])
        self.low3 = _fires_revr(nxt, cur, mods[0])
        self.up2 = nn.ConvTranspose2d(cur, cur, 4, stride=2, padding=1)

    def forward(self, x):
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(self.max1(x)))))


def _merge(dim=256):
    return nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))


class StackedHourglass(nn.Module):
    """``hg``: stem + hourglass stacks; returns the per-stack feature maps (cnvs)."""

    def __init__(self, stacks=2, dim=256):
        super().__init__()
        self.pre = nn.Sequential(ConvBnRelu(7, 3, 128, stride=2), Residual(128, dim, stride=2),
                                 Residual(dim, dim, stride=2))
        self.hgs = nn.ModuleList([HourglassModule(4, [dim, 256, 384, 384, 512], [2, 2, 2, 2, 4])
                                  for _ in range(stacks)])
        self.cnvs = nn.ModuleList([ConvBnRelu(3, dim, dim) for _ in range(stacks)])
        self.inters = nn.ModuleList([Residual(dim, dim) for _ in range(stacks - 1)])
        self.inters_ = nn.ModuleList([_merge(dim) for _ in range(stacks - 1)])
        self.cnvs_ = nn.ModuleList([_merge(dim) for _ in range(stacks - 1)])

    def forward(self, x):
        inter = self.pre(x)
        cnvs = []
        last = len(self.hgs) - 1
        for i, (hg, cnv_layer) in enumerate(zip(self.hgs, self.cnvs)):
            cnv = cnv_layer(hg(inter))
            cnvs.append(cnv)
            if i < last:
                inter = self.inters[i](torch.relu(self.inters_[i](inter) + self.cnvs_[i](cnv)))
        return cnvs


class CornerPoolModule(nn.Module):
    """Official ``corner_pool`` block: two conv+pool branches summed, plus a 1x1 skip."""

    def __init__(self, pool1: str, pool2: str, dim=256, mid=128):
        super().__init__()
        self.pool_modes = (pool1, pool2)
        self.p1_conv1 = ConvBnRelu(3, dim, mid)
        self.p2_conv1 = ConvBnRelu(3, dim, mid)
        self.p_conv1 = nn.Conv2d(mid, dim, 3, padding=1, bias=False)
        self.p_bn1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = ConvBnRelu(3, dim, dim)

    def forward(self, x):
        p1 = corner_pool(self.p1_conv1(x), self.pool_modes[0])
        p2 = corner_pool(self.p2_conv1(x), self.pool_modes[1])
        y = self.relu1(self.p_bn1(self.p_conv1(p1 + p2)) + self.bn1(self.conv1(x)))
        return self.conv2(y)


def _head(channels, dim=256):
    return nn.Sequential(ConvBnRelu(1, dim, dim, with_bn=False), nn.Conv2d(dim, channels, 1))


class CornerNetSqueeze(nn.Module):
    """CornerNet-Squeeze; ``forward(x)`` -> dict of the last stack's raw head outputs."""

    def __init__(self, num_classes=80, stacks=2):
        super().__init__()
        self.hg = StackedHourglass(stacks)
        self.tl_modules = nn.ModuleList([CornerPoolModule("top", "left") for _ in range(stacks)])
        self.br_modules = nn.ModuleList([CornerPoolModule("bottom", "right") for _ in range(stacks)])
        self.tl_heats = nn.ModuleList([_head(num_classes) for _ in range(stacks)])
        self.br_heats = nn.ModuleList([_head(num_classes) for _ in range(stacks)])
        for head in (*self.tl_heats, *self.br_heats):
            nn.init.constant_(head[-1].bias, HEAT_BIAS)
        self.tl_tags = nn.ModuleList([_head(1) for _ in range(stacks)])
        self.br_tags = nn.ModuleList([_head(1) for _ in range(stacks)])
        self.tl_offs = nn.ModuleList([_head(2) for _ in range(stacks)])
        self.br_offs = nn.ModuleList([_head(2) for _ in range(stacks)])
        self.num_classes = num_classes

    def forward(self, x):
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            check_input_size(x.shape[-2], x.shape[-1])
        cnv = self.hg(x)[-1]
        tl = self.tl_modules[-1](cnv)
        br = self.br_modules[-1](cnv)
        return {
            "tl_heat": self.tl_heats[-1](tl), "br_heat": self.br_heats[-1](br),
            "tl_tag": self.tl_tags[-1](tl), "br_tag": self.br_tags[-1](br),
            "tl_regr": self.tl_offs[-1](tl), "br_regr": self.br_offs[-1](br),
        }


def cornernet_squeeze(num_classes: int = 80) -> CornerNetSqueeze:
    """CornerNet-Squeeze with random init (heat bias -2.19), official key layout."""
    return CornerNetSqueeze(num_classes=num_classes)
