"""CenterNet (ctdet) training, person class only by default.

Targets (:class:`edgepose.train.coco_data.DetDataset`): gaussian centre heatmaps with
CenterNet's radius rule (min overlap 0.7), ``wh`` and sub-pixel ``reg`` at the centre index.
Loss (:func:`edgepose.train.losses.ctdet_loss`): focal + 0.1 * L1(wh) + 1 * L1(reg).
Checkpoints: the official CenterNet wrapper ``{"epoch", "state_dict"}``, written atomically.
"""
from __future__ import annotations

from edgepose.errors import UsageError
from edgepose.tasks import task_spec

__all__ = ["train_det", "build_det", "det_step_loss", "det_batch_to_torch"]


def parse_size(value, default):
    """``"256x192"`` / ``(256, 192)`` / ``256`` -> ``(H, W)``."""
    if value is None:
        return tuple(int(v) for v in default)
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts if p.strip()]
        except ValueError:
            raise UsageError(f"input size must look like 256x256 (HxW), got {value!r}") from None
    elif isinstance(value, int):
        nums = [value]
    else:
        nums = [int(v) for v in value]
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 32 or max(nums) > 4096 or any(v % 32 for v in nums):
        raise UsageError(f"input size must be HxW with both sides multiples of 32 from 32 to 4096, got {value!r}")
    return tuple(nums)


def build_det(arch="default_det", num_classes=1, input_size=None):
    """``(model, meta)`` for a zoo CenterNet ``arch`` with ``num_classes`` classes."""
    return build_zoo_model(arch, "det", num_classes, input_size, "a CenterNet (ctdet) model such as default_det "
                           "or centernet_res18")


def build_zoo_model(arch, trainer: str, count: int, input_size, examples: str):
    """``(model, meta)`` of zoo ``arch`` for ``edgepose train <trainer>`` with ``count``
    classes or joints (the task table says which); UsageError naming ``examples`` when
    ``arch`` is not trained by that command."""
    from edgepose.models import create, get_spec

    spec = get_spec(arch)
    if task_spec(spec.task).trainer != trainer:
        raise UsageError(f"{arch} is a {spec.task} model; `train {trainer}` needs {examples}")
    count_field = task_spec(spec.task).count_field
    size = parse_size(input_size, spec.input_size)
    model = create(arch, **{count_field: count})
    return model, spec.meta(**{count_field: count}, input_size=size)


def det_batch_to_torch(batch):
    import torch

    inp, targets = batch
    out = {k: torch.from_numpy(v) for k, v in targets.items() if k != "flipped"}
    out["input"] = torch.from_numpy(inp)
    return out


def det_step_loss(model, batch):
    """Loss of one collated batch ``(inputs, targets)`` (NumPy) -> ``(loss, parts)``."""
    from edgepose.train.losses import ctdet_loss

    tb = det_batch_to_torch(batch)
    outputs = model(tb["input"])
    return ctdet_loss(outputs, tb)


def train_det(data, out, *, arch="default_det", epochs=20, batch_size=16, lr=1e-3, input_size=None, seed=0,
              resume=False, num_classes=1, threads=None, progress=True, max_steps=None, warmup=200,
              ann_file=None, image_dir=None):
    """Train zoo detector ``arch`` on the COCO-format folder ``data``; weights to ``out``.

    Returns a :class:`edgepose.train.TrainResult`.
    """
    import torch

    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople, DetDataset

    torch.manual_seed(seed)
    model, meta = build_det(arch, num_classes, input_size)
    coco = CocoPeople(data, ann_file=ann_file, image_dir=image_dir)
    dataset = DetDataset(coco, meta, augment=True, seed=seed)

    def save(m, path, epoch):
        save_checkpoint(m, path, fmt="centernet", epoch=epoch)

    return fit(model, dataset, det_step_loss, out=out, save=save, epochs=epochs, batch_size=batch_size, lr=lr,
               seed=seed, resume=resume, desc="det", progress=progress, max_steps=max_steps, threads=threads,
               warmup=warmup)
