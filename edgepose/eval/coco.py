"""COCO person box AP and keypoint AP through pycocotools' ``COCOeval``.

    metrics = evaluate("val/annotations.json", results)   # results: list of dicts or a JSON path
    metrics["bbox_AP"], metrics["keypoints_AP"]             # pycocotools' 0-1 scale
    print(format_table(metrics))

Only the person category (id 1) is scored.  Keypoint AP uses OKS with the COCO sigmas
(shared/reference/README.md, "COCO keypoints"), thresholds 0.50:0.05:0.95, maxDets 20.
pycocotools is imported lazily; its chatter is silenced unless ``verbose=True``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np

from edgepose.data.coco import PERSON, read_coco_json, results_to_coco
from edgepose.errors import SourceError, UsageError

__all__ = ["evaluate", "results_to_coco", "format_table", "COCO_KPT_OKS_SIGMAS", "METRIC_NAMES"]

COCO_KPT_OKS_SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0

#: pycocotools ``stats`` positions for each reported metric
METRIC_NAMES = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
}
_REPORTED = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR"),
}


def _quiet(verbose):
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _coco_api():
    from edgepose._deps import require

    require("pycocotools.coco")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def _load_gt(ann, verbose):
    COCO, _ = _coco_api()
    if isinstance(ann, COCO):
        return ann
    doc = read_coco_json(ann)
    coco = COCO()
    coco.dataset = copy.deepcopy(doc)
    with _quiet(verbose):
        coco.createIndex()
    return coco


def _load_results(results):
    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.is_file():
            raise SourceError(f"{path}: no such results file; pass the JSON written by `edgepose run --json`")
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path} is not valid JSON ({exc}); pass a COCO results list") from None
    if not isinstance(results, (list, tuple)) or not all(isinstance(r, dict) for r in results):
        raise UsageError("results must be a list of COCO result dicts (image_id, category_id, bbox/keypoints, "
                         "score) or the path of such a JSON file")
    return list(results)


def _empty_res(gt):
    COCO, _ = _coco_api()
    res = COCO()
    res.dataset = {"images": list(gt.dataset.get("images", [])),
                   "categories": copy.deepcopy(gt.dataset.get("categories", [])), "annotations": []}
    with _quiet(True):
        res.createIndex()
    return res


def evaluate(ann, results, iou_types=("bbox", "keypoints"), verbose=False):
    """COCO metrics of ``results`` against the person annotations of ``ann``.

    ``ann``: path, COCO-format dict or ``pycocotools.coco.COCO``.  ``results``: list of COCO
    result dicts or the path of a JSON list.  Returns ``{"bbox_AP", "bbox_AP50",
    "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl", "bbox_AR100", "keypoints_AP", ...,
    "keypoints_AR"}`` for the requested ``iou_types`` on pycocotools' 0-1 scale; -1 means no
    ground truth in that area range (pycocotools' convention).  Empty results score 0.
    Box AP reads each result's ``bbox``; keypoint AP reads ``keypoints`` (the area of a
    keypoint result is its keypoints' extent, as for a standard keypoint results file).
    """
    _, COCOeval = _coco_api()
    iou_types = (iou_types,) if isinstance(iou_types, str) else tuple(iou_types)
    for t in iou_types:
        if t not in METRIC_NAMES:
            raise UsageError(f"unknown iou type {t!r}; use 'bbox' and/or 'keypoints'")
    gt = _load_gt(ann, verbose)
    if PERSON not in gt.getCatIds():
        raise SourceError("the annotations have no person category (id 1); edgepose scores people only")
    results = _load_results(results)
    gt_imgs = set(gt.getImgIds())
    unknown = {r.get("image_id") for r in results} - gt_imgs
    if unknown:
        sample = sorted(map(str, unknown))[:5]
        raise UsageError(f"results refer to {len(unknown)} image id(s) not in the annotations (e.g. "
                         f"{', '.join(sample)}); evaluate against the annotation file the images came from")
    metrics = {}
    for iou_type in iou_types:
        field = "bbox" if iou_type == "bbox" else "keypoints"
        dets = []
        for r in results:
            if field not in r:
                raise UsageError(f"a result has no {field!r}; produce it or evaluate with iou_types "
                                 f"without {iou_type!r}")
            d = {k: copy.deepcopy(v) for k, v in r.items() if k not in ("area", "id", "segmentation")}
            if iou_type == "keypoints":
                d.pop("bbox", None)  # let loadRes take the area from the keypoints' extent
                if len(d["keypoints"]) != 3 * len(COCO_KPT_OKS_SIGMAS):
                    raise UsageError(f"keypoint results need 17 (x, y, v) triples, got {len(d['keypoints'])} "
                                     "numbers; only COCO-17 keypoints are supported")
            dets.append(d)
        if iou_type == "keypoints":
            for a in gt.dataset["annotations"]:
                if a.get("category_id") == PERSON and "keypoints" not in a:
                    raise SourceError("the person annotations have no 'keypoints'; use a COCO keypoints file "
                                      "or evaluate with iou_types=('bbox',)")
        with _quiet(verbose):
            dt = gt.loadRes(dets) if dets else _empty_res(gt)
            ev = COCOeval(gt, dt, iou_type)
            ev.params.catIds = [PERSON]
            if iou_type == "keypoints":
                ev.params.kpt_oks_sigmas = COCO_KPT_OKS_SIGMAS.copy()
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = dict(zip(METRIC_NAMES[iou_type], (float(v) for v in ev.stats)))
        for name in _REPORTED[iou_type]:
            metrics[f"{iou_type}_{name}"] = stats[name]
    return metrics


def format_table(metrics):
    """Box and keypoint AP/AP50/AP75/APs/APm/APl in points (0-100) as a small text table."""
    cols = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    head = f"{'':<10}" + "".join(f"{c:>7}" for c in cols)
    lines = [head, "-" * len(head)]
    for kind, label in (("bbox", "box"), ("keypoints", "keypoints")):
        if not any(k.startswith(kind + "_") for k in metrics):
            continue
        cells = []
        for c in cols:
            v = metrics.get(f"{kind}_{c}")
            cells.append(f"{'-':>7}" if v is None or v < 0 else f"{100 * v:>7.1f}")
        lines.append(f"{label:<10}" + "".join(cells))
    return "\n".join(lines)
