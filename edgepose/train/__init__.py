"""Training on COCO-format data (synthetic people by default; real COCO works the same way).

    from edgepose.train import train_det, train_pose
    train_det("data/synth", "det.pth", arch="default_det", epochs=20)
    train_pose("data/synth", "pose.pth", arch="default_pose", epochs=20)

* :mod:`edgepose.train.coco_data` -- loading, augmentation, target generation (NumPy);
* :mod:`edgepose.train.losses` -- CenterNet focal + L1 losses, heatmap MSE;
* :mod:`edgepose.train.det` / :mod:`edgepose.train.pose` -- the two trainers.

Checkpoints are written atomically in the official wrappers (CenterNet ``{"epoch",
"state_dict"}``, AlphaPose bare state_dict) after every epoch; the optimizer state for
``--resume`` goes to a side file ``<out>.resume``.  This package imports torch only when a
trainer runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["train_det", "train_pose", "TrainResult", "fit"]


def train_det(*args, **kwargs):
    from edgepose.train.det import train_det as _impl

    return _impl(*args, **kwargs)


def train_pose(*args, **kwargs):
    from edgepose.train.pose import train_pose as _impl

    return _impl(*args, **kwargs)


@dataclass
class TrainResult:
    """What a training run did: ``losses`` per step, ``epochs`` completed, ``path`` of the weights."""

    path: Path | None
    epochs: int
    steps: int
    losses: list = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        tail = self.losses[-50:]
        last = sum(tail) / len(tail) if tail else float("nan")
        return (f"trained {self.epochs} epochs / {self.steps} steps in {self.seconds / 60:.1f} min; "
                f"final loss {last:.4f}; weights: {self.path}")


def lr_at(step: int, total: int, base_lr: float, warmup: int, final_ratio: float = 0.02) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``final_ratio * base_lr``."""
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    t = min(max(t, 0.0), 1.0)
    return base_lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def fit(model, dataset, step_loss, *, out=None, save=None, epochs=10, batch_size=16, lr=1e-3,
        weight_decay=1e-4, warmup=200, seed=0, resume=False, desc="train", progress=True,
        max_steps=None, threads=None, after_backward=None):
    """Generic loop: AdamW + warm-up/cosine, reproducible shuffling, a checkpoint per epoch.

    ``step_loss(model, batch) -> (loss, parts)`` computes the loss of one collated batch;
    ``save(model, path, epoch)`` writes the weights in their official wrapper.  ``threads``:
    torch intra-op threads for the run (restored afterwards); 1 is the fastest on a shared CPU.
    ``after_backward(model)``: called between ``backward()`` and the optimizer step (e.g. the
    network-slimming L1 sub-gradient on BatchNorm scales, :mod:`edgepose.train.prune`).
    """
    import torch

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _fit(model, dataset, step_loss, out, save, epochs, batch_size, lr, weight_decay, warmup, seed,
                    resume, desc, progress, max_steps, after_backward)
    finally:
        torch.set_num_threads(previous_threads)


def _resume(model, opt, out, side) -> tuple:
    """``(epoch, step)`` to continue from: weights from ``out`` and the optimizer state from
    its ``.resume`` side file when both exist, else ``(0, 0)``."""
    import torch

    if side is None or not side.is_file() or not Path(out).is_file():
        return 0, 0
    from edgepose.models.checkpoint import load_checkpoint

    load_checkpoint(model, out, strict=True)
    state = torch.load(str(side), map_location="cpu", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"]), int(state["step"])


def _train_epoch(model, dataset, step_loss, opt, bar, step, schedule, losses, after_backward=None) -> int:
    """One pass over the index batches of ``bar`` (stops at ``schedule[0]`` total steps);
    appends each loss to ``losses`` and returns the new step count.  ``after_backward(model)``
    runs between ``backward()`` and the optimizer step."""
    import torch

    from edgepose.train.coco_data import collate

    total, lr, warmup = schedule
    running = None
    for indices in bar:
        if step >= total:
            break
        batch = collate([dataset[i] for i in indices])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, lr, warmup)
        loss, parts = step_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(model)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        running = value if running is None else 0.95 * running + 0.05 * value
        step += 1
        bar.set_postfix(loss=f"{running:.4f}", **{k: f"{float(v):.3f}" for k, v in parts.items()})
    return step


def _fit(model, dataset, step_loss, out, save, epochs, batch_size, lr, weight_decay, warmup, seed, resume, desc,
         progress, max_steps, after_backward=None):
    import time

    import torch
    from tqdm import tqdm

    from edgepose.io_utils import atomic_torch_save

    if out is not None:
        from edgepose.outputs import check_writable

        check_writable(out, "--out")  # before the first epoch, not after it
    torch.manual_seed(seed)
    n = len(dataset)
    if n == 0:
        from edgepose.errors import UsageError

        raise UsageError("the training set is empty")
    batch_size = min(int(batch_size), n)
    per_epoch = max(1, n // batch_size)
    total = per_epoch * int(epochs)
    if max_steps is not None:
        total = min(total, int(max_steps))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    side = Path(str(out) + ".resume") if out is not None else None
    start_epoch, step = _resume(model, opt, out, side) if resume else (0, 0)
    losses = []
    t0 = time.time()
    model.train()
    epoch = start_epoch
    for epoch in range(start_epoch, int(epochs)):
        if step >= total:
            break
        if hasattr(dataset, "epoch"):
            dataset.epoch = epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(per_epoch)]
        bar = tqdm(batches, desc=f"{desc} {epoch + 1}/{epochs}", unit="it", disable=not progress,
                   dynamic_ncols=True, mininterval=2.0)
        schedule = (total, lr, min(warmup, total // 5))
        step = _train_epoch(model, dataset, step_loss, opt, bar, step, schedule, losses, after_backward)
        bar.close()
        if out is not None and save is not None:
            save(model, out, epoch + 1)
            atomic_torch_save({"epoch": epoch + 1, "step": step, "optimizer": opt.state_dict()}, side)
        if progress:
            tail = losses[-per_epoch:]
            tqdm.write(f"{desc}: epoch {epoch + 1}/{epochs} mean loss {sum(tail) / max(1, len(tail)):.4f} "
                       f"({(time.time() - t0) / 60:.1f} min)")
    model.eval()
    done = epoch + 1 if losses or start_epoch < int(epochs) else start_epoch
    return TrainResult(Path(out) if out is not None else None, done, step, losses, time.time() - t0)
