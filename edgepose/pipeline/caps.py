"""Caps that silently remove people are reported: ``max_persons`` and the decoder's K.

A crowd image with 63 people above the threshold and ``max_persons=20`` loses 43 of them;
:class:`CapCounter` counts such losses over a run and :func:`warn_caps` logs them once.
"""
from __future__ import annotations

import logging

log = logging.getLogger("edgepose")


class CapCounter:
    """Counts people lost to caps: ``max_persons`` and the detector decoder's K (top-K
    candidates that all passed the threshold mean there may have been more people)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.frames = self.dropped = self.most = self.k_frames = 0
        self.max_persons = self.k = None

    def count(self, passed: int, max_persons: int, saturated: bool, k: int):
        if passed > max_persons:
            self.frames += 1
            self.dropped += passed - max_persons
            self.most = max(self.most, passed)
            self.max_persons = max_persons
        if saturated:
            self.k_frames += 1
            self.k = k

    def report(self):
        """One line per cap that was hit (None when nothing was lost), then reset."""
        lines = []
        if self.frames:
            lines.append(f"--max-persons {self.max_persons} dropped {self.dropped} people above the score "
                         f"threshold in {self.frames} frame(s) (up to {self.most} in one frame); "
                         "raise --max-persons to keep them")
        if self.k_frames:
            lines.append(f"in {self.k_frames} frame(s) all {self.k} candidates of the detector's decoder (K) "
                         "passed the score threshold, so more people may have been cut off; re-export the "
                         "detector with a larger --decode-k")
        self.reset()
        return "\n".join(lines) or None


def warn_caps(pipe):
    """Log, once per run, how many people the caps of ``pipe`` (a Pipeline) removed."""
    caps = getattr(pipe, "caps", None)
    for line in ((caps.report() if caps is not None else None) or "").splitlines():
        log.warning("edgepose: warning: %s", line)
