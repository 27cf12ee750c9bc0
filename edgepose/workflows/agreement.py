"""How far an INT8 model agrees with its FP32 original on held-out images, in task metrics.

* detector: COCO box AP of the INT8 detector's people with the FP32 detector's people as
  ground truth (pose FP32 in both runs), and the person-count ratio INT8 / FP32;
* pose: COCO keypoint AP (OKS) of the INT8 pose model's keypoints against the FP32 pose
  model's on the very same crops (detector FP32 in both runs, so the boxes are identical).

A collapsed head (a heatmap clipped flat, box sizes cut to a fraction) scores near 0; a
faithful INT8 model near 1.  The FP32 references are computed once per held-out set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROLE_METRIC = {"det": "bbox", "pose": "keypoints"}


@dataclass
class Agreement:
    """Agreement of one candidate graph with FP32 (``ap`` is None when FP32 finds nobody)."""

    role: str
    ap: float | None
    people_fp32: int
    people_int8: int

    @property
    def count_ratio(self) -> float | None:
        return self.people_int8 / self.people_fp32 if self.people_fp32 else None

    def as_dict(self) -> dict:
        ratio = self.count_ratio
        return {"ap_vs_fp32": None if self.ap is None else round(self.ap, 4), "people_fp32": self.people_fp32,
                "people_int8": self.people_int8, "count_ratio": None if ratio is None else round(ratio, 4)}

    def text(self) -> str:
        if self.ap is None:
            return "n/a (FP32 finds nobody)"
        extra = f", people {self.people_int8}/{self.people_fp32}" if self.role == "det" else ""
        return f"{ROLE_METRIC[self.role]} AP {self.ap:.3f}{extra}"


def _runner_kw(threads) -> dict:
    kw = {"providers": ["CPUExecutionProvider"], "disable_cse": True}
    if threads:
        kw["threads"] = threads
    return kw


def pipeline_records(det, pose, images: list, score_threshold: float, threads=None) -> list:
    """COCO keypoint results of the ORT CPU pipeline on ``images`` (image ids 1..N)."""
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(str(det), str(pose), backend="onnxruntime", runner_kw=_runner_kw(threads),
                               score_threshold=score_threshold)
    try:
        records = []
        for i, image in enumerate(images):
            records.extend(pipe(image).to_coco(i + 1))
    finally:
        pipe.close()
    return records


def reference_doc(records: list, images: list) -> dict:
    """A COCO keypoints ground-truth document made of FP32 results (every keypoint visible)."""
    anns = []
    for n, r in enumerate(records, 1):
        kps = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        kps[:, 2] = 2
        x, y, w, h = r["bbox"]
        anns.append({"id": n, "image_id": r["image_id"], "category_id": 1, "bbox": [x, y, w, h],
                     "area": float(max(w * h, 1.0)), "iscrowd": 0, "keypoints": kps.ravel().tolist(),
                     "num_keypoints": int(len(kps))})
    imgs = [{"id": i + 1, "width": int(im.shape[1]), "height": int(im.shape[0])} for i, im in enumerate(images)]
    return {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


class AgreementJudge:
    """Scores candidate graphs of one role against FP32 on ``images`` (held-out).

    The FP32 pipeline runs once: its records are the reference, its detections
    (:attr:`detections`, one :class:`~edgepose.pipeline.detector.Detections` per image) are
    reused for every pose candidate (FP32 detector in both runs, so only the pose model runs
    again) and its FP32 pose stage for every detector candidate.  The records equal
    :func:`pipeline_records` of the candidate pair.  Close it (or use ``with``) to free the
    FP32 sessions."""

    def __init__(self, src: dict, images: list, score_threshold: float, threads=None):
        from edgepose.pipeline.pipeline import Pipeline

        self.src, self.images, self.threshold, self.threads = src, images, score_threshold, threads
        self.fp32 = Pipeline.from_files(str(src["det"]), str(src["pose"]), backend="onnxruntime",
                                        runner_kw=_runner_kw(threads), score_threshold=score_threshold)
        self.detections = [self.fp32.detector(image) for image in images]
        self.records = self._records(self.fp32, self.detections)
        self.doc = reference_doc(self.records, images)

    def _records(self, pipe, detections=None) -> list:
        records = []
        for i, image in enumerate(self.images):
            found = detections[i] if detections is not None else pipe.detector(image)
            records.extend(pipe.finish(image, found).to_coco(i + 1))
        return records

    def candidate_records(self, role: str, candidate) -> list:
        """The records of the pipeline with ``candidate`` as the ``role`` model, FP32 for the other."""
        from edgepose.backends.factory import load_runner
        from edgepose.pipeline.detector import Detector
        from edgepose.pipeline.pipeline import Pipeline
        from edgepose.pipeline.pose_estimator import PoseEstimator

        runner = load_runner(str(candidate), backend="onnxruntime", **_runner_kw(self.threads))
        try:
            if role == "det":
                stage = Detector(runner, score_threshold=self.threshold, max_persons=self.fp32.max_persons)
                return self._records(Pipeline(stage, self.fp32.pose_estimator))
            return self._records(Pipeline(self.fp32.detector, PoseEstimator(runner)), self.detections)
        finally:
            runner.close()

    def __call__(self, role: str, candidate) -> Agreement:
        from edgepose.eval.coco import evaluate

        records = self.candidate_records(role, candidate)
        if not self.records:
            return Agreement(role, None, 0, len(records))
        metric = ROLE_METRIC[role]
        ap = evaluate(self.doc, records, iou_types=(metric,))[f"{metric}_AP"]
        return Agreement(role, max(0.0, float(ap)), len(self.records), len(records))

    def close(self):
        self.fp32.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
