"""Two-stage runtime: frame -> person boxes -> batched crops -> 17 keypoints (the rtmlib shape).

    pipe = edgepose.Pipeline.from_files("det.onnx", "pose.onnx")
    result = pipe(frame_bgr)          # PoseResult (image pixels)

    pipe = Pipeline(Detector(det_runner), PoseEstimator(pose_runner))   # the same, from stages
    for frame, result in pipe.run_overlapped(frames):                   # detector one frame ahead
        ...

Only NumPy/OpenCV and the runners are used here; ONNX/engine files never import torch.
A frame goes through :class:`~edgepose.pipeline.detector.Detector` (preprocess, detector,
decode) and :class:`~edgepose.pipeline.pose_estimator.PoseEstimator` (crop, pose,
postprocess); the pose score is mean + box score + 1.25 * max of the joint scores.

``run_reference(frame)`` runs the pose stage one person at a time (crop, infer, decode each
box on its own); tests compare it with the batched call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepose.data.coco import results_to_coco
from edgepose.errors import UsageError
from edgepose.pipeline import decode
from edgepose.pipeline.detector import DET_MODES, Detections, Detector  # noqa: F401  (DET_MODES re-exported)
from edgepose.pipeline.pose_estimator import PoseEstimator
from edgepose.pipeline.timing import StageTimer


@dataclass
class PoseResult:
    """People found in one frame, in image pixels.

    ``boxes [N,4]`` xyxy detector boxes, ``box_scores [N]``, ``keypoints [N,J,2]`` (x, y),
    ``keypoint_scores [N,J]``, ``scores [N]`` (AlphaPose pose proposal score),
    ``timings`` ms per stage for this frame.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    scores: np.ndarray
    timings: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, num_joints=17, timings=None):
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, num_joints, 2), np.float32), np.zeros((0, num_joints), np.float32),
                   np.zeros((0,), np.float32), dict(timings or {}))

    def to_coco(self, image_id) -> list:
        """COCO keypoint results (category 1): bbox xywh, keypoints x,y,score, score."""
        return results_to_coco(image_id, self.boxes, self.box_scores, self.keypoints,
                               self.keypoint_scores, self.scores)


def check_frame(frame):
    """The frame itself when it is a BGR uint8 ``HxWx3`` array; UsageError otherwise."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise UsageError(f"a frame must be a BGR image array HxWx3, got {type(frame).__name__} {shape}; "
                         "read images with cv2.imread")
    if frame.dtype != np.uint8:
        raise UsageError(f"a frame must be uint8 BGR, got {frame.dtype}; convert with .astype(np.uint8)")
    return frame


def combine(dets: Detections, poses, num_joints: int) -> PoseResult:
    """One frame's result from its two stages (timings of both, in stage order)."""
    timings = dict(dets.timings)
    if poses is None:
        return PoseResult.empty(num_joints, timings)
    timings.update(poses.timings)
    scores = np.asarray(decode.pose_scores(poses.keypoint_scores[..., None], dets.scores), np.float32).reshape(-1)
    return PoseResult(dets.boxes.astype(np.float32), dets.scores.astype(np.float32),
                      poses.keypoints.astype(np.float32), poses.keypoint_scores.astype(np.float32), scores, timings)


