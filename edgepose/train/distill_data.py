"""Scene distillation data: pseudo-labels, footage frames, held-out split, student sizes.

Everything is turned into one canonical form, a COCO keypoints **annotation** dict
(``images`` with absolute ``file_name`` paths, person ``annotations`` with ``bbox``,
``keypoints`` and ``area``), which :class:`edgepose.train.coco_data.CocoPeople` reads:

* :func:`load_labels` -- ready-made labels, COCO annotation format or COCO **results** format
  (AlphaPose's / ``edgepose run --json`` output); results' image ids are mapped to the files of
  ``--images`` by their numeric stem (``000123.jpg`` -> 123);
* :func:`label_frames` -- a teacher (anything with ``__call__(frame) -> PoseResult``) run over
  footage frames; its joints below ``kp_threshold`` become unlabelled (weight 0);
* :func:`split_tail` -- one video only: the last 25 % after a 5 % gap is the validation part;
* :func:`check_no_overlap` -- validation frames must not repeat training frames (pixel hash);
* :func:`choose_det_input` / :func:`choose_pose_input` -- student input sizes from the
  people's pixel sizes in the footage.

NumPy/OpenCV only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from edgepose.errors import SourceError, UsageError
from edgepose.metadata import COCO_KEYPOINTS, COCO_SKELETON

log = logging.getLogger("edgepose")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
POSE_INPUTS = ((128, 96), (256, 192))  # W/H 0.75 like AlphaPose, sides multiples of 32

__all__ = ["load_labels", "label_frames", "split_tail", "subset", "check_no_overlap", "frame_hash",
           "choose_det_input", "choose_pose_input", "people_count", "coco_doc", "person_annotation"]


def coco_doc(images, annotations, info=None) -> dict:
    """A COCO keypoints annotation dict with the person category."""
    cat = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
           "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}
    return {"info": dict(info or {}), "images": list(images), "annotations": list(annotations),
            "categories": [cat]}


def person_annotation(ann_id, image_id, bbox_xywh, keypoints, joint_scores, kp_threshold, score=None):
    """One person as a COCO annotation; joints scoring below ``kp_threshold`` get ``v = 0``."""
    kps = np.asarray(keypoints, np.float64).reshape(-1, 2)
    js = np.asarray(joint_scores, np.float64).reshape(-1)
    flat = []
    for (x, y), s in zip(kps, js):
        flat += [float(x), float(y), 2] if s >= kp_threshold else [0.0, 0.0, 0]
    x, y, w, h = (float(v) for v in bbox_xywh)
    ann = {"id": int(ann_id), "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
           "bbox": [x, y, w, h], "area": w * h, "keypoints": flat, "num_keypoints": int(sum(flat[2::3]) // 2)}
    if score is not None:
        ann["score"] = float(score)
    return ann


def people_count(doc) -> int:
    return sum(1 for a in doc["annotations"] if a["bbox"][2] > 1 and a["bbox"][3] > 1)


# ----------------------------------------------------------------------------- ready-made labels
def _read_json(path):
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such labels file; pass a COCO keypoints JSON (annotations or results)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path} is not readable JSON ({exc}); pass a COCO keypoints JSON") from None


def _images_by_stem(image_dir):
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise SourceError(f"{image_dir}: no such image folder; pass --images DIR with the labelled frames")
    out = {}
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit():
            out.setdefault(int(p.stem), p)
    return out


def _results_to_doc(records, image_dir, kp_threshold, score_threshold, source):
    files = _images_by_stem(image_dir)
    ids = {r.get("image_id") for r in records}
    bad = sorted(str(i) for i in ids if not isinstance(i, int) or i not in files)
    if bad:
        raise SourceError(f"{source}: {len(bad)} image id(s) have no image named by that number in {image_dir} "
                          f"(e.g. {', '.join(bad[:5])}); results' ids are matched to files by numeric stem "
                          "(id 123 -> 000123.jpg), so pass the folder the labels were made from")
    images = [{"id": i, "file_name": str(p.resolve())} for i, p in sorted(files.items())]
    anns = []
    for r in records:
        if r.get("category_id", 1) != 1 or "bbox" not in r or "keypoints" not in r:
            continue
        if score_threshold is not None and float(r.get("score", 1.0)) < score_threshold:
            continue
        kps = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        anns.append(person_annotation(len(anns) + 1, r["image_id"], r["bbox"], kps[:, :2], kps[:, 2],
                                      kp_threshold, r.get("score")))
    return images, anns


def _annotations_to_doc(doc, image_dir, source):
    roots = [Path(image_dir)] if image_dir is not None else []
    roots += [Path(source).parent / "images", Path(source).parent]
    images, missing = [], []
    for img in doc["images"]:
        name = img["file_name"]
        path = next((r / name for r in roots if (r / name).is_file()), None)
        if path is None:
            missing.append(f"{img['id']} ({name})")
            continue
        images.append({**img, "file_name": str(path.resolve())})
    if missing:
        raise SourceError(f"{source}: {len(missing)} labelled image(s) are missing from "
                          f"{image_dir or Path(source).parent} or its images/ (e.g. {', '.join(missing[:3])}); "
                          "pass --images with the folder holding them")
    anns = [dict(a, area=a.get("area") or a["bbox"][2] * a["bbox"][3]) for a in doc["annotations"]
            if a.get("category_id", 1) == 1 and not a.get("iscrowd", 0) and "keypoints" in a]
    return images, anns


def load_labels(path, image_dir=None, kp_threshold=0.2, score_threshold=None) -> dict:
    """Ready-made labels -> canonical annotation dict (see the module docstring).

    Raises SourceError for missing images or labels without any usable person.
    """
    raw = _read_json(path)
    if isinstance(raw, list):
        if image_dir is None:
            raise UsageError(f"{path} is in COCO results format; pass --images DIR so its image ids can be "
                             "matched to files by numeric stem")
        images, anns = _results_to_doc(raw, image_dir, kp_threshold, score_threshold, path)
        kind = "results"
    elif isinstance(raw, dict) and "images" in raw and "annotations" in raw:
        images, anns = _annotations_to_doc(raw, image_dir, path)
        kind = "annotations"
    else:
        raise SourceError(f"{path}: neither COCO annotations (images + annotations) nor COCO results "
                          "(a list of image_id/bbox/keypoints/score); pass a COCO keypoints JSON")
    doc = coco_doc(images, anns, {"labels": str(path), "format": kind})
    usable = [a for a in anns if a.get("num_keypoints", 0) > 0 and a["bbox"][2] > 1 and a["bbox"][3] > 1]
    if not usable:
        raise SourceError(f"{path}: no usable person (person boxes with at least one labelled keypoint"
                          f"{f' above score {kp_threshold}' if kind == 'results' else ''}); "
                          "check the file is a keypoints file and its category is person (1)")
    return doc


# ----------------------------------------------------------------------------- teacher labels
def frame_hash(frame) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame).tobytes()).hexdigest()


def label_frames(teacher, source, frame_dir, kp_threshold=0.2, max_frames=None, progress=True, desc="teacher"):
    """Run ``teacher`` over ``source`` (an edgepose.data.sources Source); frames saved as JPEG
    (quality 95) in ``frame_dir``.  Returns ``(doc, hashes)``; ``doc["info"]["teacher_ms"]``
    holds the teacher's per-frame wall-clock milliseconds."""
    import time

    import cv2
    from tqdm import tqdm

    frame_dir = Path(frame_dir)
    frame_dir.mkdir(parents=True, exist_ok=True)
    images, anns, hashes, times = [], [], [], []
    total = source.total if max_frames is None else min(source.total or max_frames, max_frames)
    with tqdm(total=total, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True,
              mininterval=2.0) as bar:
        for index, (_, frame, _name) in enumerate(source):
            if max_frames is not None and index >= max_frames:
                break
            t0 = time.perf_counter()
            result = teacher(frame)
            times.append((time.perf_counter() - t0) * 1e3)
            path = frame_dir / f"{index:06d}.jpg"
            if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise SourceError(f"cannot write {path}; check free disk space")
            h, w = frame.shape[:2]
            images.append({"id": index + 1, "file_name": str(path.resolve()), "height": h, "width": w,
                           "frame_index": index})
            hashes.append(frame_hash(frame))
            for i in range(len(result)):
                x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
                anns.append(person_annotation(len(anns) + 1, index + 1, [x1, y1, x2 - x1, y2 - y1],
                                              result.keypoints[i], result.keypoint_scores[i], kp_threshold,
                                              result.scores[i]))
            bar.update(1)
    source.close()
    if not images:
        raise SourceError(f"{source.description}: no frames could be read; check the video/folder opens "
                          "with `edgepose run --source`")
    return coco_doc(images, anns, {"source": source.description, "teacher_ms": times}), hashes


