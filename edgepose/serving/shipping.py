"""Which edgepose files a repository's python models need, found by following imports.

Starting from :mod:`edgepose.serving.triton_models`, every ``import edgepose...`` and
``from edgepose... import ...`` -- at module level and inside functions, since the pipeline
imports its stages lazily -- is followed through the source (``ast``, nothing is imported),
with the packages on the way.  So a new pipeline module is shipped without anyone keeping a
list.  Not followed: :data:`NOT_SHIPPED`, entry points the server never calls that would drag
in the runners, TensorRT and torch-side code.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the edgepose package
START = "edgepose.serving.triton_models"
NOT_SHIPPED = {
    "edgepose.backends.factory": "Pipeline.from_files (the server gets runners from BLS)",
    "edgepose.eval.coco": "PoseResult.to_coco (the server returns arrays)",
}


def _file_of(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported(tree) -> list:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]  # the name may be a submodule
    return [n for n in names if n == "edgepose" or n.startswith("edgepose.")]


def shipped_files(start: str = START) -> list:
    """Paths relative to the ``edgepose`` package folder, sorted (e.g. ``pipeline/decode.py``)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or module in NOT_SHIPPED:
            continue
        path = _file_of(module)
        if path is None:  # an attribute, not a module
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        todo += _imported(ast.parse(path.read_text()))
    package = ROOT / "edgepose"
    return sorted(str(_file_of(m).relative_to(package)) for m in seen)
