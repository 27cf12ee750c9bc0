"""torch -> ONNX export with metadata and an ONNX Runtime equivalence check.

Importing this package does not import torch (torch2onnx imports it when called).
"""
from edgepose.export.torch2onnx import ExportReport, torch2onnx  # noqa: F401  (light: torch is lazy)

__all__ = ["torch2onnx", "ExportReport"]
