"""Measurement: COCO AP (pycocotools, imported lazily), timing statistics, dataset evaluation.

Names resolve lazily; importing this package imports neither pycocotools nor torch.
"""
from __future__ import annotations

from edgepose._lazy import lazy_exports

_EXPORTS = {
    "edgepose.eval.coco": ("evaluate", "results_to_coco", "format_table", "COCO_KPT_OKS_SIGMAS", "METRIC_NAMES"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
