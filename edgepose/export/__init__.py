"""torch -> ONNX export with metadata and an ONNX Runtime equivalence check."""


def torch2onnx(*args, **kwargs):
    """See :func:`edgepose.export.torch2onnx.torch2onnx` (imported lazily: needs torch)."""
    from edgepose.export.torch2onnx import torch2onnx as _impl

    return _impl(*args, **kwargs)


__all__ = ["torch2onnx"]
