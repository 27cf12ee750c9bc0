"""Tiny detector / CornerNet / pose nets exported to ONNX with edgepose metadata, and generated
frames with bright rectangles as "people": the builders the pipeline, stage, CLI, model-check and
output tests share."""
from pathlib import Path

import numpy as np

from edgepose.metadata import (ALPHAPOSE_MEAN_RGB, COCO_FLIP_PAIRS, COCO_KEYPOINTS, COCO_MEAN_BGR, COCO_STD_BGR,
                               ModelMeta, attach_metadata)

DET_META = ModelMeta(
    model="tiny_det", task="ctdet", input_size=(64, 64), output_names=["hm", "wh", "reg"], batch=1,
    channel_order="BGR", mean=COCO_MEAN_BGR, std=COCO_STD_BGR, num_classes=2, person_class=0,
    heads={"hm": {"channels": 2, "stride": 4, "activation": "sigmoid"},
           "wh": {"channels": 2, "stride": 4, "activation": None},
           "reg": {"channels": 2, "stride": 4, "activation": None}})
CORNER_META = ModelMeta(
    model="tiny_corner", task="cornernet", input_size=(127, 127), batch=1, channel_order="BGR",
    mean=COCO_MEAN_BGR, std=COCO_STD_BGR, num_classes=2, person_class=0,
    output_names=["tl_heat", "br_heat", "tl_tag", "br_tag", "tl_regr", "br_regr"],
    heads={n: {"channels": c, "stride": 8, "activation": a} for n, c, a in (
        ("tl_heat", 2, "sigmoid"), ("br_heat", 2, "sigmoid"), ("tl_tag", 1, None), ("br_tag", 1, None),
        ("tl_regr", 2, None), ("br_regr", 2, None))})
POSE_META = ModelMeta(
    model="tiny_pose", task="sppe", input_size=(32, 24), output_names=["heatmaps"], batch=None,
    channel_order="RGB", mean=ALPHAPOSE_MEAN_RGB, std=(1.0, 1.0, 1.0), num_classes=1,
    keypoint_names=COCO_KEYPOINTS, flip_pairs=COCO_FLIP_PAIRS,
    heads={"heatmaps": {"channels": 17, "stride": 4, "activation": None}})


def _tiny_nets():
    import torch
    from torch import nn

    torch.manual_seed(0)

    class TinyDet(nn.Module):
        """Class 0 ("person") fires on bright areas, class 1 on dark ones; a random conv
        breaks the plateaus into distinct peaks."""

        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(4)
            self.mix = nn.Conv2d(3, 8, 3, padding=1)
            self.noise = nn.Conv2d(8, 2, 3, padding=1)
            self.wh_conv = nn.Conv2d(8, 2, 1)
            self.reg_conv = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            p = self.pool(x)
            bright = p.mean(1, keepdim=True)
            f = torch.relu(self.mix(p))
            hm = torch.cat([3 * bright - 1, -3 * bright - 2], 1) + 0.5 * self.noise(f)
            wh = 2 + 6 * torch.sigmoid(self.wh_conv(f))
            reg = torch.sigmoid(self.reg_conv(f))
            return {"hm": hm, "wh": wh, "reg": reg}

    class TinyPose(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(3, 16, 4, stride=4)
            self.out = nn.Conv2d(16, 17, 3, padding=1)

        def forward(self, x):
            return {"heatmaps": self.out(torch.relu(self.down(x)))}

    class TinyCorner(nn.Module):
        """CornerNet-style heads at stride 8: both corner heats fire on bright areas, equal
        tags, so every top-left/bottom-right pair in order forms a box."""

        def __init__(self):
            super().__init__()
            self.pool = nn.AvgPool2d(8, ceil_mode=True)
            self.mix = nn.Conv2d(3, 8, 3, padding=1)
            self.tl_noise = nn.Conv2d(8, 2, 3, padding=1)
            self.br_noise = nn.Conv2d(8, 2, 3, padding=1)
            self.regr = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            p = self.pool(x)
            bright = p.mean(1, keepdim=True)
            f = torch.relu(self.mix(p))
            base = torch.cat([3 * bright - 1, -3 * bright - 2], 1)
            r = torch.sigmoid(self.regr(f))
            return {"tl_heat": base + 0.5 * self.tl_noise(f), "br_heat": base + 0.5 * self.br_noise(f),
                    "tl_tag": 0 * bright, "br_tag": 0 * bright, "tl_regr": r[:, :2], "br_regr": r[:, 2:]}

    _tiny_nets.corner = TinyCorner
    return TinyDet().eval(), TinyPose().eval()


def _export(net, meta, path, batch, dynamic_hw=False):
    import onnx
    import torch

    h, w = meta.input_size
    names = list(meta.output_names)
    dyn = None
    if batch is None:
        dyn = {meta.input_name: {0: "n"}, **{n: {0: "n"} for n in names}}
    if dynamic_hw:
        dyn = {meta.input_name: {2: "h", 3: "w"}, **{n: {2: "oh", 3: "ow"} for n in names}}
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(batch or 2, 3, h, w),), str(path), input_names=[meta.input_name],
                          output_names=names, dynamic_axes=dyn, opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    attach_metadata(proto, meta.replace(batch=batch))
    onnx.save(proto, str(path))
    return path


def export_tiny_models(folder) -> dict:
    """Tiny detector (64x64) and pose nets (32x24, dynamic / static-1 / static-3 batch, plus
    in-graph-decode variants) exported to ONNX with edgepose metadata."""
    import torch

    torch.set_num_threads(1)
    folder = Path(folder)
    det, pose = _tiny_nets()
    paths = {
        "det": _export(det, DET_META, folder / "det.onnx", 1),
        "pose": _export(pose, POSE_META, folder / "pose.onnx", None),
        "pose_b1": _export(pose, POSE_META, folder / "pose_b1.onnx", 1),
        "pose_b3": _export(pose, POSE_META, folder / "pose_b3.onnx", 3),
        "corner": _export(_tiny_nets.corner().eval(), CORNER_META, folder / "corner.onnx", 1, dynamic_hw=True),
    }
    try:
        from edgepose.export.graph_decode import wrap_with_decode
    except ImportError:
        return paths
    wdet, _, upd = wrap_with_decode(det, DET_META, K=100)
    paths["det_topk"] = _export(wdet.eval(), DET_META.replace(**upd), folder / "det_topk.onnx", 1)
    wpose, _, upd = wrap_with_decode(pose, POSE_META)
    paths["pose_argmax"] = _export(wpose.eval(), POSE_META.replace(**upd), folder / "pose_argmax.onnx", None)
    paths["nets"] = (det, pose)
    return paths


def make_frame(seed, h=96, w=128, n_rect=3):
    """Dark noisy background with a few bright rectangles ("people")."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(10, 60, (h, w, 3), dtype=np.uint8)
    for _ in range(n_rect):
        x1, y1 = int(rng.integers(0, w - 24)), int(rng.integers(0, h - 30))
        bw, bh = int(rng.integers(12, 24)), int(rng.integers(20, 30))
        frame[y1:y1 + bh, x1:x1 + bw] = rng.integers(200, 256, (bh, bw, 3), dtype=np.uint8)
    return frame
