"""`edgepose prune`: network slimming of a zoo detector / pose model, fine-tuned, measured.

    report = prune_model(PruneJob("default_pose", "pose.pth", "pruned.pth", data="data/train",
                                  val="data/val", ratio=0.5))
    print(report.format())

Steps: load the model -> sparsity training with the BatchNorm L1 term (``--sparsity``,
``--sparse-epochs``) -> remove the weakest channels until the MAC target is met (``--ratio``
= fraction of MACs removed; :mod:`edgepose.train.prune`) -> fine-tune
on the same COCO-format data, optionally distilling from the unpruned model (``--kd``) ->
write ``OUT.pth`` (pruned format, :mod:`edgepose.models.pruned`) and ``OUT.json`` (this
report) -> export both models to ONNX and compare MACs, parameters, ONNX Runtime latency
(same run, interleaved) and, with ``val``, COCO AP of the two-stage pipeline.  For AP the
other stage is the built-in default model (trained on synthetic people).
"""
from __future__ import annotations

import copy
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepose.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["PruneJob", "PruneReport", "prune_model"]


@dataclass
class PruneJob:
    model: str
    weights: str
    out: str
    data: str | None = None
    ann_file: str | None = None
    image_dir: str | None = None
    val: str | None = None  # COCO-format folder for AP before/after
    ratio: float = 0.5
    ratio_of: str = "macs"  # --ratio is the fraction of MACs ("macs") or of channels ("channels") removed
    scope: str = "global"  # one BatchNorm-scale threshold ("global") or the same fraction per layer ("layer")
    sparsity: float = 1e-5
    sparse_epochs: int = 1
    epochs: int = 3
    kd: bool = True  # distil from the unpruned model while fine-tuning
    kd_alpha: float = 0.5
    batch_size: int | None = None
    lr: float = 1.5e-3  # the peak rate the built-in models were trained with
    seed: int = 0
    threads: int | None = 1
    max_steps: int | None = None  # per phase, for quick runs and tests
    eval_limit: int | None = None
    latency_runs: int = 30
    progress: bool = True


@dataclass
class PruneReport:
    model: str
    ratio: float
    out: str
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    latency_ms_before: float
    latency_ms_after: float
    changed_layers: int
    left_out: dict = field(default_factory=dict)
    heads: list = field(default_factory=list)
    ap_before: dict = field(default_factory=dict)
    ap_after: dict = field(default_factory=dict)
    sparse_losses: list = field(default_factory=list)
    finetune_losses: list = field(default_factory=list)
    kd: bool = False
    ratio_of: str = "macs"
    scope: str = "global"
    channel_ratio: float = 0.0
    channels_removed: float = 0.0
    target_macs: int | None = None
    schedule: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    def format(self) -> str:
        mac = self.macs_after / max(1, self.macs_before)
        par = self.params_after / max(1, self.params_before)
        lat = self.latency_ms_after / max(1e-9, self.latency_ms_before)
        lines = [
            f"pruned {self.model} at ratio {self.ratio:g} of its {self.ratio_of} ({self.scope} scope) -> {self.out} "
            f"({self.changed_layers} layers narrowed, {len(self.left_out)} left out, heads untouched: "
            f"{', '.join(self.heads)})",
            f"MACs (multiply-accumulates, batch 1, Torch-Pruning op counter): {self.macs_before / 1e6:.1f} M -> "
            f"{self.macs_after / 1e6:.1f} M ({100 * mac:.1f} %{self._target_text()})",
            f"channels: Torch-Pruning channel ratio {self.channel_ratio:.4f}, {100 * self.channels_removed:.1f} % of "
            "the prunable conv output channels removed",
            f"parameters: {self.params_before / 1e6:.3f} M -> {self.params_after / 1e6:.3f} M ({100 * par:.1f} %)",
            f"ONNX Runtime CPU latency (median, same run): {self.latency_ms_before:.2f} ms -> "
            f"{self.latency_ms_after:.2f} ms (ratio {lat:.2f})",
        ]
        for key in ("bbox_AP", "keypoints_AP"):
            if key in self.ap_before and key in self.ap_after:
                lines.append(f"{key.replace('_', ' ')}: {100 * self.ap_before[key]:.1f} -> "
                             f"{100 * self.ap_after[key]:.1f}")
        if self.left_out:
            lines.append("left out (not pruned): " + "; ".join(f"{k} ({v})" for k, v in sorted(self.left_out.items())))
        lines += self.notes
        lines.append(f"took {self.seconds / 60:.1f} min")
        return "\n".join(lines)

    def _target_text(self) -> str:
        if self.target_macs is None:
            return ""
        return f"; target <= {self.target_macs / 1e6:.1f} M = {100 * self.target_macs / max(1, self.macs_before):.1f} %"


