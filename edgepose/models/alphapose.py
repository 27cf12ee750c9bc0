"""AlphaPose single-person pose estimators: FastPose (SE-ResNet + PixelShuffle/DUC) and SimplePose.

State-dict layouts follow shared/reference/alphapose_fastpose_res50_256x192.json and
alphapose_simplepose_res50_256x192.json (trunk under ``preact.``).  ``forward`` returns
``{"heatmaps": [N, J, H/4, W/4]}`` raw (no activation), joints in COCO order.
"""
from __future__ import annotations

from torch import nn

from edgepose.errors import UsageError
from edgepose.models.resnet import ResNet


class DUC(nn.Module):
    """Dense upsampling convolution: Conv3x3 (no bias) -> BN -> ReLU -> PixelShuffle."""

    def __init__(self, inplanes, planes, upscale_factor=2):
        super().__init__()
        self.conv = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(planes, momentum=0.1)
        self.relu = nn.ReLU(inplace=True)
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)

    def forward(self, x):
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


class FastPose(nn.Module):
    """``preact`` (SE-ResNet) -> ``suffle1`` PixelShuffle(2) -> ``duc1`` -> ``duc2`` -> ``conv_out`` 3x3."""

    def __init__(self, num_layers=50, num_joints=17, widths=(64, 128, 256, 512), conv_dim=None):
        super().__init__()
        self.preact = ResNet(num_layers, widths, se_first_block=True)
        c = self.preact.out_channels
        if c % 16:
            raise UsageError(f"FastPose needs trunk output channels divisible by 16, got {c}; adjust widths")
        shuffled = c // 4  # 2048 -> 512
        conv_dim = conv_dim or c // 16  # 128 for ResNet-50
        self.suffle1 = nn.PixelShuffle(2)
        self.duc1 = DUC(shuffled, shuffled * 2)  # 512 -> 1024 -> shuffle -> 256
        self.duc2 = DUC(shuffled // 2, conv_dim * 4)  # 256 -> 512 -> shuffle -> 128
        self.conv_out = nn.Conv2d(conv_dim, num_joints, 3, padding=1)
        nn.init.normal_(self.conv_out.weight, std=0.001)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x):
        x = self.duc2(self.duc1(self.suffle1(self.preact(x))))
        return {"heatmaps": self.conv_out(x)}


class SimplePose(nn.Module):
    """``preact`` (ResNet) -> ``deconv_layers`` 3x[ConvT 4x4 s2 -> BN -> ReLU] -> ``final_layer`` 1x1."""

    def __init__(self, num_layers=50, num_joints=17, deconv_filters=(256, 256, 256), widths=(64, 128, 256, 512)):
        super().__init__()
        self.preact = ResNet(num_layers, widths)
        if len(deconv_filters) != 3:
            raise UsageError(f"deconv_filters must list 3 channel counts, got {deconv_filters!r}")
        layers, inplanes = [], self.preact.out_channels
        for planes in deconv_filters:
            up = nn.ConvTranspose2d(inplanes, planes, 4, stride=2, padding=1, output_padding=0, bias=False)
            nn.init.normal_(up.weight, std=0.001)
            layers += [up, nn.BatchNorm2d(planes, momentum=0.1), nn.ReLU(inplace=True)]
            inplanes = planes
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(inplanes, num_joints, 1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x):
        return {"heatmaps": self.final_layer(self.deconv_layers(self.preact(x)))}


def fastpose(num_layers=50, num_joints=17, widths=(64, 128, 256, 512), conv_dim=None) -> FastPose:
    return FastPose(num_layers, num_joints, widths, conv_dim)


def simplepose(num_layers=50, num_joints=17, deconv_filters=(256, 256, 256), widths=(64, 128, 256, 512)) -> SimplePose:
    return SimplePose(num_layers, num_joints, deconv_filters, widths)


def fastpose_res50(num_joints=17) -> FastPose:
    """Official FastPose ResNet-50 (SE on first blocks, conv_dim 128), 72.0 AP model."""
    return FastPose(50, num_joints)


def simplepose_res50(num_joints=17) -> SimplePose:
    """Official SimplePose ResNet-50, deconv 3x256."""
    return SimplePose(50, num_joints)
