"""Option parsers shared by commands: one ``HxW`` parser for every size option."""
from __future__ import annotations

from edgepose.errors import UsageError

#: Network input sides accepted by every command (pixels).  Below 16 the stride-4/8 heads
#: have no room left; above 4096 the input tensors no longer fit an edge device.
MIN_SIDE, MAX_SIDE = 16, 4096


def parse_hw(text, option: str = "--input-size", lo: int = MIN_SIDE, hi: int = MAX_SIDE,
             example: str = "512x512", shown=None) -> tuple:
    """``'HxW'`` (also ``H,W`` / ``H*W``) or ``'N'`` (a square) -> ``(H, W)``, both in [lo, hi].

    Raises :class:`UsageError` (exit 2) naming the option, the value (``shown``, default
    ``text``) and the valid range.
    """
    raw = str(text).strip().lower()
    for sep in (",", "*"):
        raw = raw.replace(sep, "x")
    try:
        parts = [int(p) for p in raw.split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(lo <= p <= hi for p in parts):
        raise UsageError(f"{option} {shown or text!r}: write HxW with each side an integer from {lo} to {hi}, "
                         f"e.g. {example}")
    return parts[0], parts[1]


def size_callback(option: str = "--input-size", lo: int = MIN_SIDE, hi: int = MAX_SIDE, example: str = "512x512"):
    """A click callback parsing an optional ``HxW`` value with :func:`parse_hw`."""

    def callback(ctx, param, value):
        return None if value is None else parse_hw(value, option, lo, hi, example)

    return callback


def parse_size(text):
    """'HxW' or 'N' -> (H, W) (``None`` stays ``None``)."""
    return None if text is None else parse_hw(text)
