"""FPD-style heatmap distillation for the SPPE student.

    loss = (1 - a) * MSE(student, pseudo-label heatmap) + a * MSE(student, teacher heatmap)

(Zhang et al., "Fast Human Pose Estimation", CVPR 2019), ``a = 0.5``, both terms the
existing :func:`edgepose.train.losses.heatmap_mse_loss` with the same per-joint weights, so
joints the teacher was not confident about (weight 0 in the pseudo-labels) teach nothing.

The teacher's heatmaps are made online for every augmented student crop:
:class:`TeacherHeatmaps` crops the same (mirrored) image around the same centre, scale and
rotation at the teacher's own input size, runs the teacher's runner, and warps its heatmaps
into the student's heatmap grid (:func:`heatmap_warp`), so teacher and student input sizes
may differ.
"""
from __future__ import annotations

import numpy as np

from edgepose.train.coco_data import PoseDataset

__all__ = ["TeacherHeatmaps", "DistillPoseDataset", "heatmap_warp", "fpd_loss", "make_fpd_step_loss"]


def _as3x3(m):
    return np.vstack([np.asarray(m, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def heatmap_warp(teacher_trans, teacher_stride, student_trans, student_stride):
    """2x3 map from student-heatmap pixels to teacher-heatmap pixels.

    ``*_trans``: 2x3 image -> network-input affines; heatmap pixel ``i`` sits at input pixel
    ``i * stride`` (the convention of :func:`edgepose.train.coco_data.joint_heatmaps`).
    """
    a_t = np.diag([1.0 / teacher_stride, 1.0 / teacher_stride, 1.0]) @ _as3x3(teacher_trans)
    a_s = np.diag([1.0 / student_stride, 1.0 / student_stride, 1.0]) @ _as3x3(student_trans)
    return (a_t @ np.linalg.inv(a_s))[:2]


class TeacherHeatmaps:
    """Teacher SPPE heatmaps for a student crop.

    ``runner``: a :class:`~edgepose.backends.base.Runner` whose metadata says it outputs raw
    heatmaps (no in-graph decoder).
    """

    def __init__(self, runner):
        from edgepose.errors import UsageError

        meta = runner.meta
        if meta is None or meta.task != "sppe" or meta.decode is not None:
            raise UsageError(f"{getattr(runner, 'name', 'the teacher')} does not output raw heatmaps; heatmap "
                             "distillation needs an SPPE exported without the in-graph decoder")
        self.runner, self.meta = runner, meta
        self.stride = int((meta.heads.get("heatmaps") or {}).get("stride") or 4) if meta.heads else 4

    def __call__(self, image, center, scale, rot, student_trans, student_stride, out_hw):
        import cv2

        from edgepose.pipeline.affine import get_affine_transform
        from edgepose.pipeline.preprocess import normalize_to_chw

        inp_h, inp_w = (int(v) for v in self.meta.input_size)
        trans = get_affine_transform(center, scale, rot, (inp_w, inp_h))
        crop = cv2.warpAffine(np.ascontiguousarray(image), trans, (inp_w, inp_h), flags=cv2.INTER_LINEAR)
        spec = self.runner.inputs[0]
        feed = {spec.name: np.ascontiguousarray(normalize_to_chw(crop, self.meta)[None], dtype=spec.dtype)}
        out = self.runner.infer(feed)
        hm = np.asarray(out.get("heatmaps", next(iter(out.values())))[0], np.float32)
        m = heatmap_warp(trans, self.stride, student_trans, student_stride)
        h, w = (int(v) for v in out_hw)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        return np.stack([cv2.warpAffine(ch, m, (w, h), flags=flags, borderValue=0.0) for ch in hm])


class DistillPoseDataset(PoseDataset):
    """:class:`PoseDataset` samples plus the teacher's heatmaps of the same crop:
    ``(input, target, weight, teacher_heatmaps)`` (zeros without a teacher)."""

    def __init__(self, data, meta, teacher: TeacherHeatmaps | None = None, **kw):
        super().__init__(data, meta, **kw)
        self.teacher = teacher

    def __getitem__(self, index):
        sample = self.sample(index)
        target = sample["target"]
        if self.teacher is None:
            return sample["input"], target, sample["weight"], np.zeros_like(target)
        teacher_hm = self.teacher(sample["image"], sample["center"], sample["scale"], sample["rot"], sample["trans"],
                                  self.down, target.shape[1:])
        return sample["input"], target, sample["weight"], teacher_hm.astype(np.float32)


def fpd_loss(pred, target, weight, teacher, alpha=0.5):
    """``(1 - alpha) * MSE(pred, target) + alpha * MSE(pred, teacher)`` (joint-weighted)."""
    from edgepose.train.losses import heatmap_mse_loss

    label = heatmap_mse_loss(pred, target, weight)
    if alpha <= 0:
        return label, {"label": label.detach()}
    distill = heatmap_mse_loss(pred, teacher, weight)
    return (1.0 - alpha) * label + alpha * distill, {"label": label.detach(), "teacher": distill.detach()}


def make_fpd_step_loss(alpha=0.5):
    """A ``step_loss(model, batch)`` for :func:`edgepose.train.fit` over DistillPoseDataset batches."""

    def step_loss(model, batch):
        import torch

        from edgepose.errors import UsageError

        inp, target, weight, teacher = (torch.from_numpy(a) for a in batch)
        pred = model(inp)["heatmaps"]
        if pred.shape != target.shape:
            raise UsageError(f"model heatmaps {tuple(pred.shape)} do not match targets {tuple(target.shape)}; "
                             "the input size must be 4x the heatmap size")
        return fpd_loss(pred, target, weight, teacher, alpha)

    return step_loss
