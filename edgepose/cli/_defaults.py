"""The one-line notice printed whenever a command falls back to the built-in default models."""
from __future__ import annotations

import click


def say_builtin_models(det_default: bool = True, pose_default: bool = True) -> None:
    """Print on stderr, in one line, that built-in models are in use and what they are."""
    from edgepose.models.defaults import SYNTHETIC_NOTICE

    which = {(True, True): "detector and pose model", (True, False): "detector",
             (False, True): "pose model"}.get((bool(det_default), bool(pose_default)))
    if which:
        click.echo(f"edgepose: note: using the built-in default {which}. {SYNTHETIC_NOTICE}", err=True)
