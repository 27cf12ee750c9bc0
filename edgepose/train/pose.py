"""Top-down SPPE training (AlphaPose SimplePose / FastPose and the default pose model).

Samples (:class:`edgepose.train.coco_data.PoseDataset`): crops around jittered ground-truth
boxes through the runtime's crop geometry (aspect W/H, x1.25) with scale/rotation/flip
augmentation, RGB minus the AlphaPose mean; gaussian joint heatmaps at stride 4 with target
weights from visibility.  Loss: heatmap MSE.  Checkpoints: AlphaPose's bare state_dict.
"""
from __future__ import annotations

from edgepose.errors import UsageError

__all__ = ["train_pose", "build_pose", "pose_step_loss"]


def build_pose(arch="default_pose", num_joints=17, input_size=None):
    """``(model, meta)`` for a zoo SPPE ``arch``."""
    from edgepose.train.det import build_zoo_model

    return build_zoo_model(arch, "pose", num_joints, input_size, "a pose (sppe) model such as default_pose, "
                           "simplepose_res50 or fastpose_res50")


def pose_step_loss(model, batch):
    """Loss of one collated batch ``(inputs, heatmaps, weights)`` (NumPy) -> ``(loss, parts)``."""
    import torch

    from edgepose.train.losses import heatmap_mse_loss

    inp, target, weight = (torch.from_numpy(a) for a in batch)
    pred = model(inp)["heatmaps"]
    if pred.shape != target.shape:
        raise UsageError(f"model heatmaps {tuple(pred.shape)} do not match targets {tuple(target.shape)}; "
                         "the input size must be 4x the heatmap size")
    loss = heatmap_mse_loss(pred, target, weight)
    return loss, {}


def train_pose(data, out, *, arch="default_pose", epochs=20, batch_size=32, lr=1e-3, input_size=None, seed=0,
               resume=False, num_joints=17, sigma=None, threads=None, progress=True, max_steps=None, warmup=200,
               ann_file=None, image_dir=None):
    """Train zoo pose model ``arch`` on the COCO-format folder ``data``; weights to ``out``.

    Returns a :class:`edgepose.train.TrainResult`.
    """
    import torch

    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople, PoseDataset

    torch.manual_seed(seed)
    model, meta = build_pose(arch, num_joints, input_size)
    coco = CocoPeople(data, ann_file=ann_file, image_dir=image_dir)
    dataset = PoseDataset(coco, meta, augment=True, seed=seed, sigma=sigma)

    def save(m, path, epoch):
        save_checkpoint(m, path, fmt="alphapose", epoch=epoch)

    return fit(model, dataset, pose_step_loss, out=out, save=save, epochs=epochs, batch_size=batch_size, lr=lr,
               seed=seed, resume=resume, desc="pose", progress=progress, max_steps=max_steps, threads=threads,
               warmup=warmup)
