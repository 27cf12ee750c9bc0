"""Lazy re-exports for package ``__init__`` modules: a name is imported from its module on
first access, so importing the package stays cheap (no torch, pycocotools, ONNX Runtime).

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"edgepose.eval.coco": ("evaluate",)})
"""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict):
    """``(__getattr__, __dir__, __all__)`` for ``package`` re-exporting ``exports``
    (module -> names); a resolved name is cached in the package's globals."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
