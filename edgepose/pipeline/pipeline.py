"""Two-stage runtime: frame -> person boxes -> batched affine crops -> 17 keypoints.

    pipe = edgepose.Pipeline.from_files("det.onnx", "pose.onnx")
    result = pipe(frame_bgr)          # PoseResult (image pixels)

Only NumPy/OpenCV and the runners are used here; ONNX/engine files never import torch.

Per frame:

1. **detector** -- CenterNet raw heads (``hm``/``wh``/``reg``, NumPy decode), CenterNet with
   the in-graph decoder (``decode="ctdet_topk"``: ``dets [1,K,6]`` in input pixels) or
   CornerNet-Squeeze raw heads; rows mapped back to image pixels;
2. person class, score threshold, ``max_persons`` (highest scores first), boxes clipped to
   the frame; boxes left with zero width or height are dropped;
3. **all crops in one pose call** (split only above the runner's max batch; a static batch
   is padded, so a static-batch-1 model runs one crop at a time);
4. heatmaps -> coordinates (argmax, +-0.25 refinement, back-projection), or the in-graph
   ``sppe_argmax`` outputs back-projected; pose score = mean + box score + 1.25 * max.

``run_reference(frame)`` does steps 3-4 one person at a time (crop, infer, decode each box
on its own); tests compare the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepose.data.coco import results_to_coco
from edgepose.errors import MetadataError, UsageError
from edgepose.eval.timing import StageTimer
from edgepose.pipeline import decode, preprocess
from edgepose.tasks import task_spec
from edgepose.pipeline.caps import CapCounter
from edgepose.pipeline.model_check import check_detector_model, check_joint_count, check_pose_model

DET_MODES = ("fix_res", "keep_res")


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


def _no_meta(runner, role):
    return MetadataError(
        f"{getattr(runner, 'name', role)} ({role} model) has no edgepose metadata. Re-export it with "
        "`edgepose export`, or pass --input-size/--mean/--std so edgepose knows how to feed it")


class Pipeline:
    """Detector + single-person pose estimator.

    ``det_runner``/``pose_runner``: :class:`~edgepose.backends.base.Runner` objects whose
    ``meta`` says how to feed and decode them.  ``score_threshold``: minimum detector score
    of a person; ``max_persons``: keep at most this many (highest scores); ``det_mode``:
    CenterNet geometry ``fix_res`` (default; the exported 512x512 input) or ``keep_res``
    (needs a detector with a dynamic input size); ``flip``: AlphaPose flip test (needs raw
    heatmaps, i.e. a pose model exported without the in-graph argmax).
    """

    def __init__(self, det_runner, pose_runner, score_threshold: float = 0.3, max_persons: int = 20,
                 det_mode: str = "fix_res", flip: bool = False):
        if det_runner.meta is None:
            raise _no_meta(det_runner, "detector")
        if pose_runner.meta is None:
            raise _no_meta(pose_runner, "pose")
        self.det, self.pose = det_runner, pose_runner
        self.det_meta, self.pose_meta = det_runner.meta, pose_runner.meta
        self.det_spec, self.pose_spec = task_spec(self.det_meta.task), task_spec(self.pose_meta.task)
        if self.det_spec.role != "detector":
            raise UsageError(f"{det_runner.name} is a {self.det_meta.task!r} model, not a detector; "
                             "pass a CenterNet or CornerNet model as --det")
        if self.pose_spec.role != "pose":
            raise UsageError(f"{pose_runner.name} is a {self.pose_meta.task!r} model, not a pose estimator; "
                             "pass a FastPose/SimplePose model as --pose")
        check_detector_model(det_runner, self.det_meta)
        joints = check_pose_model(pose_runner, self.pose_meta)
        if det_mode not in DET_MODES:
            raise UsageError(f"det_mode must be one of {DET_MODES}, got {det_mode!r}")
        det_hw = det_runner.inputs[0].shape[2:4] if det_runner.inputs else ()
        fixed_hw = all(isinstance(d, int) for d in det_hw)
        if det_mode == "keep_res" and self.det_spec.host_decoder == "ctdet_decode" and fixed_hw:
            raise UsageError(f"{det_runner.name} has a fixed {det_hw[0]}x{det_hw[1]} input, so keep_res (input size "
                             "follows the image) cannot feed it; use fix_res or export the detector with dynamic H/W")
        if flip and self.pose_meta.decode is not None:
            raise UsageError(f"{pose_runner.name} decodes keypoints inside the graph, so flip test cannot "
                             "average heatmaps; drop --flip or export the pose model without the in-graph decoder")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise UsageError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if int(max_persons) < 0:
            raise UsageError(f"max_persons must be >= 0, got {max_persons}")
        self.score_threshold = float(score_threshold)
        self.max_persons = int(max_persons)
        self.det_mode = det_mode
        self.flip = bool(flip)
        self.timer = StageTimer()
        self.caps = CapCounter()
        self.num_joints = joints

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(cls, det, pose, backend: str = "auto", det_overrides: dict | None = None,
                   pose_overrides: dict | None = None, runner_kw: dict | None = None, **kw) -> "Pipeline":
        """Open two model files (``.onnx``/``.engine``; zoo names with ``backend="torch"``).

        ``det_overrides``/``pose_overrides``: ModelMeta fields (input_size, mean, std, ...)
        for files without edgepose metadata.  ``runner_kw``: runner options (threads,
        providers, ...).  ``kw``: :class:`Pipeline` options.
        """
        from edgepose.backends.factory import load_runner

        runner_kw = dict(runner_kw or {})
        det_runner = load_runner(det, backend=backend, meta_overrides=det_overrides, **runner_kw)
        pose_runner = load_runner(pose, backend=backend, meta_overrides=pose_overrides, **runner_kw)
        return cls(det_runner, pose_runner, **kw)

    # ------------------------------------------------------------------ stage helpers
    @staticmethod
    def _feed(runner, tensor):
        spec = runner.inputs[0]
        return {spec.name: np.ascontiguousarray(tensor, dtype=spec.dtype)}

    @staticmethod
    def _as_float32(out: dict) -> dict:
        """FP16-output models: decode in float32 like the official code."""
        return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in out.items()}

    def detect(self, frame) -> tuple:
        """Person boxes ``[N,4]`` (image px, clipped) and scores ``[N]``, best first."""
        meta, timer = self.det_meta, self.timer
        with timer("preprocess"):
            if self.det_spec.host_decoder == "cornernet_decode":
                tensor, info = preprocess.cornernet_preprocess(frame, meta)
            else:
                tensor, info = preprocess.ctdet_preprocess(frame, meta, mode=self.det_mode)
        with timer("detector"):
            out = self._as_float32(self.det.infer(self._feed(self.det, tensor)))
        with timer("decode"):
            dets = self._decode_detections(out, info)
            boxes, scores = self._select_people(dets, frame.shape)
        return boxes, scores

    def _decode_detections(self, out, info) -> np.ndarray:
        """Raw detector outputs -> rows (x1, y1, x2, y2, score, class) in image pixels."""
        meta = self.det_meta
        if self.det_spec.host_decoder == "cornernet_decode":
            return np.asarray(decode.cornernet_postprocess(self._cornernet_decode(out), info), np.float32)
        if meta.decode == self.det_spec.graph_decoder:
            dets = np.array(out["dets"][0], dtype=np.float32, copy=True)
            stride_x = float(info["inp_w"]) / float(info["out_w"])
            stride_y = float(info["inp_h"]) / float(info["out_h"])
            dets[:, [0, 2]] /= stride_x
            dets[:, [1, 3]] /= stride_y
        elif meta.decode is None:
            k = int(meta.decode_k or 100)
            dets = decode.ctdet_decode(decode.sigmoid(out["hm"]), out["wh"], out.get("reg"), K=k)[0]
        else:
            raise MetadataError(f"{self.det.name}: unknown in-graph decoder {meta.decode!r}; "
                                "upgrade edgepose or re-export the detector")
        return np.asarray(preprocess.ctdet_postprocess(dets, info), np.float32)

    def _cornernet_decode(self, out):
        def pick(*names):
            for n in names:
                if n in out:
                    return out[n]
            raise MetadataError(f"{self.det.name}: CornerNet output {names[0]!r} missing (outputs: {sorted(out)})")

        cfg = dict(decode.CORNERNET_SQUEEZE_TEST, **(self.det_meta.extra or {}).get("cornernet_decode", {}))
        return decode.cornernet_decode(  # raw logits: the decoder applies the sigmoid
            pick("tl_heat", "tl_heats"), pick("br_heat", "br_heats"),
            pick("tl_tag", "tl_tags"), pick("br_tag", "br_tags"),
            pick("tl_regr", "tl_offs", "tl_off"), pick("br_regr", "br_offs", "br_off"), **cfg)[0]

    def _select_people(self, dets, frame_shape):
        dets = np.asarray(dets, np.float32)
        dets = dets.reshape(-1, dets.shape[-1] if dets.ndim == 2 else 6)
        all_scores = dets[:, 4]
        keep = (np.round(dets[:, 5]).astype(np.int64) == int(self.det_meta.person_class)) \
            & (dets[:, 4] >= self.score_threshold)
        dets = dets[keep]
        h, w = frame_shape[:2]
        boxes = dets[:, :4].copy()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        # degenerate boxes (zero/negative size, or wholly outside the frame) cannot be cropped
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[ok], dets[ok, 4]
        # every one of the decoder's K candidates (any class) passed: lower-ranked people were cut off
        saturated = self.det_meta.task == "ctdet" and len(keep) > 0 \
            and bool(np.all(all_scores >= self.score_threshold))
        self.caps.count(len(scores), self.max_persons, saturated=saturated, k=len(keep))
        order = np.argsort(-scores, kind="stable")[: self.max_persons]
        return boxes[order], scores[order].copy()

    def _pose_infer(self, batch) -> dict:
        """One pose call for the whole batch, split at max_batch; a static batch is padded."""
        runner = self.pose
        n = int(batch.shape[0])
        static = runner.inputs[0].shape[0]
        static = static if isinstance(static, int) else None
        chunk = static or runner.max_batch or n
        parts = []
        for start in range(0, n, max(chunk, 1)):
            part = batch[start:start + chunk]
            m = part.shape[0]
            if static and m < static:
                part = np.concatenate([part, np.zeros((static - m,) + part.shape[1:], part.dtype)])
            out = self._as_float32(runner.infer(self._feed(runner, part)))
            parts.append({k: v[:m] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _pose_outputs(self, batch):
        """Crops -> (heatmaps or None, coords-in-heatmap-px or None, scores or None)."""
        if not self.flip:
            return self._pose_infer(batch)
        n = batch.shape[0]
        both = np.concatenate([batch, np.ascontiguousarray(batch[..., ::-1])])
        out = self._pose_infer(both)
        name = self._heatmap_name(out)
        hm, hm_flipped = out[name][:n], out[name][n:]
        back = decode.flip_heatmap_back(hm_flipped, self.pose_meta.flip_pairs)
        return {name: (hm + back) * 0.5}

    def _heatmap_name(self, out):
        if "heatmaps" in out:
            return "heatmaps"
        if len(out) == 1:
            return next(iter(out))
        raise MetadataError(f"{self.pose.name}: cannot find the heatmap output among {sorted(out)}; re-export it")

    def _keypoints(self, out, crop_boxes):
        """Pose outputs -> (coords [N,J,2] image px, joint scores [N,J,1])."""
        if self.pose_meta.decode == self.pose_spec.graph_decoder:
            coords = np.asarray(out["coords"], np.float32)
            check_joint_count(self.pose, coords, self.num_joints)
            scores = np.asarray(out["scores"], np.float32).reshape(coords.shape[0], coords.shape[1], 1)
            return self._backproject(coords, crop_boxes), scores
        if self.pose_meta.decode is not None:
            raise MetadataError(f"{self.pose.name}: unknown in-graph decoder {self.pose_meta.decode!r}; "
                                "upgrade edgepose or re-export the pose model")
        coords, scores = decode.heatmap_to_coords(out[self._heatmap_name(out)], crop_boxes)
        check_joint_count(self.pose, np.asarray(coords), self.num_joints)
        return np.asarray(coords, np.float32), np.asarray(scores, np.float32)

    def _heatmap_size(self):
        extra = self.pose_meta.extra or {}
        if "heatmap_size" in extra:
            h, w = extra["heatmap_size"]
            return int(h), int(w)
        stride = int((self.pose_meta.heads.get("heatmaps") or {}).get("stride") or 4)
        h, w = self.pose_meta.input_size
        return h // stride, w // stride

    def _backproject(self, coords, crop_boxes):
        """In-graph argmax coordinates (heatmap px) -> image px, the official inverse affine."""
        return decode.backproject_keypoints(coords, crop_boxes, self._heatmap_size())

    def _finish(self, boxes, box_scores, coords, joint_scores, timings):
        scores = np.asarray(decode.pose_scores(joint_scores, box_scores), np.float32).reshape(-1)
        return PoseResult(boxes.astype(np.float32), box_scores.astype(np.float32), coords.astype(np.float32),
                          joint_scores.reshape(joint_scores.shape[0], -1).astype(np.float32), scores, timings)

    # ------------------------------------------------------------------ public
    def __call__(self, frame) -> PoseResult:
        """Detect people in a BGR uint8 frame and estimate their keypoints (batched)."""
        frame = self._check_frame(frame)
        timer = self.timer
        timer.new_frame()
        boxes, box_scores = self.detect(frame)
        if len(boxes) == 0:
            return PoseResult.empty(self.num_joints, timer.end_frame())
        with timer("crop"):
            batch, crop_boxes = preprocess.crop_people(frame, boxes, self.pose_meta)
        with timer("pose"):
            out = self._pose_outputs(batch)
        with timer("postprocess"):
            coords, joint_scores = self._keypoints(out, crop_boxes)
        result = self._finish(boxes, box_scores, coords, joint_scores, {})
        result.timings = timer.end_frame()
        return result

    def run_reference(self, frame) -> PoseResult:
        """The slow path: every person cropped, run and decoded on its own (batch of 1).
        Same numbers as :meth:`__call__`; used by tests as its reference."""
        frame = self._check_frame(frame)
        self.timer.new_frame()
        boxes, box_scores = self.detect(frame)
        coords_all, scores_all = [], []
        for i in range(len(boxes)):
            crop, crop_box = preprocess.crop_people(frame, boxes[i:i + 1], self.pose_meta)
            out = self._pose_outputs(crop)
            coords, joint_scores = self._keypoints(out, crop_box)
            coords_all.append(coords)
            scores_all.append(joint_scores)
        timings = self.timer.end_frame()
        if not coords_all:
            return PoseResult.empty(self.num_joints, timings)
        return self._finish(boxes, box_scores, np.concatenate(coords_all), np.concatenate(scores_all), timings)

    @staticmethod
    def _check_frame(frame):
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            shape = getattr(frame, "shape", None)
            raise UsageError(f"a frame must be a BGR image array HxWx3, got {type(frame).__name__} {shape}; "
                             "read images with cv2.imread")
        if frame.dtype != np.uint8:
            raise UsageError(f"a frame must be uint8 BGR, got {frame.dtype}; convert with .astype(np.uint8)")
        return frame

    def latency_stats(self) -> dict:
        return self.timer.stats()

    def close(self):
        for r in (self.det, self.pose):
            r.close()
