"""Custom ops.  Each op has four faces: a PyTorch implementation (used by the models), a
NumPy reference, an ONNX *plugin node* (op_type = TensorRT plugin name, attributes
``plugin_version``/``plugin_namespace``) and an ONNX *decomposition* into standard ops.

Which ONNX face export emits is chosen by :func:`plugin_export`::

    with plugin_export(True):      # plugin nodes, need libedgepose_plugins.so in TensorRT
        torch.onnx.export(...)

The default is the decomposition (runs on ONNX Runtime and on TensorRT without our library).
Importing this package does not import torch; the ops' modules do.
"""
from __future__ import annotations

import contextlib
import threading

PLUGIN_NAMESPACE = "edgepose"
PLUGIN_DOMAIN = "edgepose"  # ONNX domain of plugin nodes (TensorRT ignores the domain)

_state = threading.local()


def plugins_enabled() -> bool:
    """True while exporting with plugin nodes instead of standard-op decompositions."""
    return getattr(_state, "plugins", False)


@contextlib.contextmanager
def plugin_export(enabled: bool = True):
    previous = plugins_enabled()
    _state.plugins = bool(enabled)
    try:
        yield
    finally:
        _state.plugins = previous


def corner_pool(x, mode: str):
    """Cumulative-max corner pooling (top/bottom/left/right) on a torch tensor [N,C,H,W]."""
    from edgepose.ops.corner_pool import corner_pool as _corner_pool

    return _corner_pool(x, mode)


def heatmap_topk(hm, wh, reg=None, K=100, apply_sigmoid=True, stride=4):
    """Fused CenterNet decode: peaks + top-K + gathers -> (boxes, scores, classes)."""
    from edgepose.ops.heatmap_topk import heatmap_topk as _heatmap_topk

    return _heatmap_topk(hm, wh, reg, K, apply_sigmoid, stride)
