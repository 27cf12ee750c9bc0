"""Typed errors.  Every message says what went wrong *and* what to do about it.

The CLI catches :class:`EdgeposeError`, prints its message on one line of stderr and exits
with ``exit_code`` -- users never see a traceback for bad input.
"""


class EdgeposeError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(EdgeposeError):
    """Bad arguments or inconsistent options."""

    exit_code = 2


class DependencyError(EdgeposeError):
    """An optional dependency is missing or too old."""


class CheckpointError(EdgeposeError):
    """A checkpoint cannot be read or does not fit the model."""


class ExportError(EdgeposeError):
    """torch -> ONNX export failed or the ONNX does not match PyTorch."""


class MetadataError(EdgeposeError):
    """An ONNX/engine file lacks the edgepose metadata the runtime needs."""


class SourceError(EdgeposeError):
    """A camera, video, image folder or stream cannot be read."""

    exit_code = 2


class CalibrationError(EdgeposeError):
    """INT8 calibration data is missing, empty or unreadable."""


class QuantizationError(EdgeposeError):
    """A precision conversion produced a graph that breaks the rules."""


class PluginError(EdgeposeError):
    """A custom op's plugin library is missing or failed to load."""


class EngineError(EdgeposeError):
    """A TensorRT engine cannot be built or does not fit this machine."""


class NoGPUError(DependencyError):
    """No usable CUDA GPU here (no device, no driver): the TensorRT backend cannot run, ONNX Runtime can."""


class OutputError(EdgeposeError):
    """An output cannot be written (read-only folder, full disk, unreadable result).  The
    message names the path, the cause and where any finished results were kept instead."""
