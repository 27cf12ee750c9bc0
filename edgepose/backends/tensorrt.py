"""Compatibility alias: the TensorRT runner lives in :mod:`edgepose.backends.trt.runner`."""
from edgepose.backends.trt.runner import TensorRTRunner

__all__ = ["TensorRTRunner"]
