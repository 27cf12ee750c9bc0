"""TensorRT messages and build progress -> Python ``logging``.

``make_logger`` subclasses ``trt.ILogger`` (``ILogger`` has no ``min_severity`` in any release;
only the ready-made ``trt.Logger`` has), so severity filtering happens in ``log()`` against
the Python logger's level.  ``make_progress_monitor`` adapts ``trt.IProgressMonitor`` (in every
supported release, 10.3-11.x) to log lines for the top-level build phases.
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("edgepose.tensorrt")

_SEVERITY_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,        # TensorRT's INFO is a build diary; keep it out of the user's way
    "VERBOSE": logging.DEBUG - 5,
}


def severity_to_level(severity) -> int:
    """TensorRT ``ILogger.Severity`` (enum or its name) -> Python logging level."""
    name = getattr(severity, "name", None) or str(severity).rsplit(".", 1)[-1]
    return _SEVERITY_LEVELS.get(name.upper(), logging.INFO)


def make_logger(trt, logger: logging.Logger | None = None):
    """A ``trt.ILogger`` forwarding TensorRT's messages to ``logger`` (default ``edgepose.tensorrt``).

    Messages below the logger's effective level are dropped in ``log()`` (decided per message,
    so ``--verbose`` set after creation still works); errors are kept in ``.errors`` either way
    so a failed build can quote them."""
    logger = logger or log

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            level = severity_to_level(severity)
            if level >= logging.ERROR:
                self.errors.append(str(msg))
            if logger.isEnabledFor(level):
                logger.log(level, "TensorRT: %s", msg)

    return _Logger()


class _Progress:
    """Phase/step bookkeeping shared by the IProgressMonitor adapter (thread-safe)."""

    def __init__(self, logger: logging.Logger, label: str):
        self.logger, self.label = logger, label
        self.lock = threading.Lock()
        self.phases = {}
        self.cancelled = False

    def start(self, phase, parent, steps):
        with self.lock:
            self.phases[phase] = (parent, int(steps), time.monotonic())
            if parent is None:
                self.logger.info("%s: %s (%d steps)", self.label, phase, steps)

    def step(self, phase, step) -> bool:
        with self.lock:
            parent, steps, _ = self.phases.get(phase, (None, 0, 0.0))
            if parent is None and steps >= 10 and (step + 1) % max(1, steps // 10) == 0:
                self.logger.info("%s: %s %d%%", self.label, phase, int(100 * (step + 1) / steps))
            return not self.cancelled

    def finish(self, phase):
        with self.lock:
            parent, _, started = self.phases.pop(phase, (None, 0, time.monotonic()))
            if parent is None:
                self.logger.info("%s: %s done in %.1f s", self.label, phase, time.monotonic() - started)


def make_progress_monitor(trt, logger: logging.Logger, label: str):
    """A ``trt.IProgressMonitor`` logging the top-level build phases."""
    base = trt.IProgressMonitor
    state = _Progress(logger, label)

    class _Monitor(base):
        def __init__(self):
            base.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            state.start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return state.step(phase_name, step)

        def phase_finish(self, phase_name):
            state.finish(phase_name)

    return _Monitor()