class Pipeline:
    """Detector + single-person pose estimator.

    ``det``/``pose``: a :class:`Detector` and a :class:`PoseEstimator`, or two
    :class:`~edgepose.backends.base.Runner` objects (wrapped with the options below).
    ``score_threshold``: minimum detector score of a person; ``max_persons``: keep at most
    this many (highest scores); ``det_mode``: CenterNet geometry ``fix_res`` (default; the
    exported input size) or ``keep_res`` (needs a detector with a dynamic input size);
    ``flip``: AlphaPose flip test (needs raw heatmaps).  ``det``/``pose`` attributes are the
    two runners, ``detector``/``pose_estimator`` the two stages.
    """

    def __init__(self, det, pose, score_threshold: float = 0.3, max_persons: int = 20,
                 det_mode: str = "fix_res", flip: bool = False):
        self.detector = det if isinstance(det, Detector) else Detector(
            det, score_threshold=score_threshold, max_persons=max_persons, det_mode=det_mode)
        self.pose_estimator = pose if isinstance(pose, PoseEstimator) else PoseEstimator(pose, flip=flip)
        self.det, self.pose = self.detector.runner, self.pose_estimator.runner
        self.det_meta, self.pose_meta = self.detector.meta, self.pose_estimator.meta
        self.num_joints = self.pose_estimator.num_joints
        self.timer = StageTimer()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(cls, det, pose, backend: str = "auto", det_overrides: dict | None = None,
                   pose_overrides: dict | None = None, runner_kw: dict | None = None,
                   overlap: bool = False, **kw) -> "Pipeline":
        """Open two model files (``.onnx``/``.engine``; zoo names with ``backend="torch"``).

        ``det_overrides``/``pose_overrides``: ModelMeta fields (input_size, mean, std, ...)
        for files without edgepose metadata.  ``runner_kw``: runner options (threads,
        providers, ...).  ``overlap=True``: the runners will work at the same time
        (:meth:`run_overlapped`), so ONNX Runtime sessions without an explicit ``threads``
        get half of the CPUs each.  ``kw``: :class:`Pipeline` options.
        """
        from edgepose.backends.factory import load_runner

        runner_kw = dict(runner_kw or {})
        if overlap and backend in ("auto", "onnxruntime") and not runner_kw.get("threads"):
            import os

            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
            runner_kw["threads"] = max(1, cpus // 2)  # TensorRT runners ignore it (one CUDA stream each)
        det_runner = load_runner(det, backend=backend, meta_overrides=det_overrides, **runner_kw)
        pose_runner = load_runner(pose, backend=backend, meta_overrides=pose_overrides, **runner_kw)
        return cls(det_runner, pose_runner, **kw)

    # ------------------------------------------------------------------ options of the stages
    @property
    def score_threshold(self) -> float:
        return self.detector.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float):
        self.detector.score_threshold = float(value)

    @property
    def max_persons(self) -> int:
        return self.detector.max_persons

    @property
    def caps(self):
        return self.detector.caps

    @property
    def flip(self) -> bool:
        return self.pose_estimator.flip

    # ------------------------------------------------------------------ public
    def detect(self, frame) -> tuple:
        """Person boxes ``[N,4]`` (image px, clipped) and scores ``[N]``, best first."""
        found = self.detector(check_frame(frame))
        return found.boxes, found.scores

    def __call__(self, frame) -> PoseResult:
        """Detect people in a BGR uint8 frame and estimate their keypoints (batched)."""
        frame = check_frame(frame)
        return self.finish(frame, self.detector(frame))

    def finish(self, frame, dets: Detections) -> PoseResult:
        """The pose stage for a frame's detections, the result recorded in :attr:`timer`."""
        poses = self.pose_estimator(frame, dets.boxes) if len(dets) else None
        result = combine(dets, poses, self.num_joints)
        self.timer.merge_frame(result.timings)
        return result

    def run_overlapped(self, items, frame_of=None, depth: int = 2):
        """``(item, result)`` for every item, in order, with the detector working on the next
        frames (a thread, at most ``depth`` frames ahead) while the pose model works on this
        one.  ``frame_of(item)`` gives the frame (default: the item is the frame).  Results are
        identical to calling the pipeline frame by frame."""
        from edgepose.pipeline.overlap import run_overlapped

        return run_overlapped(self, items, frame_of=frame_of, depth=depth)

    def run_reference(self, frame) -> PoseResult:
        """The slow path: every person cropped, run and decoded on its own (batch of 1).
        Same numbers as :meth:`__call__`; used by tests as its reference."""
        dets = self.detector(check_frame(frame))
        if not len(dets):
            return combine(dets, None, self.num_joints)
        parts = [self.pose_estimator(frame, dets.boxes[i:i + 1]) for i in range(len(dets))]
        keypoints = np.concatenate([p.keypoints for p in parts])
        scores = np.concatenate([p.keypoint_scores for p in parts])
        return combine(dets, type(parts[0])(keypoints, scores, {}), self.num_joints)

    def latency_stats(self) -> dict:
        return self.timer.stats()

    def close(self):
        for r in (self.det, self.pose):
            r.close()
