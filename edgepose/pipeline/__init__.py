"""Pre/post-processing (NumPy + OpenCV) and the two-stage pipeline.

Names are resolved lazily so that ``import edgepose.pipeline`` stays cheap and never
imports torch or ONNX Runtime.
"""
from __future__ import annotations

from edgepose._lazy import lazy_exports

_EXPORTS = {
    "edgepose.pipeline.affine": ("get_affine_transform", "affine_points"),
    "edgepose.pipeline.preprocess": (
        "normalize_to_chw", "normalize_into", "ctdet_geometry", "ctdet_preprocess", "ctdet_postprocess", "box_to_center_scale",
        "crop_people", "cornernet_preprocess",
    ),
    "edgepose.pipeline.decode": (
        "sigmoid", "heatmap_nms", "ctdet_decode", "ctdet_flip_merge", "ctdet_merge_outputs",
        "heatmap_to_coords", "backproject_keypoints", "flip_heatmap_back", "cornernet_decode", "cornernet_postprocess",
        "pose_scores", "CORNERNET_SQUEEZE_TEST",
    ),
    "edgepose.pipeline.nms": ("soft_nms", "pose_nms"),
    "edgepose.pipeline.pipeline": ("Pipeline", "PoseResult"),
    "edgepose.pipeline.detector": ("Detector", "Detections"),
    "edgepose.pipeline.pose_estimator": ("PoseEstimator", "Poses"),
    "edgepose.pipeline.overlap": ("run_overlapped",),
    "edgepose.pipeline.timing": ("StageTimer", "LatencyStats", "format_latency_table"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
