"""The one comparison of two sets of model outputs (in the spirit of Polygraphy's
``CompareFunc.simple``): per output, max absolute error, max relative error (to the largest
reference magnitude), cosine similarity and relative squared error, judged against a
tolerance.

Used by export verification (PyTorch vs ONNX Runtime), FP16/INT8 agreement with FP32, the
INT8 sensitivity search and the GPU engine tests.  Bottom layer: NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OutputError:
    """How far one output of the candidate is from the reference.

    ``max_rel`` = ``max_abs / max |reference|`` (``max_abs`` when the reference is all zero);
    ``ok`` when ``max_rel <= tolerance``.  ``cosine`` of the flattened tensors (1.0 for two
    zero tensors); ``rel_sq`` = ``||cand - ref||^2 / ||ref||^2``.
    """

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""
    cosine: float = 1.0
    rel_sq: float = 0.0


def _as64(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def cosine(reference, candidate) -> float:
    """Cosine similarity of two tensors, flattened (1.0 when both are zero)."""
    x, y = _as64(reference).ravel(), _as64(candidate).ravel()
    denom = np.linalg.norm(x) * np.linalg.norm(y)
    if denom == 0.0:
        return 1.0 if not x.any() and not y.any() else 0.0
    return float(x @ y / denom)


def compare_arrays(name: str, reference, candidate, tolerance: float = float("inf"),
                   scale_floor: float = 0.0) -> OutputError:
    """One :class:`OutputError` row; a shape mismatch gives infinite errors and ``ok=False``.
    ``scale_floor``: lower bound of the ``max |reference|`` that ``max_rel`` divides by (so
    near-zero outputs are judged absolutely)."""
    ref, got = _as64(reference), _as64(candidate)
    if ref.shape != got.shape:
        return OutputError(name, tuple(got.shape), float("inf"), float("inf"), False, cosine=0.0,
                           rel_sq=float("inf"), note=f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if not ref.size:
        return OutputError(name, tuple(ref.shape), 0.0, 0.0, True)
    diff = got - ref
    max_abs = float(np.max(np.abs(diff)))
    scale = max(float(np.max(np.abs(ref))), float(scale_floor))
    max_rel = max_abs / scale if scale > 0 else max_abs
    rel_sq = float(np.sum(diff ** 2) / max(np.sum(ref ** 2), 1e-12))
    return OutputError(name, tuple(ref.shape), max_abs, max_rel, max_rel <= tolerance,
                       cosine=cosine(ref, got), rel_sq=rel_sq)


def compare_outputs(reference: dict, candidate: dict, tolerance: float = float("inf")) -> list[OutputError]:
    """One row per output of ``reference`` (name -> array) against ``candidate``."""
    return [compare_arrays(name, ref, candidate[name], tolerance) for name, ref in reference.items()]


def compare_runs(reference: list, candidate: list, tolerance: float = float("inf")) -> list[OutputError]:
    """Compare two lists of output dicts (one per feed) with every feed's values of an output
    taken together: ``max_abs``/``max_rel`` are the worst over feeds, ``cosine`` is of the
    concatenation, ``rel_sq`` the mean over feeds."""
    if not reference:
        return []
    rows = []
    for name in reference[0]:
        per_feed = [compare_arrays(name, ref[name], cand[name], tolerance) for ref, cand in zip(reference, candidate)]
        ref_all = np.concatenate([_as64(r[name]).ravel() for r in reference])
        cand_all = np.concatenate([_as64(c[name]).ravel() for c in candidate])
        worst = max(per_feed, key=lambda r: r.max_rel)
        rows.append(OutputError(name, worst.shape, max(r.max_abs for r in per_feed), worst.max_rel,
                                all(r.ok for r in per_feed), cosine=cosine(ref_all, cand_all),
                                rel_sq=float(np.mean([r.rel_sq for r in per_feed]))))
    return rows


def mean_rel_sq_error(reference: list, candidate: list) -> float:
    """Mean over feeds and outputs of ``||cand - ref||^2 / ||ref||^2`` (the sensitivity score)."""
    errs = [compare_arrays(name, ref[name], cand[name]).rel_sq
            for ref, cand in zip(reference, candidate) for name in ref]
    return float(np.mean(errs)) if errs else 0.0


def format_errors(rows: list[OutputError], tolerance: float) -> str:
    """A fixed-width table of ``rows`` with ok/FAIL against ``tolerance``."""
    lines = [f"{'output':<10} {'shape':<18} {'max_abs':>10} {'max_rel':>10}  status (tolerance {tolerance:g} of max)"]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        status = "ok" if r.ok else "FAIL"
        lines.append(f"{r.name:<10} {shape:<18} {r.max_abs:>10.3e} {r.max_rel:>10.3e}  {status}"
                     + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)
