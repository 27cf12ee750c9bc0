"""Compare ONNX Runtime with a reference (PyTorch) output by output."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class OutputError:
    name: str
    shape: tuple
    max_abs: float
    max_rel: float  # max_abs / max(|reference|)
    ok: bool
    note: str = ""


def compare_outputs(reference: dict, candidate: dict, tolerance: float) -> list[OutputError]:
    """``max_abs`` and ``max_rel`` (= max_abs / max |reference|) per output; ``ok`` when
    ``max_rel <= tolerance``."""
    rows = []
    for name, ref in reference.items():
        ref = np.asarray(ref, dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != got.shape:
            rows.append(OutputError(name, tuple(got.shape), float("inf"), float("inf"), False))
            continue
        max_abs = float(np.max(np.abs(ref - got))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        max_rel = max_abs / scale if scale > 0 else max_abs
        rows.append(OutputError(name, tuple(ref.shape), max_abs, max_rel, max_rel <= tolerance))
    return rows


def format_errors(rows: list[OutputError], tolerance: float) -> str:
    lines = [f"{'output':<10} {'shape':<18} {'max_abs':>10} {'max_rel':>10}  status (tolerance {tolerance:g} of max)"]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        status = "ok" if r.ok else "FAIL"
        lines.append(f"{r.name:<10} {shape:<18} {r.max_abs:>10.3e} {r.max_rel:>10.3e}  {status}"
                     + (f"  ({r.note})" if r.note else ""))
    return "\n".join(lines)
