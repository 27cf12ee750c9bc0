"""The one place edgepose creates ONNX Runtime sessions.

Export verification, calibration, the sensitivity search, the fusion report and the ORT
runner all call :func:`create_session`, so thread, logging and optimizer settings are set
once.  Bottom layer: imports only numpy-free stdlib, ``onnxruntime`` (lazily) and errors.

``disable_cse`` turns off ONNX Runtime's CommonSubexpressionElimination. INT8 Q/DQ graphs
need it: otherwise ORT merges the dedicated Q/DQ pairs at residual forks and fuses only about
half the convs into QLinearConv.
"""
from __future__ import annotations

from pathlib import Path

from edgepose._deps import require
from edgepose.errors import EdgeposeError

CPU = ["CPUExecutionProvider"]
NO_CSE = ["CommonSubexpressionElimination"]


def onnxruntime():
    """The ``onnxruntime`` module (a DependencyError naming the install when missing)."""
    return require("onnxruntime")


def default_providers() -> list:
    """CUDA when this onnxruntime build offers it, then CPU."""
    available = onnxruntime().get_available_providers()
    return [p for p in ("CUDAExecutionProvider",) if p in available] + list(CPU)


def session_options(threads=None, spinning: bool = True, optimized_path=None, extended_only: bool = False):
    """``SessionOptions`` with warnings silenced.  ``threads``: intra-op threads (inter-op 1);
    ``spinning=False`` stops idle worker threads from spinning (two sessions alternating on few
    cores steal each other's cores otherwise); ``optimized_path`` writes the graph ORT runs,
    at the extended level when ``extended_only``."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if extended_only:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


def create_session(model_or_path, providers=None, threads=None, disable_cse: bool = False,
                   spinning: bool = True, optimized_path=None, extended_only: bool = False,
                   error=EdgeposeError, what: str | None = None):
    """An ``onnxruntime.InferenceSession`` for an ONNX file or an in-memory ``ModelProto``.

    ``providers``: default CPU only (use :func:`default_providers` for CUDA-then-CPU).
    A model ORT cannot load raises ``error`` (an EdgeposeError subclass) with one line naming
    ``what`` (default: the path) and the fix, never ORT's own exception types.
    """
    ort = onnxruntime()
    options = session_options(threads, spinning, optimized_path, extended_only)
    if hasattr(model_or_path, "SerializeToString"):
        source, label = model_or_path.SerializeToString(), what or "the in-memory ONNX model"
    else:
        source, label = str(Path(model_or_path)), what or str(model_or_path)
    kwargs = {"disabled_optimizers": list(NO_CSE)} if disable_cse else {}
    try:
        return ort.InferenceSession(source, options, providers=list(providers or CPU), **kwargs)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise error(f"ONNX Runtime cannot load {label} ({str(exc).splitlines()[0]}); "
                    "re-export it or check that the opset is supported") from None


def run_feeds(session, feeds: list) -> list:
    """``[{output: array}, ...]``, one dict per feed of ``feeds``."""
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, feed))) for feed in feeds]
