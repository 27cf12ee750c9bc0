"""Runners: one contract (``infer(feed) -> outputs``) for torch, ONNX Runtime and TensorRT."""
from edgepose.backends.base import Runner, TensorSpec

__all__ = ["Runner", "TensorSpec", "load_runner"]


def load_runner(path_or_model, backend: str = "auto", **kw) -> Runner:
    """Open a model file with the requested backend.

    ``backend``: ``auto`` (TensorRT for ``.engine``, else ONNX Runtime), ``onnxruntime``,
    ``tensorrt`` or ``torch`` (zoo name / checkpoint, needs PyTorch).
    """
    from edgepose.backends.factory import load_runner as _load

    return _load(path_or_model, backend=backend, **kw)
