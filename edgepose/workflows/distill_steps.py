"""The steps of `edgepose distill` (see :mod:`edgepose.workflows.distill` for the flow).

Students are zoo CenterNet / SimplePose models (the built-in architectures by default,
initialised from their shipped weights, which were trained on synthetic people), trained
with the existing trainers' losses through :func:`edgepose.train.fit`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from edgepose.errors import SourceError, UsageError

log = logging.getLogger("edgepose")

BUILTIN = ("default_det", "default_pose")


def write_json(path, obj):
    from edgepose.io_utils import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1))


def _init_student(model, arch, init):
    if init == "random":
        return "random"
    if arch not in BUILTIN:
        raise UsageError(f"built-in weights exist only for {' and '.join(BUILTIN)}, not {arch}; "
                         "pass --init random to train it from scratch")
    from edgepose.models.checkpoint import load_checkpoint
    from edgepose.models.defaults import default_weights

    load_checkpoint(model, default_weights(arch), strict=True)
    return "built-in weights (trained on synthetic people)"


def train_student_det(cfg, ann_file, input_size, out_pth):
    """Fine-tune the student detector on the pseudo-labels; returns ``(model, meta, info)``."""
    import torch

    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople, DetDataset
    from edgepose.train.det import build_det, det_step_loss

    torch.manual_seed(cfg.seed)
    model, meta = build_det(cfg.student_det, 1, input_size)
    init = _init_student(model, cfg.student_det, cfg.init)
    dataset = DetDataset(CocoPeople(ann_file=ann_file), meta, augment=True, seed=cfg.seed)
    result = fit(model, dataset, det_step_loss, out=out_pth, epochs=cfg.det_epochs, batch_size=cfg.det_batch,
                 lr=cfg.lr, seed=cfg.seed, resume=cfg.resume, desc="student det", progress=cfg.progress,
                 threads=cfg.threads, warmup=50, max_steps=cfg.max_steps,
                 save=lambda m, p, e: save_checkpoint(m, p, fmt="centernet", epoch=e))
    return model, meta, _train_info(cfg.student_det, input_size, init, result)


def train_student_pose(cfg, ann_file, input_size, out_pth, teacher_runner=None):
    """Fine-tune the student SPPE with the FPD loss; ``teacher_runner`` None: labels only."""
    import torch

    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople
    from edgepose.train.distill_loss import DistillPoseDataset, TeacherHeatmaps, make_fpd_step_loss
    from edgepose.train.pose import build_pose

    torch.manual_seed(cfg.seed)
    model, meta = build_pose(cfg.student_pose, 17, input_size)
    init = _init_student(model, cfg.student_pose, cfg.init)
    alpha = cfg.alpha if teacher_runner is not None else 0.0
    teacher = TeacherHeatmaps(teacher_runner) if alpha > 0 else None
    dataset = DistillPoseDataset(CocoPeople(ann_file=ann_file), meta, teacher=teacher, augment=True, seed=cfg.seed)
    result = fit(model, dataset, make_fpd_step_loss(alpha), out=out_pth, epochs=cfg.pose_epochs,
                 batch_size=cfg.pose_batch, lr=cfg.lr, seed=cfg.seed, resume=cfg.resume, desc="student pose",
                 progress=cfg.progress, threads=cfg.threads, warmup=50, max_steps=cfg.max_steps,
                 save=lambda m, p, e: save_checkpoint(m, p, fmt="alphapose", epoch=e))
    info = _train_info(cfg.student_pose, input_size, init, result)
    info["distill_alpha"] = alpha
    info["loss"] = "(1-a)*MSE(student, label heatmap) + a*MSE(student, teacher heatmap)" if alpha else \
        "MSE(student, label heatmap) (no teacher heatmaps: labels came from a file)"
    return model, meta, info


def _train_info(arch, input_size, init, result):
    """What the report says about one student; kept beside the weights so a resumed run whose
    training had already finished still reports its losses."""
    side = Path(str(result.path) + ".train.json")
    losses = result.losses
    if not losses and side.is_file():
        return json.loads(side.read_text())
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10):]
    info = {"arch": arch, "input_size": list(input_size), "init": init, "epochs": result.epochs,
            "steps": result.steps, "first_loss": float(np.mean(head)) if losses else None,
            "final_loss": float(np.mean(tail)) if losses else None, "train_seconds": round(result.seconds, 1)}
    write_json(side, info)
    return info


def export_student(model, meta, out_onnx, batch):
    """ONNX with edgepose metadata (verified against torch by the exporter)."""
    from edgepose.export import torch2onnx

    torch2onnx(model, out_onnx, input_size=tuple(meta.input_size), batch=batch, meta=meta)


def _timed(pipe, frames):
    """Per-frame wall-clock ms (first two frames are warm-up and not counted) and results."""
    times, results = [], []
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        res = pipe(frame)
        if i >= 2 or len(frames) <= 2:
            times.append((time.perf_counter() - t0) * 1e3)
        results.append(res)
    return times, results


def latency_block(times_ms) -> dict:
    arr = np.asarray(times_ms, np.float64)
    mean = float(arr.mean())
    return {"frames": int(arr.size), "mean_ms": round(mean, 2), "p50_ms": round(float(np.median(arr)), 2),
            "p90_ms": round(float(np.percentile(arr, 90)), 2), "fps": round(1000.0 / mean, 1)}


def measure(student, teacher, val_doc, bench_frames, progress=True):
    """Student results on every validation frame; ORT latency of student and teacher on the
    same first ``bench_frames`` frames in this run.  Returns ``(results, latency)``."""
    import cv2
    from tqdm import tqdm

    frames, ids = [], []
    for img in tqdm(val_doc["images"], desc="validation frames", unit="frame", disable=not progress,
                    mininterval=2.0):
        frame = cv2.imread(img["file_name"], cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read validation image {img['file_name']}")
        frames.append(frame)
        ids.append(img["id"])
    s_times, s_results = _timed(student, frames)
    results = [r for image_id, res in zip(ids, s_results) for r in res.to_coco(image_id)]
    n = min(len(frames), int(bench_frames))
    latency = {"student": latency_block(s_times)}
    if teacher is not None:
        t_times, _ = _timed(teacher, frames[:n])
        s_again, _ = _timed(student, frames[:n])  # interleaved with the teacher: same machine state
        latency["teacher"] = latency_block(t_times)
        latency["student"] = latency_block(s_again)
        latency["speedup"] = round(latency["teacher"]["mean_ms"] / latency["student"]["mean_ms"], 2)
    return results, latency


def costs(det_model, det_meta, pose_model, pose_meta, teacher_files=None) -> dict:
    """Parameters and GFLOPs of the students; the teacher's parameters (ONNX initializers)."""
    from edgepose.eval.agreement import onnx_params, torch_cost

    out = {"student_det": torch_cost(det_model, det_meta.input_size),
           "student_pose": torch_cost(pose_model, pose_meta.input_size),
           "gflops_convention": "torch FlopCounterMode: 1 multiply-add = 2 FLOPs, batch 1"}
    for role, path in (teacher_files or {}).items():
        if str(path).endswith(".onnx") and Path(path).is_file():
            out[f"teacher_{role}"] = {"params": onnx_params(path)}
    return out
