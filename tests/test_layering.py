"""The import layering of edgepose (README "Layout"), checked on the source with ``ast``.

    cli -> workflows -> {quant, train, eval, serving} -> pipeline -> backends
        -> export -> models -> ops -> bottom (data, errors, metadata, tasks, onnx_graph,
                                               ort_session, compare, io_utils, _deps)

A module may import its own layer and any layer below it, never one above; the four
libraries of one rank do not import each other; the pipeline never imports models, export,
quant or eval (runtime devices have no torch); quant imports none of pipeline, backends,
export and models (it is ONNX -> ONNX); models never import export; only cli imports cli.  Imports inside functions (lazy imports) count like top-level ones.  Imports of names
held in strings (``importlib.import_module("...")``) are not seen; the registries that use
them name modules of their own layer.

Today's violations in code other branches are moving are listed in ``ALLOWED`` with the issue
item that removes them; an entry that no longer happens fails the test, so the list only
shrinks.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.paths import REPO

ROOT = REPO / "edgepose"

# layer of each top-level part of the package, lowest first; equal rank = peers
LAYERS = {
    "bottom": 0, "ops": 1, "models": 2, "export": 3, "backends": 4, "pipeline": 5,
    "quant": 6, "train": 6, "eval": 6, "serving": 6, "workflows": 7, "cli": 8, "api": 9,
}
PART_OF = {  # top-level modules/packages -> layer (packages not named here are their own layer)
    "data": "bottom", "errors": "bottom", "metadata": "bottom", "tasks": "bottom", "onnx_graph": "bottom",
    "ort_session": "bottom", "compare": "bottom", "progress": "bottom", "io_utils": "bottom", "_deps": "bottom",
    "_lazy": "bottom", "io_checks": "bottom", "outputs": "bottom",
    "plugins": "ops",  # the plugin library loader sits beside the custom ops it serves
    "__main__": "cli",
}
NEVER = {  # extra edges forbidden whatever the ranks say
    "pipeline": {"models", "export", "quant", "eval"},
    # quant is a pure ONNX -> ONNX library (onnx, onnxruntime, numpy; sessions from ort_session)
    "quant": {"pipeline", "backends", "export", "models"},
}

# (importer module, imported module or package): why it is allowed for now.  A package
# covers its modules, so an entry survives a move inside it (backends/trt/ of issue 11 item 2).
ALLOWED = {
    ("edgepose.models.defaults", "edgepose.export"):
        "exporting the default models is default-model resolution, which moves to workflows (issue 11 item 1)",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"  # the package itself: the public API (lazy re-exports)
    return PART_OF.get(parts[1], parts[1])


def _imports(path: Path, module: str):
    """Every ``edgepose.*`` module ``path`` imports (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "edgepose" or name.startswith("edgepose."):
                yield node.lineno, name


def _known_modules() -> set:
    return {_module_name(p) for p in ROOT.rglob("*.py")}


def _resolve(name: str, known: set) -> str | None:
    """``from edgepose.x import y``: y may be a module or a name; keep the longest module."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _edges():
    """``(importer, imported, "file:line")`` once per importer/imported pair and line."""
    known, seen = _known_modules(), set()
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        for lineno, name in _imports(path, module):
            target = _resolve(name, known)
            if target and target not in (module, "edgepose") and (module, target, lineno) not in seen:
                seen.add((module, target, lineno))
                yield module, target, f"{path.relative_to(ROOT.parent)}:{lineno}"


def _violation(src: str, dst: str) -> str | None:
    a, b = _layer(src), _layer(dst)
    if a == b:
        return None
    if b == "cli":
        return "only cli imports cli"
    if b in NEVER.get(a, ()):
        return f"{a} never imports {b}"
    if LAYERS[b] > LAYERS[a]:
        return f"{a} (layer {LAYERS[a]}) imports the higher layer {b} (layer {LAYERS[b]})"
    if LAYERS[b] == LAYERS[a]:
        return f"{a} and {b} are peer libraries and do not import each other"
    return None


def _allowed_entry(src: str, dst: str):
    for importer, imported in ALLOWED:
        if src == importer and (dst == imported or dst.startswith(imported + ".")):
            return importer, imported
    return None


def test_every_part_has_a_layer():
    parts = {_layer(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS/PART_OF: {sorted(parts - set(LAYERS))}"


def test_layering():
    found, seen_allowed = [], set()
    for src, dst, where in _edges():
        why = _violation(src, dst)
        if why is None:
            continue
        entry = _allowed_entry(src, dst)
        if entry is not None:
            seen_allowed.add(entry)
            continue
        found.append(f"{where}: {src} -> {dst}: {why}")
    assert found == [], "layering violations:\n" + "\n".join(found)
    stale = sorted(set(ALLOWED) - seen_allowed)
    assert stale == [], f"allow-listed edges that no longer occur (remove them from ALLOWED): {stale}"


@pytest.mark.parametrize("src,dst,expected", [
    ("edgepose.pipeline.decode", "edgepose.models", "pipeline never imports models"),
    ("edgepose.pipeline.decode", "edgepose.eval.coco", "pipeline never imports eval"),
    ("edgepose.models.resnet", "edgepose.export.torch2onnx", "higher layer export"),
    ("edgepose.quant.int8", "edgepose.cli.build", "only cli imports cli"),
    ("edgepose.quant.int8", "edgepose.backends.onnxruntime", "quant never imports backends"),
    ("edgepose.quant.int8", "edgepose.ort_session", None),
    ("edgepose.train.det", "edgepose.models", None),
    ("edgepose.quant.int8", "edgepose.eval.coco", "peer libraries"),
    ("edgepose.ort_session", "edgepose.backends.onnxruntime", "higher layer backends"),
    ("edgepose.backends.onnxruntime", "edgepose.ort_session", None),
])
def test_rules_on_known_edges(src, dst, expected):
    """The checker itself: each rule flags the edge it is about (and only that)."""
    why = _violation(src, dst)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_lazy_imports_are_seen(tmp_path):
    source = "def f():\n    from edgepose.cli import main\n    import edgepose.eval.coco\n"
    path = tmp_path / "mod.py"
    path.write_text(source)
    names = [name for _, name in _imports(path, "edgepose.pipeline.mod")]
    assert "edgepose.cli.main" in names and "edgepose.eval.coco" in names
