"""The Python environment the server's python-backend models run in.

Triton 2.51's python backend stub needs **numpy < 2** (with numpy 2 every output comes back
empty), while edgepose's own environment may have numpy 2; so the server gets its own venv:

    python = server_python()          # $EDGEPOSE_TRITON_PYTHON, or <cache>/triton/env (created once)

The venv is made with this interpreter's base Python (its version must have a python backend
stub) and gets :func:`server_requirements`: numpy<2, the same onnxruntime as here, and the
**same OpenCV build as here**, installed ``--no-deps``.  Same OpenCV because warpAffine's
rounding changed between 4.x and 5.x (crops differed by 1/255 in ~6 % of pixels, keypoints by
up to 0.9 px); ``--no-deps`` because OpenCV 5's metadata asks for numpy>=2 although its binary
runs on numpy 1.26 (checked: it imports and gives bit-identical crops).  A stamp file holding
the requirements marks a finished install: an interrupted one or one for other versions is
redone, a finished one costs nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgepose.errors import DependencyError

log = logging.getLogger("edgepose")

_OPENCV_DISTS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                 "opencv-contrib-python")
_STAMP = ".edgepose-server-env"
_CHECK = "import numpy, onnxruntime, cv2; assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__"


def _local_version(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def server_requirements() -> tuple:
    """``(with_deps, no_deps)`` pip requirement lists for the server environment."""
    ort = _local_version("onnxruntime")
    with_deps = ["numpy>=1.24,<2", f"onnxruntime=={ort}" if ort else "onnxruntime>=1.18"]
    for dist in _OPENCV_DISTS:
        found = _local_version(dist)
        if found:
            return with_deps, [f"opencv-python-headless=={found}"]
    return with_deps + ["opencv-python-headless>=4.8,<5"], []


def _stamp_text() -> str:
    with_deps, no_deps = server_requirements()
    return " ".join(with_deps) + " | --no-deps " + " ".join(no_deps) + "\n"


def env_dir(cache=None) -> Path:
    from edgepose.models.defaults import cache_dir

    return cache_dir(cache) / "triton" / "env"


def check_python(python) -> str | None:
    """None when ``python`` can run the models, else the reason it cannot."""
    try:
        proc = subprocess.run([str(python), "-c", _CHECK], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return str(exc)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def server_python(explicit=None, cache=None, create: bool = True) -> Path:
    """Interpreter for the python backend: ``explicit``, ``$EDGEPOSE_TRITON_PYTHON`` or the
    cached venv (created with :func:`server_requirements` when missing or stale and ``create``)."""
    explicit = explicit or os.environ.get("EDGEPOSE_TRITON_PYTHON")
    if explicit:
        problem = check_python(explicit)
        if problem:
            raise DependencyError(f"the server python {explicit} cannot run the models ({problem}); it needs "
                                  "numpy<2, onnxruntime and opencv-python-headless")
        return Path(explicit)
    root = env_dir(cache)
    python = root / "bin" / "python"
    stamp = root / _STAMP
    if python.is_file() and stamp.is_file() and stamp.read_text() == _stamp_text():
        return python
    if not create:
        raise DependencyError(f"no server python environment at {root}; create it with `edgepose serve --setup`")
    return create_env(root)


def create_env(root: Path) -> Path:
    """A fresh venv at ``root`` with :func:`server_requirements` (pip, needs the network once)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    with_deps, no_deps = server_requirements()
    log.warning("creating the Triton server environment in %s (%s); this happens once", root,
                ", ".join(with_deps + no_deps))
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q"]
    steps = [[base, "-m", "venv", str(root)], pip + with_deps] + ([pip + ["--no-deps"] + no_deps] if no_deps else [])
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            tail = (proc.stderr or proc.stdout).strip()[-400:]
            raise DependencyError(f"creating the server environment failed ({' '.join(cmd[:4])} ...): {tail}; "
                                  "or pass a ready interpreter with --python / $EDGEPOSE_TRITON_PYTHON")
    problem = check_python(root / "bin" / "python")
    if problem:
        raise DependencyError(f"the new server environment {root} cannot run the models: {problem}")
    (root / _STAMP).write_text(_stamp_text())
    return root / "bin" / "python"
