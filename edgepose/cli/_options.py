"""Option parsers shared by commands."""
from __future__ import annotations

import click


def parse_size(text):
    """'HxW' or 'N' -> (H, W)."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 512x512, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise click.BadParameter(f"expected HxW such as 512x512, got {text!r}")
    return tuple(parts)
