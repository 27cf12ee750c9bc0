"""ResNet trunk with torchvision's state_dict layout (conv1/bn1/layer1..layer4, no fc).

Used by CenterNet ``res_*``/``resdcn_*`` and by AlphaPose (``preact``).  ``widths`` scales
the four stages for slim models; ``se_first_block`` adds AlphaPose's SE layer
(reduction 1) to the first block of every stage, as in ``SE_Resnet.py``.
"""
from __future__ import annotations

from torch import nn

from edgepose.errors import UsageError

BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


class SELayer(nn.Module):
    """Squeeze-excitation: avgpool -> Linear -> ReLU -> Linear -> Sigmoid, scales channels."""

    def __init__(self, channels: int, reduction: int = 1):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        n, c = x.shape[:2]
        y = self.fc(self.avg_pool(x).flatten(1)).view(n, c, 1, 1)
        return x * y


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, se=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if se:
            self.se = SELayer(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if hasattr(self, "se"):
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, torchvision v1.5 / AlphaPose) -> 1x1, expansion 4."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, se=False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        if se:
            self.se = SELayer(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if hasattr(self, "se"):
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stride-32 ResNet trunk; ``forward`` returns the layer4 feature map."""

    def __init__(self, num_layers: int = 18, widths=(64, 128, 256, 512), se_first_block: bool = False):
        super().__init__()
        if num_layers not in BLOCKS:
            raise UsageError(f"ResNet depth {num_layers} is not supported; use one of {sorted(BLOCKS)}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise UsageError(f"ResNet widths must be 4 positive ints, got {widths!r}")
        kind, counts = BLOCKS[num_layers]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.num_layers, self.widths, self.block = num_layers, widths, block
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (planes, count) in enumerate(zip(widths, counts)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, count, 1 if i == 0 else 2,
                                                            se_first_block))
        self.out_channels = widths[3] * block.expansion
        self._init_weights()

    def _make_layer(self, block, planes, count, stride, se_first):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, se=se_first and downsample is not None)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet(num_layers: int = 18, widths=(64, 128, 256, 512), se_first_block: bool = False) -> ResNet:
    return ResNet(num_layers, widths, se_first_block)


__all__ = ["ResNet", "BasicBlock", "Bottleneck", "SELayer", "resnet"]