def _load(job: PruneJob):
    from edgepose.models import get_spec
    from edgepose.models.pruned import create_with_weights

    spec = get_spec(job.model)
    if spec.task not in ("ctdet", "sppe"):
        raise UsageError(f"edgepose prune works on CenterNet and AlphaPose models; {job.model} is a {spec.task} model")
    if job.data is None and job.ann_file is None:
        raise UsageError("pass --data DIR (COCO-format annotations.json + images/) to fine-tune the pruned model")
    model = create_with_weights(job.model, job.weights)
    if getattr(model, "edgepose_pruned", None):
        raise UsageError(f"{job.weights} is already pruned; prune the original weights with the ratio you want")
    kwargs = {k: v for k, v in model.edgepose_kwargs.items() if k in ("num_classes", "num_joints")}
    return model, spec, spec.meta(**kwargs), kwargs


def _dataset(job, spec, meta):
    from edgepose.train.coco_data import CocoPeople, DetDataset, PoseDataset

    coco = CocoPeople(job.data, ann_file=job.ann_file, image_dir=job.image_dir)
    cls = DetDataset if spec.task == "ctdet" else PoseDataset
    return cls(coco, meta, augment=True, seed=job.seed)


def _train(job, model, dataset, step_loss, epochs, desc, after_backward=None):
    from edgepose.train import fit

    batch = job.batch_size or (16 if desc.startswith("det") else 32)
    return fit(model, dataset, step_loss, epochs=epochs, batch_size=batch, lr=job.lr, warmup=50, seed=job.seed,
               desc=desc, progress=job.progress, max_steps=job.max_steps, threads=job.threads,
               after_backward=after_backward)


def _export(model, path, spec):
    from edgepose.export import torch2onnx

    torch2onnx(model, path, batch=1 if spec.task == "ctdet" else "dynamic")
    return path


def _evaluate(job, spec, onnx_path) -> dict:
    from edgepose.models.defaults import default_model_paths
    from edgepose.workflows.measure import evaluate_files

    val = Path(job.val)
    if not (val / "annotations.json").is_file():
        raise UsageError(f"--val {val} has no annotations.json; pass a COCO-format folder (edgepose data synth)")
    det, pose = default_model_paths()
    pair = (onnx_path, pose) if spec.task == "ctdet" else (det, onnx_path)
    metrics = evaluate_files(*pair, val / "annotations.json", val / "images", threads=job.threads,
                             limit=job.eval_limit, progress=job.progress)
    return {k: v for k, v in metrics.items() if k in ("bbox_AP", "bbox_AP50", "keypoints_AP", "keypoints_AP50")}


def _latency(meta, paths: dict, runs: int) -> dict:
    import numpy as np

    from edgepose.workflows.measure import ort_latency_ms

    h, w = meta.input_size
    feed = {meta.input_name: np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)}
    return ort_latency_ms(paths, feed, runs=runs, threads=1)


