"""Run a pipeline over a COCO-format annotation file and score it (box AP + keypoint AP).

    metrics, results, stats = evaluate_pipeline(pipe, "val/annotations.json", "val/images")
    metrics["bbox_AP"], metrics["keypoints_AP"]        # pycocotools' 0-1 scale

Works the same for the synthetic validation set and for real COCO val2017
(``person_keypoints_val2017.json`` + ``val2017/``): only the person category is scored.
``pipe`` is anything callable as ``pipe(frame_bgr) -> PoseResult`` (see
:class:`edgepose.pipeline.pipeline.Pipeline`).
"""
from __future__ import annotations

import time
from pathlib import Path

from edgepose.errors import SourceError, UsageError

PERSON = 1
METRIC_KEYS = ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl",
               "keypoints_AP", "keypoints_AP50", "keypoints_AP75", "keypoints_APm", "keypoints_APl")


def load_person_coco(ann_file, limit: int | None = None, quiet: bool = True):
    """A pycocotools ``COCO`` holding only the person category (and the first ``limit``
    images, sorted by id) of ``ann_file`` (a path or a COCO-format dict)."""
    from edgepose._deps import require

    require("pycocotools")
    from pycocotools.coco import COCO

    from edgepose.data.coco import read_coco_json

    doc = read_coco_json(ann_file)
    cats = [c for c in doc.get("categories", []) if c.get("id") == PERSON]
    if not cats:
        raise SourceError(f"{ann_file}: no person category (id 1); edgepose scores people only")
    images = sorted(doc["images"], key=lambda im: im["id"])
    if limit is not None:
        if int(limit) < 1:
            raise UsageError(f"--limit must be >= 1, got {limit}")
        images = images[: int(limit)]
    keep = {im["id"] for im in images}
    anns = [a for a in doc["annotations"] if a.get("category_id") == PERSON and a["image_id"] in keep]
    sub = {"images": images, "annotations": anns, "categories": cats}
    for key in ("info", "licenses"):
        if key in doc:
            sub[key] = doc[key]
    coco = COCO()
    coco.dataset = sub
    if quiet:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    else:
        coco.createIndex()
    return coco


def _zero_metrics():
    return {k: 0.0 for k in METRIC_KEYS}


def evaluate_pipeline(pipe, ann_file, images_dir, limit: int | None = None, progress: bool = True,
                      iou_types=("bbox", "keypoints")):
    """Run ``pipe`` on each image of ``ann_file`` (read from ``images_dir``) and score it.

    Returns ``(metrics, results, stats)``: the metrics dict of
    :func:`edgepose.eval.coco.evaluate` (plus ``images`` and ``fps``: images per second of
    the ``pipe`` calls), the COCO result records, and per-stage
    :class:`~edgepose.eval.timing.LatencyStats` (``"total"`` included) from the frames'
    ``timings``.
    """
    from edgepose.data.sources import read_image_checked
    from edgepose.eval.coco import evaluate
    from edgepose.pipeline.timing import StageTimer

    coco = load_person_coco(ann_file, limit=limit)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise SourceError(f"{images_dir}: no such folder; pass the folder holding the annotation file's images")
    img_ids = sorted(coco.getImgIds())
    timer = StageTimer()
    results = []
    busy = 0.0
    iterator = img_ids
    bar = None
    if progress:
        from tqdm import tqdm

        iterator = bar = tqdm(img_ids, desc="eval", unit="img", dynamic_ncols=True)
    try:
        for image_id in iterator:
            info = coco.imgs[image_id]
            path = images_dir / info["file_name"]
            frame, reason = read_image_checked(path) if path.is_file() else (None, "no such file")
            if frame is None:  # a truncated JPEG would otherwise be scored half-grey
                raise SourceError(f"cannot read {path} (image {image_id} of the annotation file): {reason}; "
                                  "check --images points at the right folder and the file is complete")
            t0 = time.perf_counter()
            result = pipe(frame)
            busy += time.perf_counter() - t0
            timings = getattr(result, "timings", None) or {}
            if timings:
                timer.merge_frame(timings)
            if len(result):  # results_to_coco of an empty frame adds nothing
                results.extend(result.to_coco(image_id))
    finally:
        if bar is not None:
            bar.close()
    from edgepose.pipeline.caps import warn_caps

    warn_caps(pipe)
    if results:
        metrics = dict(evaluate(coco, results, iou_types=iou_types))
    else:  # pycocotools cannot load an empty result list; nothing found scores 0
        metrics = _zero_metrics()
    metrics["images"] = len(img_ids)
    metrics["fps"] = len(img_ids) / busy if busy > 0 else 0.0
    return metrics, results, timer.stats()


def format_metrics(metrics: dict) -> str:
    """Box and keypoint AP, AP50, AP75, APm, APl in points (0-100), one row each."""
    cols = ("AP", "AP50", "AP75", "APm", "APl")
    head = f"{'':<10}" + "".join(f"{c:>8}" for c in cols)
    lines = [head, "-" * len(head)]
    for kind, label in (("bbox", "box"), ("keypoints", "keypoints")):
        vals = [metrics.get(f"{kind}_{c}") for c in cols]
        if all(v is None for v in vals):
            continue
        lines.append(f"{label:<10}" + "".join(f"{100 * v:>8.1f}" if v is not None and v >= 0 else f"{'-':>8}"
                                                for v in vals))
    return "\n".join(lines)
