"""The person-detector stage: ``Detector(runner)(frame) -> Detections`` (image pixels).

    det = Detector(load_runner("det.onnx"), score_threshold=0.3)
    found = det(frame_bgr)            # found.boxes [N,4] xyxy, found.scores [N], found.timings

The runner is a CenterNet with raw heads (``hm``/``wh``/``reg``, NumPy decode), a CenterNet
with the in-graph decoder (``decode="ctdet_topk"``: ``dets [1,K,6]`` in input pixels, only
rescaled here) or a CornerNet-Squeeze with raw heads.  Rows are mapped back to image pixels,
kept when they are the person class above ``score_threshold``, clipped to the frame (boxes
left empty are dropped) and the best ``max_persons`` returned.

CenterNet ``fix_res`` (the usual case) warps the frame straight into one preallocated pixel
buffer and normalises it into one preallocated input tensor of the runner's dtype
(:func:`~edgepose.pipeline.preprocess.normalize_into`); ``keep_res`` and CornerNet use the
reference preprocessing of :mod:`edgepose.pipeline.preprocess`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepose.errors import MetadataError, UsageError
from edgepose.pipeline import decode, preprocess
from edgepose.pipeline.caps import CapCounter
from edgepose.pipeline.model_check import check_detector_model
from edgepose.pipeline.timing import FrameClock
from edgepose.tasks import task_spec

DET_MODES = ("fix_res", "keep_res")


@dataclass
class Detections:
    """People found in one frame: ``boxes [N,4]`` xyxy image px (clipped), ``scores [N]`` best
    first, ``timings`` ms of preprocess / detector / decode."""

    boxes: np.ndarray
    scores: np.ndarray
    timings: dict = field(default_factory=dict)

    def __len__(self):
        return int(self.boxes.shape[0])


def no_meta_error(runner, role):
    return MetadataError(
        f"{getattr(runner, 'name', role)} ({role} model) has no edgepose metadata. Re-export it with "
        "`edgepose export`, or pass --input-size/--mean/--std so edgepose knows how to feed it")


def as_float32(out: dict) -> dict:
    """FP16-output models: decode in float32 like the official code."""
    return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in out.items()}


def feed_of(runner, tensor) -> dict:
    spec = runner.inputs[0]
    return {spec.name: np.ascontiguousarray(tensor, dtype=spec.dtype)}


class Detector:
    """Person detector over one :class:`~edgepose.backends.base.Runner` whose ``meta`` says
    how to feed and decode it.  ``det_mode``: CenterNet geometry ``fix_res`` (default) or
    ``keep_res`` (needs a detector with a dynamic input size)."""

    def __init__(self, runner, score_threshold: float = 0.3, max_persons: int = 20, det_mode: str = "fix_res"):
        if runner.meta is None:
            raise no_meta_error(runner, "detector")
        self.runner, self.meta = runner, runner.meta
        self.spec = task_spec(self.meta.task)
        if self.spec.role != "detector":
            raise UsageError(f"{runner.name} is a {self.meta.task!r} model, not a detector; "
                             "pass a CenterNet or CornerNet model as --det")
        check_detector_model(runner, self.meta)
        if det_mode not in DET_MODES:
            raise UsageError(f"det_mode must be one of {DET_MODES}, got {det_mode!r}")
        det_hw = runner.inputs[0].shape[2:4] if runner.inputs else ()
        fixed_hw = all(isinstance(d, int) for d in det_hw)
        if det_mode == "keep_res" and self.spec.host_decoder == "ctdet_decode" and fixed_hw:
            raise UsageError(f"{runner.name} has a fixed {det_hw[0]}x{det_hw[1]} input, so keep_res (input size "
                             "follows the image) cannot feed it; use fix_res or export the detector with dynamic H/W")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise UsageError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if int(max_persons) < 0:
            raise UsageError(f"max_persons must be >= 0, got {max_persons}")
        self.score_threshold = float(score_threshold)
        self.max_persons = int(max_persons)
        self.det_mode = det_mode
        self.caps = CapCounter()
        self._pixels = self._tensor = None  # fix_res buffers, allocated on the first frame
        self._geometry = {}  # fix_res: {frame (h, w): ctdet_geometry info} of the last frame size

    def __call__(self, frame) -> Detections:
        """Person boxes of a BGR uint8 frame, best first."""
        clock = FrameClock()
        with clock("preprocess"):
            tensor, info = self.preprocess(frame)
        with clock("detector"):
            out = as_float32(self.runner.infer(feed_of(self.runner, tensor)))
        with clock("decode"):
            boxes, scores = self.select_people(self.decode(out, info), frame.shape)
        return Detections(boxes, scores, clock.timings)

    def preprocess(self, frame):
        """``(network input [1,3,H,W] in the runner's dtype, geometry info)``."""
        if self.spec.host_decoder == "cornernet_decode":
            tensor, info = preprocess.cornernet_preprocess(frame, self.meta)
            self._check_canvas(frame, tensor)
            return tensor, info
        if self.det_mode != "fix_res":
            return preprocess.ctdet_preprocess(frame, self.meta, mode=self.det_mode)
        import cv2

        preprocess.check_image(frame, "frame")
        info = self._geometry.get(frame.shape[:2])
        if info is None:  # the geometry (both affine transforms) depends only on the frame size
            _, info = preprocess.ctdet_geometry(frame, self.meta, mode="fix_res")
            info["trans_output_inv"] = preprocess.ctdet_output_inverse(info)
            self._geometry = {frame.shape[:2]: info}
        info = dict(info)
        resized = frame  # test scale 1: ctdet_geometry returns the frame itself
        size = (info["inp_h"], info["inp_w"])
        if self._pixels is None or self._pixels.shape[1:3] != size:
            self._pixels = np.empty((1,) + size + (3,), np.uint8)
            self._tensor = np.empty((1, 3) + size, self.runner.inputs[0].dtype or np.float32)
        cv2.warpAffine(resized, info["trans_input"], size[::-1], dst=self._pixels[0], flags=cv2.INTER_LINEAR)
        return preprocess.normalize_into(self._pixels, self._tensor, self.meta), info

    def _check_canvas(self, frame, tensor):
        """CornerNet's input follows the frame (``side | 127``): a fixed-size export takes only
        frames whose sides give exactly its size; say which and how to fix it."""
        fixed = self.runner.inputs[0].shape[2:4] if self.runner.inputs else ()
        if len(fixed) != 2 or not all(isinstance(d, int) for d in fixed) or tuple(fixed) == tensor.shape[2:4]:
            return
        (fh, fw), (h, w) = frame.shape[:2], fixed
        raise UsageError(
            f"{self.runner.name} has a fixed {h}x{w} input, but CornerNet's canvas for a {fw}x{fh} frame is "
            f"{tensor.shape[2]}x{tensor.shape[3]} (this export takes frames {max(h - 127, 1)}-{h} px high and "
            f"{max(w - 127, 1)}-{w} px wide); re-export the detector with `edgepose export cornernet_squeeze "
            "--input-size dynamic` so it runs on any frame size")

    def decode(self, out, info) -> np.ndarray:
        """Raw detector outputs -> rows (x1, y1, x2, y2, score, class) in image pixels."""
        meta = self.meta
        if self.spec.host_decoder == "cornernet_decode":
            return np.asarray(decode.cornernet_postprocess(self._cornernet_decode(out), info), np.float32)
        if meta.decode == self.spec.graph_decoder:
            dets = np.array(out["dets"][0], dtype=np.float32, copy=True)
            dets[:, [0, 2]] /= float(info["inp_w"]) / float(info["out_w"])
            dets[:, [1, 3]] /= float(info["inp_h"]) / float(info["out_h"])
        elif meta.decode is None:
            k = int(meta.decode_k or 100)
            dets = decode.ctdet_decode(decode.sigmoid(out["hm"]), out["wh"], out.get("reg"), K=k)[0]
        else:
            raise MetadataError(f"{self.runner.name}: unknown in-graph decoder {meta.decode!r}; "
                                "upgrade edgepose or re-export the detector")
        return np.asarray(preprocess.ctdet_postprocess(dets, info), np.float32)

    def _cornernet_decode(self, out):
        def pick(*names):
            for n in names:
                if n in out:
                    return out[n]
            raise MetadataError(f"{self.runner.name}: CornerNet output {names[0]!r} missing (outputs: {sorted(out)})")

        cfg = dict(decode.CORNERNET_SQUEEZE_TEST, **(self.meta.extra or {}).get("cornernet_decode", {}))
        return decode.cornernet_decode(  # raw logits: the decoder applies the sigmoid
            pick("tl_heat", "tl_heats"), pick("br_heat", "br_heats"),
            pick("tl_tag", "tl_tags"), pick("br_tag", "br_tags"),
            pick("tl_regr", "tl_offs", "tl_off"), pick("br_regr", "br_offs", "br_off"), **cfg)[0]

    def select_people(self, dets, frame_shape):
        """Person rows above the threshold, clipped, non-empty, best ``max_persons`` first."""
        dets = np.asarray(dets, np.float32)
        dets = dets.reshape(-1, dets.shape[-1] if dets.ndim == 2 else 6)
        all_scores = dets[:, 4]
        keep = (np.round(dets[:, 5]).astype(np.int64) == int(self.meta.person_class)) \
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
        saturated = self.meta.task == "ctdet" and len(keep) > 0 \
            and bool(np.all(all_scores >= self.score_threshold))
        self.caps.count(len(scores), self.max_persons, saturated=saturated, k=len(keep))
        order = np.argsort(-scores, kind="stable")[: self.max_persons]
        return boxes[order], scores[order].copy()
