"""CenterNet ctdet DLA-34 (``ctdet_coco_dla_2x.pth``, 37.4 AP) with the official state_dict layout.

Structure follows CenterNet's ``DLASeg(base='dla34', down_ratio=4, last_level=5)``: a DLA-34
backbone (six levels, strides 1..32), ``DLAUp`` fusing levels 2..5 with deformable 3x3 convs
and depthwise bilinear transposed convs, ``IDAUp`` merging the three finest maps into one
64-channel stride-4 map, and three heads ``hm``/``wh``/``reg``.  ``base.fc`` (1x1 conv
512->1000) exists only so the released checkpoint loads strictly; forward never uses it.
See ``shared/reference/centernet_ctdet_dla34.json``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from edgepose.models.centernet_resnet import bilinear_ramp

DLA34_LEVELS = (1, 1, 1, 2, 2, 1)
DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)
HM_BIAS = -2.19


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=0.1)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN; the residual is passed in (projected) or is the input."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(planes)

    def forward(self, x, residual=None):
        if residual is None:
            residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Root(nn.Module):
    """1x1 conv + BN + ReLU over the channel concatenation of its inputs (no residual in DLA-34)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False)
        self.bn = _bn(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *inputs):
        return self.relu(self.bn(self.conv(torch.cat(inputs, 1))))


class Tree(nn.Module):
    """Hierarchical aggregation node of DLA (``levels`` deep); children feed the root."""

    def __init__(self, levels: int, in_channels: int, out_channels: int, stride: int = 1,
                 level_root: bool = False, root_dim: int = 0):
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        if levels == 1:
            self.tree1 = BasicBlock(in_channels, out_channels, stride)
            self.tree2 = BasicBlock(out_channels, out_channels, 1)
            self.root = Root(root_dim, out_channels)
        else:
            self.tree1 = Tree(levels - 1, in_channels, out_channels, stride, root_dim=0)
            self.tree2 = Tree(levels - 1, out_channels, out_channels, root_dim=root_dim + out_channels)
        self.level_root = level_root
        self.levels = levels
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False), _bn(out_channels))

    def forward(self, x, residual=None, children=None):
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        residual = self.project(bottom) if self.project is not None else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


def _conv_level(inplanes: int, planes: int, convs: int, stride: int = 1) -> nn.Sequential:
    layers = []
    for i in range(convs):
        layers += [nn.Conv2d(inplanes, planes, 3, stride=stride if i == 0 else 1, padding=1, bias=False),
                   _bn(planes), nn.ReLU(inplace=True)]
        inplanes = planes
    return nn.Sequential(*layers)


class DLA(nn.Module):
    """DLA backbone; ``forward`` returns the outputs of all six levels (strides 1,2,4,8,16,32)."""

    def __init__(self, levels=DLA34_LEVELS, channels=DLA34_CHANNELS, num_imagenet_classes: int = 1000):
        super().__init__()
        self.channels = list(channels)
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, stride=1, padding=3, bias=False), _bn(channels[0]), nn.ReLU(inplace=True))
        self.level0 = _conv_level(channels[0], channels[0], levels[0])
        self.level1 = _conv_level(channels[0], channels[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], channels[1], channels[2], 2, level_root=False)
        self.level3 = Tree(levels[3], channels[2], channels[3], 2, level_root=True)
        self.level4 = Tree(levels[4], channels[3], channels[4], 2, level_root=True)
        self.level5 = Tree(levels[5], channels[4], channels[5], 2, level_root=True)
        # ImageNet classifier attached by the official pretrained loader; unused in forward.
        self.fc = nn.Conv2d(channels[-1], num_imagenet_classes, 1, stride=1, padding=0, bias=True)

    def forward(self, x):
        outs = []
        x = self.base_layer(x)
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            outs.append(x)
        return outs


