"""Training targets: CenterNet gaussian heads (radius, splat, ctdet targets) and SPPE joint heatmaps."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["gaussian_radius", "draw_gaussian", "ctdet_targets", "joint_heatmaps"]


def gaussian_radius(det_size, min_overlap: float = 0.7) -> float:
    """CenterNet's radius rule for a box of ``det_size = (height, width)`` (output-map pixels).

    The smallest of the three radii for which a corner-shifted box still has IoU >=
    ``min_overlap`` with the ground truth (the three quadratic cases of CornerNet, with
    CenterNet's form of the roots).
    """
    height, width = float(det_size[0]), float(det_size[1])
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, center, radius: int) -> np.ndarray:
    """Element-wise max of ``heatmap`` with a gaussian of ``sigma = (2r+1)/6`` at integer ``center``.

    The peak value is exactly 1 (CenterNet's ``draw_umich_gaussian``); in place, returns it.
    """
    radius = max(0, int(radius))
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if right <= 0 or bottom <= 0 or left < 0 or top < 0:
        return heatmap
    patch = heatmap[y - top:y + bottom, x - left:x + right]
    gpatch = g[radius - top:radius + bottom, radius - left:radius + right]
    if patch.size and gpatch.size:
        np.maximum(patch, gpatch.astype(heatmap.dtype), out=patch)
    return heatmap


def ctdet_targets(boxes_out: np.ndarray, classes, num_classes: int, out_size, max_objs: int = 64):
    """CenterNet training targets from boxes already in output-map pixels (``[N, 4]`` xyxy).

    Boxes are clipped to the map; empty ones are dropped.  Returns a dict of
    ``hm [C, H, W]``, ``wh [K, 2]``, ``reg [K, 2]``, ``ind [K]`` (int64 ``y*W + x``) and
    ``reg_mask [K]`` (uint8), with ``K = max_objs``.
    """
    out_h, out_w = int(out_size[0]), int(out_size[1])
    hm = np.zeros((num_classes, out_h, out_w), np.float32)
    wh = np.zeros((max_objs, 2), np.float32)
    reg = np.zeros((max_objs, 2), np.float32)
    ind = np.zeros((max_objs,), np.int64)
    reg_mask = np.zeros((max_objs,), np.uint8)
    k = 0
    for box, cls in zip(np.asarray(boxes_out, np.float32).reshape(-1, 4), classes):
        if k >= max_objs:
            break
        box = box.copy()
        box[[0, 2]] = np.clip(box[[0, 2]], 0, out_w - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, out_h - 1)
        h, w = box[3] - box[1], box[2] - box[0]
        if h <= 0 or w <= 0:
            continue
        radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
        ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
        ct_int = ct.astype(np.int32)
        draw_gaussian(hm[int(cls)], ct_int, radius)
        wh[k] = (w, h)
        ind[k] = ct_int[1] * out_w + ct_int[0]
        reg[k] = ct - ct_int
        reg_mask[k] = 1
        k += 1
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask}


def joint_heatmaps(joints_hm: np.ndarray, visible: np.ndarray, out_size, sigma: float):
    """Gaussian joint heatmaps ``[J, H, W]`` and target weights ``[J]``.

    ``joints_hm``: ``[J, 2]`` joint positions in heatmap pixels (input pixels / stride).  Each
    gaussian is centred at the (sub-pixel) joint position, so its peak lies on the nearest
    heatmap pixel; the weight is 1 for a labelled joint (``visible``) whose nearest pixel lies on
    the map, else 0 and its map stays empty.
    """
    out_h, out_w = int(out_size[0]), int(out_size[1])
    num = len(joints_hm)
    target = np.zeros((num, out_h, out_w), np.float32)
    weight = np.zeros((num,), np.float32)
    xs = np.arange(out_w, dtype=np.float32)[None, :]
    ys = np.arange(out_h, dtype=np.float32)[:, None]
    for j in range(num):
        if not visible[j]:
            continue
        mx, my = float(joints_hm[j, 0]), float(joints_hm[j, 1])
        if not (-0.5 <= mx < out_w - 0.5 and -0.5 <= my < out_h - 0.5):
            continue  # the peak pixel would be off the map: no supervision for this joint
        target[j] = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * sigma * sigma))
        weight[j] = 1.0
    return target, weight
