"""Pre/post-processing (NumPy + OpenCV) and the two-stage pipeline.

Names are resolved lazily so that ``import edgepose.pipeline`` stays cheap and never
imports torch or ONNX Runtime.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "edgepose.pipeline.affine": ("get_affine_transform", "affine_points"),
    "edgepose.pipeline.preprocess": (
        "normalize_to_chw", "ctdet_preprocess", "ctdet_postprocess", "box_to_center_scale",
        "crop_people", "cornernet_preprocess",
    ),
    "edgepose.pipeline.decode": (
        "sigmoid", "heatmap_nms", "ctdet_decode", "ctdet_flip_merge", "ctdet_merge_outputs",
        "heatmap_to_coords", "backproject_keypoints", "flip_heatmap_back", "cornernet_decode", "cornernet_postprocess",
        "pose_scores", "CORNERNET_SQUEEZE_TEST",
    ),
    "edgepose.pipeline.nms": ("soft_nms", "pose_nms"),
    "edgepose.pipeline.pipeline": ("Pipeline",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgepose.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