class DeformConv(nn.Module):
    """DCNv2 3x3 followed by ``actf`` = BN + ReLU (BN is registered first, as in the checkpoint)."""

    def __init__(self, chi: int, cho: int):
        super().__init__()
        from edgepose.ops.deform_conv import DCN

        self.actf = nn.Sequential(_bn(cho), nn.ReLU(inplace=True))
        self.conv = DCN(chi, cho, kernel_size=3, stride=1, padding=1, dilation=1, deformable_groups=1)

    def forward(self, x):
        return self.actf(self.conv(x))


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Bilinear upsampling kernel in every (depthwise) channel, as the official init."""
    w = up.weight.data
    ramp = bilinear_ramp(w.size(2), w.dtype)
    w.copy_((ramp[:, None] * ramp[None, :]).expand_as(w))


class IDAUp(nn.Module):
    """Iterative deep aggregation: layer i is projected, upsampled by ``up_f[i]`` and fused with i-1."""

    def __init__(self, out_channels: int, channels, up_f):
        super().__init__()
        for i in range(1, len(channels)):
            f = int(up_f[i])
            proj = DeformConv(int(channels[i]), out_channels)
            up = nn.ConvTranspose2d(out_channels, out_channels, f * 2, stride=f, padding=f // 2,
                                    output_padding=0, groups=out_channels, bias=False)
            fill_up_weights(up)
            node = DeformConv(out_channels, out_channels)
            setattr(self, f"proj_{i}", proj)
            setattr(self, f"up_{i}", up)
            setattr(self, f"node_{i}", node)

    def forward(self, layers: list, startp: int, endp: int) -> None:
        """Updates ``layers[startp+1:endp]`` in place."""
        for i in range(startp + 1, endp):
            j = i - startp
            up = getattr(self, f"up_{j}")(getattr(self, f"proj_{j}")(layers[i]))
            layers[i] = getattr(self, f"node_{j}")(up + layers[i - 1])


class DLAUp(nn.Module):
    """Chain of IDAUps from the coarsest level down to ``startp``; returns maps finest first."""

    def __init__(self, startp: int, channels, scales):
        super().__init__()
        self.startp = startp
        channels = list(channels)
        in_channels = list(channels)
        scales = [int(s) for s in scales]
        for i in range(len(channels) - 1):
            j = len(channels) - i - 2
            setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:], [s // scales[j] for s in scales[j:]]))
            for t in range(j + 1, len(channels)):
                scales[t] = scales[j]
                in_channels[t] = channels[j]

    def forward(self, layers: list) -> list:
        layers = list(layers)
        out = [layers[-1]]
        for i in range(len(layers) - self.startp - 1):
            getattr(self, f"ida_{i}")(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class CenterNetDLA(nn.Module):
    """``DLASeg``: DLA-34 + DLAUp + IDAUp + heads; ``forward(x) -> {"hm", "wh", "reg"}`` at stride 4."""

    def __init__(self, heads: dict, head_conv: int = 256, down_ratio: int = 4, last_level: int = 5,
                 final_kernel: int = 1):
        super().__init__()
        self.first_level = int(math.log2(down_ratio))
        self.last_level = last_level
        self.base = DLA()
        channels = self.base.channels
        fl = self.first_level
        self.dla_up = DLAUp(fl, channels[fl:], [2 ** i for i in range(len(channels) - fl)])
        self.ida_up = IDAUp(channels[fl], channels[fl:last_level], [2 ** i for i in range(last_level - fl)])
        self.heads = dict(heads)
        for name, classes in self.heads.items():
            head = nn.Sequential(
                nn.Conv2d(channels[fl], head_conv, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                nn.Conv2d(head_conv, classes, final_kernel, stride=1, padding=final_kernel // 2, bias=True))
            if "hm" in name:
                head[-1].bias.data.fill_(HM_BIAS)
            else:
                for m in head.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.constant_(m.bias, 0)
            setattr(self, name, head)

    def forward(self, x):
        feats = self.dla_up(self.base(x))
        y = [feats[i] for i in range(self.last_level - self.first_level)]
        self.ida_up(y, 0, len(y))
        return {name: getattr(self, name)(y[-1]) for name in self.heads}


def centernet_dla34(num_classes: int = 80, head_conv: int = 256) -> CenterNetDLA:
    """CenterNet ctdet DLA-34 with heads hm(num_classes), wh(2), reg(2); random init."""
    return CenterNetDLA({"hm": num_classes, "wh": 2, "reg": 2}, head_conv=head_conv)