# ----------------------------------------------------------------------------- split / overlap
def subset(doc, image_ids) -> dict:
    keep = set(image_ids)
    return coco_doc([i for i in doc["images"] if i["id"] in keep],
                    [a for a in doc["annotations"] if a["image_id"] in keep], doc.get("info"))


def split_tail(doc, val_fraction=0.25, gap_fraction=0.05):
    """``(train, val)`` of one clip in frame order: val = the last ``val_fraction``, the
    ``gap_fraction`` before it is dropped so neighbouring frames never land on both sides."""
    ids = sorted(i["id"] for i in doc["images"])
    n = len(ids)
    n_val = int(math.ceil(n * val_fraction))
    n_gap = int(math.ceil(n * gap_fraction))
    n_train = n - n_val - n_gap
    if n_val < 1 or n_train < 1:
        raise UsageError(f"only {n} frames: too few to hold out the last 25 % after a 5 % gap; "
                         "pass more footage or a separate --val-source/--val-labels")
    return subset(doc, ids[:n_train]), subset(doc, ids[n - n_val:])


def check_no_overlap(train_hashes, val_hashes, train_paths=(), val_paths=()):
    """SourceError when a validation frame is a training frame (same file or same pixels)."""
    same_files = {str(Path(p).resolve()) for p in train_paths} & {str(Path(p).resolve()) for p in val_paths}
    same_pixels = set(train_hashes) & set(val_hashes)
    if same_files or same_pixels:
        n = max(len(same_files), sum(1 for h in val_hashes if h in same_pixels))
        raise SourceError(f"{n} validation frame(s) are also training frames; agreement measured on them would "
                          "overestimate the student. Pass separate footage as --val-source/--val-labels, or "
                          "leave it out to hold back the end of one video")


