"""Agreement of a student with its teacher, and what a model costs.

* :func:`pck` -- PCK@``alpha``: a teacher joint (``v > 0``) counts as found when the student
  person matched to that teacher person (greedy by box IoU >= 0.5, highest IoU first) puts
  the joint within ``alpha * max(box width, box height)`` of the teacher's; teacher people
  without a match count all their joints as missed;
* :func:`agreement` -- pycocotools box AP / keypoint AP of the student's results with the
  teacher's labels as ground truth (:func:`edgepose.eval.coco.evaluate`) plus :func:`pck`;
* :func:`torch_cost` -- parameters and GFLOPs of a torch module at an input size (torch's own
  ``FlopCounterMode``; one multiply-add = 2 FLOPs); :func:`onnx_params` -- parameters of an
  ONNX file (its initializers).
"""
from __future__ import annotations

import numpy as np

__all__ = ["pck", "agreement", "torch_cost", "onnx_params"]


def _iou(a, b):
    """IoU matrix of xywh boxes ``a [N,4]`` and ``b [M,4]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _match(gt_boxes, dt_boxes, min_iou):
    iou = _iou(gt_boxes, dt_boxes)
    pairs, used_g, used_d = {}, set(), set()
    for flat in np.argsort(-iou, axis=None):
        g, d = np.unravel_index(flat, iou.shape)
        if iou[g, d] < min_iou:
            break
        if g in used_g or d in used_d:
            continue
        pairs[int(g)] = int(d)
        used_g.add(g)
        used_d.add(d)
    return pairs


def pck(gt_doc, results, alpha=0.1, min_iou=0.5) -> dict:
    """``{"pck": fraction, "joints": labelled teacher joints, "matched_people", "people"}``."""
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    found = total = matched = people = 0
    gt_by_image = {}
    for a in gt_doc["annotations"]:
        gt_by_image.setdefault(a["image_id"], []).append(a)
    for image_id, gts in gt_by_image.items():
        dts = by_image.get(image_id, [])
        pairs = _match([g["bbox"] for g in gts], [d["bbox"] for d in dts], min_iou) if dts else {}
        for gi, g in enumerate(gts):
            kg = np.asarray(g["keypoints"], np.float64).reshape(-1, 3)
            labelled = kg[:, 2] > 0
            if not labelled.any():
                continue
            people += 1
            total += int(labelled.sum())
            if gi not in pairs:
                continue
            matched += 1
            kd = np.asarray(dts[pairs[gi]]["keypoints"], np.float64).reshape(-1, 3)
            dist = np.hypot(*(kd[:, :2] - kg[:, :2]).T)
            found += int((dist[labelled] <= alpha * max(g["bbox"][2], g["bbox"][3])).sum())
    return {"pck": found / total if total else float("nan"), "joints": total, "matched_people": matched,
            "people": people}


def agreement(gt_doc, results, alpha=0.1) -> dict:
    """Box AP, keypoint AP (pycocotools, teacher labels as ground truth) and PCK@alpha."""
    from edgepose.eval.coco import evaluate

    metrics = evaluate(gt_doc, results, iou_types=("bbox", "keypoints"))
    out = {k: metrics[k] for k in ("bbox_AP", "bbox_AP50", "keypoints_AP", "keypoints_AP50") if k in metrics}
    p = pck(gt_doc, results, alpha)
    out[f"pck@{alpha:g}"] = p["pck"]
    out["teacher_people"] = p["people"]
    out["matched_people"] = p["matched_people"]
    return out


def torch_cost(model, input_size) -> dict:
    """``{"params", "gflops"}`` of ``model`` on one ``1x3xHxW`` input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (int(v) for v in input_size)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, h, w))
    model.train(was_training)
    return {"params": int(sum(p.numel() for p in model.parameters())),
            "gflops": round(counter.get_total_flops() / 1e9, 4)}


def onnx_params(path) -> int:
    """Number of weights stored in an ONNX file's initializers."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) if t.dims else 1 for t in proto.graph.initializer))
