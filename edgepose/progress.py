"""One way libraries report progress: log records on the ``edgepose`` logger and tqdm bars,
both on stderr (stdout stays for results).

    say("reading calibration set", enabled=progress, prefix="build")
    for feed in bar(feeds, total=len(feeds), desc="calibrating", enabled=progress):
        ...

When a caller asks for progress and nobody has configured logging, :func:`say` attaches one
stderr handler (``message`` only) to the ``edgepose`` logger, so command-line users see the
steps without the library printing (once: that logger then stops propagating to the root
logger, which some dependencies configure on import).  Bottom layer: stdlib and tqdm (lazily).
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("edgepose")
_HANDLER_NAME = "edgepose-progress"


def _ensure_visible():
    if log.handlers or logging.getLogger().handlers:
        if log.getEffectiveLevel() > logging.INFO and any(h.get_name() == _HANDLER_NAME for h in log.handlers):
            log.setLevel(logging.INFO)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False  # a library's later logging.basicConfig() must not print every line twice
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)


def say(text: str, enabled: bool = True, prefix: str = "edgepose"):
    """Log one progress line ``[prefix] text`` at INFO when ``enabled``."""
    if enabled:
        _ensure_visible()
        log.info("[%s] %s", prefix, text)


def bar(iterable, total=None, desc: str = "", enabled: bool = True, unit: str = "it"):
    """``iterable`` wrapped in a tqdm bar on stderr (transient) when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