def image_hashes(doc, progress=False):
    """Pixel hashes of the images of ``doc`` (read with OpenCV)."""
    import cv2

    out = []
    for img in doc["images"]:
        frame = cv2.imread(img["file_name"], cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read image {img['file_name']}; check the file")
        img.setdefault("height", frame.shape[0])
        img.setdefault("width", frame.shape[1])
        out.append(frame_hash(frame))
    return out


# ----------------------------------------------------------------------------- student sizes
def _round32(value):
    return max(32, int(math.ceil(value / 32.0)) * 32)


def choose_det_input(frame_hw, box_heights, min_person_px=32.0, max_side=None):
    """Detector input ``(H, W)`` (multiples of 32, the frame's aspect) that shows the small
    people (10th percentile of height) at least ``min_person_px`` tall, never upscaling."""
    fh, fw = (float(v) for v in frame_hw)
    heights = np.asarray(box_heights, np.float64)
    heights = heights[heights > 1]
    small = float(np.percentile(heights, 10)) if heights.size else fh
    scale = min(1.0, max(min_person_px / max(small, 1.0), 256.0 / max(fh, fw)))
    h, w = _round32(fh * scale), _round32(fw * scale)
    if max_side is not None and max(h, w) > max_side:
        k = max_side / max(h, w)
        h, w = _round32(h * k), _round32(w * k)
    return h, w


def choose_pose_input(box_heights):
    """SPPE input ``(H, W)``: the smaller of 128x96 / 256x192 that is at least 0.6 of the
    median crop height (box height x 1.25, AlphaPose's crop margin)."""
    heights = np.asarray(box_heights, np.float64)
    heights = heights[heights > 1]
    crop = 1.25 * float(np.median(heights)) if heights.size else 128.0
    for size in POSE_INPUTS:
        if size[0] >= 0.6 * crop:
            return size
    return POSE_INPUTS[-1]
