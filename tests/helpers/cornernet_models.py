"""Tiny stand-ins for the CornerNet-Squeeze tests: a randomised CornerNet that finds "people"
and a tiny SimplePose exported beside it."""
from __future__ import annotations

import torch

from edgepose.export import torch2onnx
from edgepose.metadata import ModelMeta
from edgepose.models import create
from edgepose.models.alphapose import simplepose


def randomised_cornernet(seed: int = 3):
    """CornerNet-Squeeze with seeded random weights (conv weights and BN statistics) and corner
    heads biased to confident person (class 0) corners; whether it finds boxes depends on
    ``seed`` only, not on test order."""
    torch.manual_seed(seed)
    model = create("cornernet_squeeze")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
        for head in ("tl_heats", "br_heats"):  # confident person (class 0) corners
            bias = getattr(model, head)[-1][-1].bias
            bias.fill_(-4.0)
            bias[0] = 1.0
    return model.eval()


def export_tiny_pose(path):
    """A tiny 17-joint SimplePose (64x32 input, dynamic batch) exported to ``path``."""
    pose = simplepose(num_layers=18, num_joints=17, deconv_filters=(16, 16, 16), widths=(8, 16, 16, 32)).eval()
    meta = ModelMeta(model="tiny_pose", task="sppe", input_size=(64, 32), channel_order="RGB",
                     mean=(0.406, 0.457, 0.480), keypoint_names=[str(i) for i in range(17)])
    return torch2onnx(pose, path, batch="dynamic", meta=meta)
