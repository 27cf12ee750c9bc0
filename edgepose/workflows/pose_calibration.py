"""The pose model's calibration crops: how many, from which boxes, and what to say when there
are none.

* ``--calib-size N`` means N crops for the pose model (N images for the detector): the crops
  are taken evenly from all the people found, with a warning naming both numbers when fewer
  exist, and that the ranges will be noisy below :data:`NOISY_CROPS` (calib/README.md).
* A COCO ``.json`` calibration set calibrates the pose model on crops of its annotations'
  person boxes (ground truth), so a detector that finds nobody does not block it; folders,
  videos and ``synthetic`` use the crops the FP32 detector really produces, as deployed.
* When the FP32 detector finds nobody, :func:`describe_no_people` says what it did find
  (score range over every heatmap position, box sizes of the candidates above the threshold)
  and what that suggests, instead of only "no person".
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgepose.errors import CalibrationError

log = logging.getLogger("edgepose")

NOISY_CROPS = 30  # calib/README.md: below ~30 crops the pose ranges are noisy


@dataclass
class PoseCrops:
    """Crops (each ``[1,3,h,w]``) and where their boxes came from."""

    crops: list
    boxes_from: str  # "ground-truth boxes of <ann.json>" or "FP32 detector (score >= t)"
    available: int  # crops there were before taking ``max_crops`` of them


def ground_truth_crops(images, pose_onnx) -> list:
    """Crops of the annotated person boxes of a COCO calibration set (``images.boxes``)."""
    from edgepose.metadata import read_metadata
    from edgepose.pipeline.preprocess import crop_people

    meta = read_metadata(pose_onnx)
    crops = []
    for image, boxes in zip(images.images, images.boxes):
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)]
        if len(boxes):
            batch, _ = crop_people(image, boxes, meta)
            crops.extend(batch[i:i + 1] for i in range(len(batch)))
    return crops


def crops_of_boxes(image, boxes, pose_meta) -> list:
    """``[1,3,h,w]`` pose crops of the ``boxes`` (xyxy image px) of at least 1 x 1 px."""
    from edgepose.pipeline.preprocess import crop_people

    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)]
    if not len(boxes):
        return []
    batch, _ = crop_people(image, boxes, pose_meta)
    return [batch[i:i + 1] for i in range(len(batch))]


class CropsFromOutputs:
    """``on_outputs`` of the detector's statistics pass
    (:func:`edgepose.quant.statistics.collect_statistics`): decodes the people of every
    image from that pass's own outputs (``hm``/``wh``/``reg``, or ``dets`` of a graph that
    decodes itself) with the pipeline's ``detector`` (its threshold and ``max_persons``) and
    crops them, so the pose crops need no second FP32 detector run.  ``infos``: the geometry
    of each detector feed (:func:`edgepose.workflows.calibration_feeds.det_inputs`)."""

    def __init__(self, images: list, infos: list, detector, pose_meta):
        self.images, self.infos, self.detector, self.pose_meta = images, infos, detector, pose_meta
        self.crops, self.counts, self.boxes = [], [], []

    def __call__(self, outputs: dict):
        from edgepose.pipeline.detector import as_float32

        for k in range(len(next(iter(outputs.values())))):
            i = len(self.counts)
            if i >= len(self.images):  # the padding of a static batch
                return
            image = self.images[i]
            rows = self.detector.decode(as_float32({n: v[k:k + 1] for n, v in outputs.items()}), self.infos[i])
            boxes, _ = self.detector.select_people(rows, image.shape)
            found = crops_of_boxes(image, boxes, self.pose_meta)
            self.boxes.append(boxes)
            self.counts.append(len(found))
            self.crops.extend(found)


def pose_crops(images, det_onnx, pose_onnx, score_threshold: float, max_crops: int | None,
               progress: bool = False, threads=None, found=None) -> PoseCrops:
    """Up to ``max_crops`` crops (evenly spaced over all found): ground-truth boxes when
    ``images`` came from a COCO ``.json``, else the FP32 detector's people (``found``: those
    crops already made, e.g. by :class:`CropsFromOutputs`; else the detector is run here).
    CalibrationError saying what the detector found when there are none."""
    from edgepose.workflows.calibration_feeds import _evenly, detector_crops

    if images.boxes is not None:
        crops = ground_truth_crops(images, pose_onnx)
        source = images.source.split(":", 1)[-1]
        if not crops:
            raise CalibrationError(f"{source} has no person box of at least 1x1 px on its {len(images)} calibration "
                                   "images, so there are no pose crops to calibrate on; use annotations with "
                                   "person boxes, or an image folder to calibrate on the detector's crops")
        boxes_from = f"ground-truth boxes of {source}"
    else:
        crops = found if found is not None else \
            detector_crops(images, det_onnx, pose_onnx, score_threshold, progress=progress, threads=threads)[0]
        if not crops:
            raise CalibrationError(describe_no_people(images, det_onnx, score_threshold))
        boxes_from = f"FP32 detector (score >= {score_threshold})"
    return PoseCrops(_evenly(crops, max_crops), boxes_from, len(crops))


def crop_feeds(crops: list, pose_onnx) -> list:
    """Crops as feeds of the pose model (its static batch, padded by repeating the last crop)."""
    from edgepose.workflows.calibration_feeds import _batched, _input_of

    return _batched(crops, *_input_of(pose_onnx))


def warn_if_few(what: str, got: int, asked: int, source: str, noisy_below: int | None = None, note: str = ""):
    """Warning naming both numbers when ``got < asked``; noisy below ``noisy_below``."""
    if got >= asked:
        return
    noisy = (f"; below ~{noisy_below} the ranges are noisy (calib/README.md)"
             if noisy_below is not None and got < noisy_below else "")
    log.warning("edgepose: warning: --calib-size %d asked for %d %s but %s gives only %d%s%s -- add calibration "
                "images or lower --calib-size", asked, asked, what, source, got, note, noisy)


def _raw_outputs(detector, image) -> tuple:
    """``(detector outputs, geometry info)`` of one image, before any threshold."""
    from edgepose.pipeline.detector import as_float32, feed_of

    tensor, info = detector.preprocess(image)
    return as_float32(detector.runner.infer(feed_of(detector.runner, tensor))), info


def describe_no_people(images, det_onnx, score_threshold: float) -> str:
    """Why the FP32 detector yields no crop on ``images``: the score range over every heatmap
    position (the decoded candidates' when the graph decodes itself), and the classes and sizes
    of the candidates that pass the threshold."""
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline import decode
    from edgepose.pipeline.detector import Detector

    runner = load_runner(str(det_onnx), backend="onnxruntime", providers=["CPUExecutionProvider"])
    detector = Detector(runner, score_threshold=score_threshold)
    scores, passing = [], []
    try:
        for image in images.images:
            out, info = _raw_outputs(detector, image)
            rows = np.asarray(detector.decode(out, info), np.float32).reshape(-1, 6)
            scores.append(decode.sigmoid(out["hm"]).ravel() if "hm" in out else rows[:, 4])
            passing.append(rows[rows[:, 4] >= score_threshold])
    finally:
        runner.close()
    return _no_people_text(len(images), np.concatenate(scores), np.concatenate(passing), score_threshold,
                           int(detector.meta.person_class))


def _candidates_text(rows: np.ndarray, threshold: float, person_class: int) -> str:
    """What is wrong with the ``rows`` (x1, y1, x2, y2, score, class) that pass the threshold."""
    classes = np.round(rows[:, 5]).astype(np.int64)
    people = rows[classes == person_class]
    if not len(people):  # another class takes every top-K slot
        found, counts = np.unique(classes, return_counts=True)
        top = ", ".join(f"{c} ({n}x)" for c, n in sorted(zip(found, counts), key=lambda t: -t[1])[:3])
        return (f"the {len(rows)} candidates scoring >= {threshold} are all of other classes (most often {top}), "
                f"none of the person class {person_class}")
    w = max(float((people[:, 2] - people[:, 0]).max()), 0.0)
    h = max(float((people[:, 3] - people[:, 1]).max()), 0.0)
    shape = "zero or negative size" if min(w, h) < 1 else "boxes outside the image"
    return (f"the {len(people)} person candidates scoring >= {threshold} have {shape} "
            f"(largest w x h {w:.2f} x {h:.2f} px; a crop needs at least 1 x 1 px inside the image)")


def _no_people_text(n_images: int, scores: np.ndarray, rows: np.ndarray, threshold: float,
                    person_class: int = 0) -> str:
    lo, hi = float(scores.min()), float(scores.max())
    found = f"every position scores ~{hi:.4f}" if hi - lo < 0.01 else f"scores range {lo:.4f}-{hi:.4f}"
    if hi < threshold:
        what = f"{found}, none reaches --det-threshold {threshold}"
    elif len(rows):
        what = f"{found} and {_candidates_text(rows, threshold, person_class)}"
    else:
        what = found
    cause = "the detector looks untrained or its heads are wrong" if hi - lo < 0.01 or hi >= threshold else \
        "the images may show no people, or --det-threshold is too high"
    if "none of the person class" in what:
        cause += f" (or its person class is not {person_class}: metadata person_class)"
    return (f"the FP32 detector found no person in the {n_images} calibration images: {what}: {cause}. "
            "There are no pose crops to calibrate on: check --det, or calibrate the pose model on ground-truth "
            "boxes with --calib ann.json (a COCO keypoints/person file)")