def prune_model(job: PruneJob) -> PruneReport:
    """Run the whole prune job; writes ``job.out`` and ``job.out`` with suffix ``.json``."""
    from edgepose._deps import require
    from edgepose.models.pruned import save_pruned
    from edgepose.train.det import det_step_loss
    from edgepose.train.pose import pose_step_loss
    from edgepose.train.prune import ChannelPruner, distill_step_loss

    torch = require("torch")
    t0 = time.time()
    torch.manual_seed(job.seed)
    model, spec, meta, kwargs = _load(job)
    dataset = _dataset(job, spec, meta)
    teacher = copy.deepcopy(model).eval() if job.kd else None
    h, w = meta.input_size
    pruner = ChannelPruner(model, torch.randn(1, 3, h, w), ratio=job.ratio, reg=job.sparsity,
                           ratio_of=job.ratio_of, scope=job.scope)
    task_loss = det_step_loss if spec.task == "ctdet" else pose_step_loss
    tag = "det" if spec.task == "ctdet" else "pose"
    sparse = None
    if job.sparsity > 0 and job.sparse_epochs > 0:
        sparse = _train(job, model, dataset, task_loss, job.sparse_epochs, f"{tag} sparsity", pruner.regularize)
    result = pruner.prune()
    log.info("pruned %s: %d layers narrowed, MACs %.1f M -> %.1f M", job.model, len(result.changed),
             result.macs_before / 1e6, result.macs_after / 1e6)
    step_loss = distill_step_loss(spec.task, teacher, job.kd_alpha) if job.kd else task_loss
    tuned = _train(job, model, dataset, step_loss, job.epochs, f"{tag} fine-tune") if job.epochs > 0 else None
    model.eval()
    report = PruneReport(job.model, job.ratio, str(job.out), result.macs_before, result.macs_after,
                         result.params_before, result.params_after, 0.0, 0.0, len(result.changed),
                         result.left_out, result.heads, kd=job.kd, ratio_of=job.ratio_of, scope=job.scope,
                         channel_ratio=result.channel_ratio, channels_removed=result.channels_removed,
                         target_macs=result.target_macs, schedule=_schedule(job),
                         sparse_losses=sparse.losses if sparse else [], finetune_losses=tuned.losses if tuned else [])
    # exporting verifies the pruned model on ONNX Runtime; OUT.pth is written only after that
    _measure(job, spec, meta, teacher if teacher is not None else _load(job)[0], model, report)
    extra = {"ratio": job.ratio, "ratio_of": job.ratio_of, "scope": job.scope, "left_out": result.left_out,
             "source_weights": str(job.weights)}
    save_pruned(model, job.out, job.model, kwargs, result.widths_before, extra)
    report.seconds = time.time() - t0
    _write_report(report, Path(job.out).with_suffix(".json"))
    return report


def _schedule(job: PruneJob) -> dict:
    keys = ("sparsity", "sparse_epochs", "epochs", "lr", "batch_size", "kd", "kd_alpha", "seed", "max_steps")
    return {k: getattr(job, k) for k in keys}


def _measure(job, spec, meta, original, pruned, report: PruneReport) -> None:
    log.info("exporting, timing and evaluating the original and the pruned model")
    with tempfile.TemporaryDirectory(prefix="edgepose-prune-") as tmp:
        before = _export(original, Path(tmp) / "before.onnx", spec)
        after = _export(pruned, Path(tmp) / "after.onnx", spec)
        lat = _latency(meta, {"before": before, "after": after}, job.latency_runs)
        report.latency_ms_before, report.latency_ms_after = lat["before"], lat["after"]
        if job.val:
            report.ap_before = _evaluate(job, spec, before)
            report.ap_after = _evaluate(job, spec, after)
            other = "pose" if spec.task == "ctdet" else "detector"
            report.notes.append(f"AP on {job.val} with the built-in default {other} (trained on synthetic people)")
        else:
            report.notes.append("no --val data: AP before/after not measured")


def _write_report(report: PruneReport, path: Path) -> None:
    from edgepose.io_utils import atomic_path

    data = asdict(report)
    for key in ("sparse_losses", "finetune_losses"):
        values = data[key]
        data[key] = {"first": values[:1], "last_mean": sum(values[-20:]) / max(1, len(values[-20:])),
                     "steps": len(values)}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2))
