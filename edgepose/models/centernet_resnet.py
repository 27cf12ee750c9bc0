"""CenterNet ctdet on a ResNet trunk: ``res_18`` (msra_resnet) and ``resdcn_18`` (resnet_dcn).

State-dict layouts follow shared/reference/centernet_ctdet_res18.json and
centernet_ctdet_resdcn18.json: trunk keys without prefix, ``deconv_layers.<i>`` and one
Sequential per head (``<head>.0`` Conv3x3 -> ReLU -> ``<head>.2`` Conv1x1).  ``res_*``
registers heads in sorted name order (hm, reg, wh), ``resdcn_*`` in dict order (hm, wh, reg);
``forward`` returns ``{"hm", "wh", "reg"}`` in that order, ``hm`` as raw logits.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from edgepose.errors import UsageError
from edgepose.models.resnet import ResNet
from edgepose.ops.deform_conv import DCN

HEAD_ORDER = ("hm", "wh", "reg")
HM_BIAS = -2.19


def bilinear_ramp(k: int, dtype) -> "torch.Tensor":
    """The 1-D bilinear upsampling ramp of CenterNet's ``fill_up_weights`` for a k-tap kernel."""
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    return torch.tensor([1 - abs(i / f - c) for i in range(k)], dtype=dtype)


def fill_bilinear_(deconv: nn.ConvTranspose2d) -> None:
    """CenterNet's ``fill_up_weights``: bilinear kernel in ``weight[c, 0]`` for every c."""
    w = deconv.weight.data
    rows = bilinear_ramp(w.size(2), w.dtype)
    kernel = rows[:, None] * rows[None, :w.size(3)]
    w[:, 0, :, :] = kernel


class CenterNetResNet(nn.Module):
    """ResNet trunk -> 3 upsampling stages (x8) -> per-head Conv3x3/ReLU/Conv1x1 at stride 4."""

    def __init__(self, num_layers=18, dcn=False, num_classes=80, head_conv=64, widths=(64, 128, 256, 512),
                 deconv_planes=None):
        super().__init__()
        if num_classes < 1 or head_conv < 1:
            raise UsageError(f"num_classes and head_conv must be positive (got {num_classes}, {head_conv})")
        trunk = ResNet(num_layers, widths)
        # trunk modules at top level, as in the official checkpoints (no prefix)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(trunk, name))
        planes = tuple(deconv_planes) if deconv_planes else ((256, 128, 64) if dcn else (256, 256, 256))
        if len(planes) != 3:
            raise UsageError(f"deconv_planes must list 3 channel counts, got {planes!r}")
        self.dcn = bool(dcn)
        self.heads = {"hm": num_classes, "wh": 2, "reg": 2}
        self.deconv_layers = self._make_deconv(trunk.out_channels, planes)
        head_names = sorted(self.heads) if not dcn else list(HEAD_ORDER)
        for name in head_names:
            head = nn.Sequential(nn.Conv2d(planes[-1], head_conv, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                                 nn.Conv2d(head_conv, self.heads[name], 1, bias=True))
            self._init_head(name, head)
            self.add_module(name, head)

    def _make_deconv(self, inplanes, planes):
        layers = []
        for p in planes:
            if self.dcn:
                layers += [DCN(inplanes, p, 3, 1, 1), nn.BatchNorm2d(p), nn.ReLU(inplace=True)]
                inplanes = p
            up = nn.ConvTranspose2d(inplanes, p, 4, stride=2, padding=1, output_padding=0, bias=False)
            if self.dcn:
                fill_bilinear_(up)
            else:
                nn.init.normal_(up.weight, std=0.001)
            layers += [up, nn.BatchNorm2d(p), nn.ReLU(inplace=True)]
            inplanes = p
        for m in layers:
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        return nn.Sequential(*layers)

    @staticmethod
    def _init_head(name, head):
        if name == "hm":
            nn.init.constant_(head[-1].bias, HM_BIAS)
            return
        for m in head:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.deconv_layers(x)
        return {name: getattr(self, name)(x) for name in HEAD_ORDER}


def centernet_resnet(num_layers=18, dcn=False, num_classes=80, head_conv=64, widths=(64, 128, 256, 512),
                     deconv_planes=None) -> CenterNetResNet:
    """Generic builder (e.g. a slim person-only detector: ``widths=(16,32,64,128), num_classes=1``)."""
    return CenterNetResNet(num_layers, dcn, num_classes, head_conv, widths, deconv_planes)


def centernet_res18(num_classes=80, head_conv=64) -> CenterNetResNet:
    """Official ``res_18`` (msra_resnet, deconv 3x256, no DCN)."""
    return CenterNetResNet(18, False, num_classes, head_conv)


def centernet_resdcn18(num_classes=80, head_conv=64) -> CenterNetResNet:
    """Official ``resdcn_18`` (DCNv2 + bilinear ConvTranspose stages 256/128/64)."""
    return CenterNetResNet(18, True, num_classes, head_conv)
