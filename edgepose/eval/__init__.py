"""Measurement: COCO AP (pycocotools, imported lazily), timing statistics, dataset evaluation.

Names resolve lazily; importing this package imports neither pycocotools nor torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "edgepose.eval.coco": ("evaluate", "results_to_coco", "format_table", "COCO_KPT_OKS_SIGMAS", "METRIC_NAMES"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgepose.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
