"""Compatibility alias for code written before the split into :mod:`edgepose.backends.trt`
(``build_engines`` is now :func:`~edgepose.backends.trt.build.build_engine_files`)."""
from edgepose.backends.trt.build import build_engine_files, onnx2engine
from edgepose.backends.trt.version import tensorrt_status

__all__ = ["build_engine_files", "onnx2engine", "tensorrt_status"]
