"""COCO format in one place: the reader of annotation files (evaluation, training data,
calibration) and the writer of result records (:func:`results_to_coco`, used by the runtime).

:func:`read_coco_json` loads and checks the dict; :func:`image_roots` and :func:`find_image`
look an entry's ``file_name`` up beside the annotation file (``images/`` first).  Each caller
passes the typed error it raises (SourceError for eval, UsageError for training data,
CalibrationError for calibration) so messages keep their meaning.  Bottom layer: NumPy only.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepose.errors import SourceError, UsageError

PERSON = 1  # COCO category id of people

_HOW = "pass a COCO-format JSON (e.g. person_keypoints_val2017.json, or val/annotations.json from " \
       "`edgepose data synth --out val`)"


def read_coco_json(ann, error=SourceError, how: str = _HOW) -> dict:
    """The COCO-format dict in ``ann`` (a path or a dict), checked to have ``images`` and
    ``annotations``.  A missing, unreadable or non-COCO file raises ``error`` ending in ``how``."""
    if isinstance(ann, dict):
        doc = ann
    else:
        path = Path(ann)
        if not path.is_file():
            raise error(f"{path}: no such annotation file; {how}")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise error(f"{path} is not valid JSON ({exc}); {how}") from None
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise error(f"{ann if not isinstance(ann, dict) else 'annotation dict'}: not a COCO annotation "
                    f"file (it needs 'images', 'annotations' and 'categories'); {how}")
    return doc


def image_roots(ann_file, image_dir=None) -> list:
    """Folders searched for the images of ``ann_file``: ``image_dir`` when given, else
    ``<ann dir>/images`` then the annotation file's own folder."""
    if image_dir is not None:
        return [Path(image_dir)]
    base = Path(ann_file).parent
    return [base / "images", base]


def find_image(file_name: str, roots) -> Path:
    """The first ``root / file_name`` that exists (``roots[0] / file_name`` when none does,
    so the caller's "cannot read" message names the expected place)."""
    roots = [Path(r) for r in roots]
    return next((r / file_name for r in roots if (r / file_name).is_file()), roots[0] / file_name)


def results_to_coco(image_id, boxes, box_scores, keypoints=None, kp_scores=None, pose_scores=None):
    """COCO results records for one image.

    ``boxes[N, 4]`` xyxy image pixels, ``box_scores[N]``, ``keypoints[N, 17, 2]``,
    ``kp_scores[N, 17, 1]`` (or ``[N, 17]``), ``pose_scores[N]``.  Each record has
    ``image_id``, ``category_id`` 1, ``bbox`` ``[x, y, w, h]``, ``keypoints`` flat
    ``[x, y, v] * 17`` with ``v`` = joint score, and ``score`` (the pose score when given,
    else the box score).  ``keypoints=None`` gives box-only records.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
    n = len(boxes)
    if n == 0:  # a frame without people contributes no records
        return []
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    if box_scores.shape != (n,):
        raise UsageError(f"{n} boxes but {box_scores.size} box scores; pass one score per box")
    kps = None
    if keypoints is not None:
        kps = np.asarray(keypoints, dtype=np.float64).reshape(n, -1, 2)
        if kp_scores is None:
            raise UsageError("keypoints given without kp_scores; pass the joint scores too")
        ks = np.asarray(kp_scores, dtype=np.float64).reshape(n, -1)
        if ks.shape != kps.shape[:2]:
            raise UsageError(f"keypoints {kps.shape} and kp_scores {ks.shape} disagree; pass [N, J, 2] and [N, J, 1]")
        kps = np.concatenate([kps, ks[..., None]], axis=2).reshape(n, -1)
    scores = box_scores
    if pose_scores is not None:
        scores = np.asarray(pose_scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise UsageError(f"{n} people but {scores.size} pose scores; pass one score per person")
    try:
        image_id = int(image_id)
    except (TypeError, ValueError):
        pass
    out = []
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        rec = {"image_id": image_id, "category_id": PERSON, "bbox": [x1, y1, x2 - x1, y2 - y1],
               "score": float(scores[i])}
        if kps is not None:
            rec["keypoints"] = [float(v) for v in kps[i]]
        out.append(rec)
    return out
