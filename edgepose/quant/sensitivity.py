"""Accuracy budget: which layers to keep in higher precision so INT8 loses at most X AP.

1. :func:`layer_sensitivity` -- quantize one layer at a time (everything else FP32) and
   measure how far the model's outputs move on a held-out slice of the calibration feeds
   (mean relative squared error over the heads).  Cheap, needs no labels.
2. :func:`budget_search` -- starting from full INT8, keep the most sensitive layers of the
   model that is over budget in FP32 (``nodes_to_exclude``), re-quantize with the same
   ranges and measure the task metric on the eval set, until every metric is within the
   budget.  Each step is recorded (kept layers, metrics) so the AP/speed trade-off can be
   reported.  With every layer kept the graph is FP32 again, so the search always ends.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.compare import mean_rel_sq_error
from edgepose.errors import UsageError
from edgepose.onnx_graph import name_nodes
from edgepose.ort_session import create_session, run_feeds
from edgepose.progress import bar

log = logging.getLogger("edgepose")


def _session(model_or_path, threads=1):
    """A CPU session with CSE disabled, as the INT8 runner has."""
    return create_session(model_or_path, threads=threads or 1, disable_cse=True)


def layer_sensitivity(model, ranges: dict, feeds: list, candidates=None, progress: bool = False,
                      threads=1) -> list:
    """``[(node_name, error), ...]`` most sensitive first: the output error when only that
    node is quantized.  ``model``: the prepared FP32 ModelProto."""
    from edgepose.quant.int8 import quantizable_nodes, quantize_int8

    model = name_nodes(model)
    candidates = list(candidates) if candidates is not None else quantizable_nodes(model)
    if not feeds:
        raise UsageError("sensitivity needs at least one held-out feed")
    reference = run_feeds(_session(model, threads), feeds)
    scores = []
    items = bar(candidates, total=len(candidates), desc="layer sensitivity", enabled=progress, unit="layer")
    everything = quantizable_nodes(model)
    for name in items:
        others = [c for c in everything if c != name]
        q = quantize_int8(model, ranges, None, nodes_to_exclude=others, lint=False)
        scores.append((name, mean_rel_sq_error(reference, run_feeds(_session(q, threads), feeds))))
    scores.sort(key=lambda item: -item[1])
    return scores


@dataclass
class QuantPlan:
    """One model of the search: its prepared FP32 graph, ranges and sensitivity ranking."""

    role: str
    model: object  # prepared FP32 onnx.ModelProto
    ranges: dict
    ranking: list  # [(node, score)] most sensitive first
    meta: object = None
    extra_meta: dict = field(default_factory=dict)
    always: list = field(default_factory=list)  # kept in FP32 at every step (e.g. CPU stem convs)

    def kept(self, k: int) -> list:
        ranked = [name for name, _ in self.ranking if name not in self.always]
        return list(self.always) + ranked[:k]

    def build(self, k: int, out_path):
        from edgepose.quant.int8 import quantize_int8

        return quantize_int8(self.model, self.ranges, out_path, nodes_to_exclude=self.kept(k), meta=self.meta,
                             extra_meta={**self.extra_meta, "fp32_nodes": self.kept(k)})


def _grow(k: int, n: int) -> int:
    return min(n, k + 1 if k < 3 else k + max(1, k // 3))


def budget_search(plans: dict, evaluate, baseline: dict, max_drop: float, blame: dict, max_steps: int = 40,
                  work_dir=None, scale: float = 100.0) -> dict:
    """Keep sensitive layers in FP32 until ``baseline[m] - metric[m] <= max_drop`` for every
    metric ``m`` in ``blame``.

    ``plans``: role -> :class:`QuantPlan`.  ``evaluate(paths)``: role -> ONNX path in,
    metric dict out.  ``baseline``: FP32 metrics.  ``max_drop`` is in points of
    ``metric * scale`` (AP points for 0-1 AP).  ``blame``: metric -> roles whose layers may
    cause that metric's drop (e.g. ``{"bbox_AP": ["det"], "keypoints_AP": ["pose", "det"]}``).

    Each step grows the FP32 set of one role (1, 2, 3, 4, 5, 6, 8, 10, ... most sensitive
    layers).  When the metrics over budget could be fixed by several roles, each is tried
    and the one with the smaller remaining excess wins (one evaluation per candidate), so a
    keypoint drop caused by the detector does not push the whole pose model to FP32.
    Returns ``{"kept": role -> names, "k": role -> count, "metrics", "drops", "history",
    "paths", "met"}``; the final graphs are left in ``work_dir``.
    """
    if max_drop is None or max_drop < 0:
        raise UsageError(f"--max-ap-drop must be >= 0 AP points, got {max_drop}")
    unknown = {r for roles in blame.values() for r in roles} - set(plans)
    if unknown:
        raise UsageError(f"blame names roles without a plan: {sorted(unknown)}")
    work = Path(work_dir or tempfile.mkdtemp(prefix="edgepose_budget_"))
    work.mkdir(parents=True, exist_ok=True)
    trials = _Trials(plans, evaluate, baseline, blame, scale, work)
    k = {role: 0 for role in plans}
    metrics, drops, paths = trials.run(k)
    while len(trials.history) <= max_steps:
        candidates = _roles_to_grow(plans, blame, drops, max_drop, k)
        if not candidates:
            break
        best = None
        for role in candidates:
            trial = {**k, role: _grow(k[role], len(plans[role].ranking))}
            result = trials.run(trial)
            if best is None or _excess(result[1], max_drop) < _excess(best[1][1], max_drop):
                best = (trial, result)
            if _excess(result[1], max_drop) == 0:
                break
        k, (metrics, drops, paths) = best
    met = all(drops[m] <= max_drop + 1e-9 for m in blame)
    keep_paths = set(paths.values())
    for old in work.glob("*.onnx"):
        if old not in keep_paths:
            old.unlink(missing_ok=True)
    return {"kept": {r: plans[r].kept(k[r]) for r in plans}, "k": dict(k), "metrics": metrics, "drops": drops,
            "history": trials.history, "paths": paths, "met": met}


def _excess(drops: dict, max_drop: float) -> float:
    return sum(max(0.0, d - max_drop) for d in drops.values())


def _roles_to_grow(plans, blame, drops, max_drop, k) -> list:
    """Roles that may fix the metrics over budget (worst metric first) and can still keep
    more layers in FP32; empty when every metric is within budget."""
    over = [m for m in blame if drops[m] > max_drop + 1e-9]
    candidates = []
    for m in sorted(over, key=lambda m: -drops[m]):
        for role in blame[m]:
            if role not in candidates and k[role] < len(plans[role].ranking):
                candidates.append(role)
    return candidates


class _Trials:
    """Builds and evaluates one ``{role: kept count}`` combination once (cached), recording
    every evaluation in ``history``."""

    def __init__(self, plans, evaluate, baseline, blame, scale, work):
        self.plans, self.evaluate, self.baseline, self.blame = plans, evaluate, baseline, blame
        self.scale, self.work = scale, work
        self.history, self._cache = [], {}

    def run(self, k: dict):
        roles = list(self.plans)
        key = tuple(k[r] for r in roles)
        if key in self._cache:
            return self._cache[key]
        tag = "_".join(f"{r}{k[r]}" for r in roles)
        paths = {}
        for role, plan in self.plans.items():
            paths[role] = self.work / f"{role}.{tag}.onnx"
            plan.build(k[role], paths[role])
        metrics = self.evaluate(dict(paths))
        drops = {m: (float(self.baseline[m]) - float(metrics[m])) * self.scale for m in self.blame}
        self.history.append({"step": len(self.history), "kept": dict(k),
                             "metrics": {m: float(metrics[m]) for m in self.blame}, "drops": drops})
        log.info("budget step %d: kept %s, drops %s", len(self.history) - 1, k, drops)
        self._cache[key] = (metrics, drops, paths)
        return self._cache[key]
