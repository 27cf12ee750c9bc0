"""edgepose: person detection + 17-keypoint pose estimation for NVIDIA edge GPUs.

Importing this package is cheap: torch, TensorRT, CUDA and ONNX Runtime are imported only
by the functions that need them.  The two-line API::

    pipe = edgepose.Pipeline.from_files("det.onnx", "pose.onnx")
    result = pipe(frame_bgr)
"""
__version__ = "0.1.0"

__all__ = ["Pipeline", "Detector", "PoseEstimator", "__version__"]


def __getattr__(name):  # lazy attributes keep `import edgepose` light
    if name in ("Pipeline", "Detector", "PoseEstimator"):
        import edgepose.pipeline

        return getattr(edgepose.pipeline, name)
    raise AttributeError(f"module 'edgepose' has no attribute {name!r}")
