"""The single-person pose stage: ``PoseEstimator(runner)(frame, boxes) -> Poses`` (image px).

    pose = PoseEstimator(load_runner("pose.onnx"))
    found = pose(frame_bgr, boxes)    # found.keypoints [N,J,2], found.keypoint_scores [N,J]

All boxes of a frame are cropped straight into one preallocated batch buffer of the model's
input size, layout (NCHW) and dtype (:func:`~edgepose.pipeline.preprocess.crop_people`) and
run in **one pose call** (split only above the runner's max batch; a static batch is padded,
so a static-batch-1 model runs one crop at a time).  Heatmaps -> coordinates (argmax, +-0.25
refinement, back-projection), or the in-graph ``sppe_argmax`` outputs back-projected.
``flip=True``: AlphaPose flip test (needs raw heatmaps).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepose.errors import MetadataError, UsageError
from edgepose.pipeline import decode, preprocess
from edgepose.pipeline.detector import as_float32, feed_of, no_meta_error
from edgepose.pipeline.model_check import check_joint_count, check_pose_model
from edgepose.pipeline.timing import FrameClock
from edgepose.tasks import task_spec


@dataclass
class Poses:
    """Keypoints of the people in the given boxes: ``keypoints [N,J,2]`` (x, y image px),
    ``keypoint_scores [N,J]``, ``timings`` ms of crop / pose / postprocess."""

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    timings: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.keypoints.shape[0])


class PoseEstimator:
    """Pose model over one :class:`~edgepose.backends.base.Runner` whose ``meta`` says how to
    feed and decode it."""

    def __init__(self, runner, flip: bool = False):
        if runner.meta is None:
            raise no_meta_error(runner, "pose")
        self.runner, self.meta = runner, runner.meta
        self.spec = task_spec(self.meta.task)
        if self.spec.role != "pose":
            raise UsageError(f"{runner.name} is a {self.meta.task!r} model, not a pose estimator; "
                             "pass a FastPose/SimplePose model as --pose")
        self.num_joints = check_pose_model(runner, self.meta)
        if flip and self.meta.decode is not None:
            raise UsageError(f"{runner.name} decodes keypoints inside the graph, so flip test cannot "
                             "average heatmaps; drop --flip or export the pose model without the in-graph decoder")
        self.flip = bool(flip)
        self._buffer = self._pixels = None  # crop batch (and its pixels), grown to the most people in a frame

    def __call__(self, frame, boxes) -> Poses:
        """Keypoints for ``boxes [N,4]`` (xyxy image px) in a BGR uint8 frame."""
        clock = FrameClock()
        with clock("crop"):
            batch, crop_boxes = self.crop(frame, boxes)
        with clock("pose"):
            out = self.infer(batch)
        with clock("postprocess"):
            coords, scores = self.decode(out, crop_boxes)
        return Poses(coords, scores.reshape(scores.shape[0], -1), clock.timings)

    def crop(self, frame, boxes):
        """``(batch [N,3,H,W] in the runner's dtype, crop_boxes [N,4])`` -- a view of the buffer,
        valid until the next call."""
        n = int(np.shape(boxes)[0])
        h, w = (int(v) for v in self.meta.input_size)
        if self._buffer is None or self._buffer.shape[0] < n:
            dtype = self.runner.inputs[0].dtype or np.float32
            self._buffer = np.empty((max(n, 1), 3, h, w), dtype)
            self._pixels = np.empty((max(n, 1), h, w, 3), np.uint8)  # warped crops, reused (no page faults)
        return preprocess.crop_people(frame, boxes, self.meta, out=self._buffer, pixels=self._pixels)

    def infer(self, batch) -> dict:
        """Pose outputs for the crops (flip test averaged in when on)."""
        if not self.flip:
            return self.run_batch(batch)
        n = batch.shape[0]
        both = np.concatenate([batch, np.ascontiguousarray(batch[..., ::-1])])
        out = self.run_batch(both)
        name = self._heatmap_name(out)
        hm, hm_flipped = out[name][:n], out[name][n:]
        back = decode.flip_heatmap_back(hm_flipped, self.meta.flip_pairs)
        return {name: (hm + back) * 0.5}

    def run_batch(self, batch) -> dict:
        """One pose call for the whole batch, split at max_batch; a static batch is padded."""
        runner = self.runner
        n = int(batch.shape[0])
        static = runner.inputs[0].shape[0]
        static = static if isinstance(static, int) else None
        chunk = max(static or runner.max_batch or n, 1)
        parts = []
        for start in range(0, n, chunk):
            part = batch[start:start + chunk]
            m = part.shape[0]
            if static and m < static:
                part = np.concatenate([part, np.zeros((static - m,) + part.shape[1:], part.dtype)])
            out = as_float32(runner.infer(feed_of(runner, part)))
            parts.append({k: v[:m] for k, v in out.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _heatmap_name(self, out):
        if "heatmaps" in out:
            return "heatmaps"
        if len(out) == 1:
            return next(iter(out))
        raise MetadataError(f"{self.runner.name}: cannot find the heatmap output among {sorted(out)}; re-export it")

    def decode(self, out, crop_boxes):
        """Pose outputs -> (coords [N,J,2] image px, joint scores [N,J,1])."""
        if self.meta.decode == self.spec.graph_decoder:
            coords = np.asarray(out["coords"], np.float32)
            check_joint_count(self.runner, coords, self.num_joints)
            scores = np.asarray(out["scores"], np.float32).reshape(coords.shape[0], coords.shape[1], 1)
            return decode.backproject_keypoints(coords, crop_boxes, self.heatmap_size()), scores
        if self.meta.decode is not None:
            raise MetadataError(f"{self.runner.name}: unknown in-graph decoder {self.meta.decode!r}; "
                                "upgrade edgepose or re-export the pose model")
        coords, scores = decode.heatmap_to_coords(out[self._heatmap_name(out)], crop_boxes)
        check_joint_count(self.runner, np.asarray(coords), self.num_joints)
        return np.asarray(coords, np.float32), np.asarray(scores, np.float32)

    def heatmap_size(self):
        extra = self.meta.extra or {}
        if "heatmap_size" in extra:
            h, w = extra["heatmap_size"]
            return int(h), int(w)
        stride = int((self.meta.heads.get("heatmaps") or {}).get("stride") or 4)
        h, w = self.meta.input_size
        return h // stride, w // stride
