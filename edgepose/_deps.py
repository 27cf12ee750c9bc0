"""Lazy imports of heavy / optional dependencies, with version checks.

    torch = require("torch", ">=2.1", extra="torch")

imports torch only when called, and turns a missing or too-old package into a
:class:`~edgepose.errors.DependencyError` that says how to install it.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from edgepose.errors import DependencyError

# pip extra (or install hint) per distribution
_HINTS = {
    "torch": "pip install 'edgepose[torch]' (CPU: pip install torch==2.13.0)",
    "onnxsim": "pip install 'edgepose[torch]'  (onnxsim)",
    "tensorrt": "pip install 'edgepose[trt]' on a desktop GPU; on Jetson use JetPack's python3-libnvinfer",
    "cuda": "pip install 'edgepose[trt]'  (cuda-python)",
    "pycocotools": "pip install 'edgepose[eval]'",
    "matplotlib": "pip install 'edgepose[eval]'",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu)",
    "tritonclient": "pip install 'edgepose[triton]'  (tritonclient[http,grpc])",
}


def _version_of(module) -> str | None:
    return getattr(module, "__version__", None)


@lru_cache(maxsize=None)
def require(name: str, spec: str | None = None, extra: str | None = None):
    """Import ``name`` and check its version against ``spec`` (e.g. ``">=10.3,<12"``)."""
    hint = extra or _HINTS.get(name.split(".")[0], f"pip install {name}")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise DependencyError(f"{name} is needed here but cannot be imported ({exc}). Install it: {hint}") from None
    if spec:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        found = _version_of(module)
        if found is None:
            raise DependencyError(f"cannot tell the version of {name}; edgepose needs {name}{spec}. {hint}")
        if Version(found.split("+")[0]) not in SpecifierSet(spec):
            raise DependencyError(f"{name} {found} found, edgepose needs {name}{spec}. Install a matching version: {hint}")
    return module


def available(name: str) -> bool:
    """True when ``name`` can be imported (does not raise)."""
    try:
        require(name)
    except DependencyError:
        return False
    return True
