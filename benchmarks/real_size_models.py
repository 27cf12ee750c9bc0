"""Zoo architectures at their real sizes with RANDOM weights that behave like trained ones.

No trained checkpoints can be downloaded where edgepose is developed, so the INT8 speed and
quality benchmarks use the real architectures (centernet_res18 at 512x512, fastpose_res50 at
256x192, ...) with random weights, made realistic in two steps:

1. **BatchNorm statistics re-estimated** on a few synthetic people images (the runtime's own
   normalisation): every BN sees activations of real-looking images, so the activation
   distributions (and hence the INT8 ranges) look like a trained network's, not like the
   exploding/vanishing activations of raw random init;
2. **heads rescaled** so they give person peaks: the CenterNet heatmap logits of the person
   class get a spread of a few units around -4 (a few peaks above 0.3), the other classes'
   around -7 (per class, so the person class is the one that finds things), box sizes of tens of output pixels and
   offsets in [0, 1); the pose heatmaps get values in a trained model's range (std ~0.1).

The weights are random: these models find "people" only in the sense that their outputs have
the shapes and ranges of real detections.  Use them for latency, never for accuracy claims; their
INT8-vs-FP32 agreement says little too: they are chaotic (FP32 against itself on frames with
0.5 grey levels of noise: box AP 0.23-0.69, keypoint AP ~0; calib/README.md, "Agreement by
method: zoo models at real size").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _images(count: int, size, seed: int) -> np.ndarray:
    """``count`` synthetic people scenes at ``size`` (H, W), normalised like the runtime (NCHW)."""
    from edgepose.data.synthetic import scene_with_people

    mean = np.array([0.408, 0.447, 0.470], np.float32) * 255
    std = np.array([0.289, 0.274, 0.278], np.float32) * 255
    batch = []
    for i in range(count):
        image = scene_with_people(seed + i, 1 + i % 4, image_size=tuple(size))[0]
        batch.append(((image.astype(np.float32) - mean) / std).transpose(2, 0, 1))
    return np.stack(batch)


def _reestimate_batchnorm(model, images: np.ndarray):
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the images
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), 4):
            model(torch.from_numpy(images[start:start + 4]))
    return model.eval()


def _rescale_last(conv, out: "torch.Tensor", std, mean):
    """Scale ``conv`` (the head's last layer) so its output has ``std`` and ``mean``: one number
    for the whole tensor, or a tensor of one per output channel (statistics per channel)."""
    import torch

    with torch.no_grad():
        if torch.is_tensor(std):  # per output channel
            dims = (0, 2, 3)
            factor = std / out.std(dim=dims).clamp_min(1e-6)
            conv.weight.mul_(factor.view(-1, *([1] * (conv.weight.dim() - 1))))
            conv.bias.mul_(factor).add_(mean - out.mean(dim=dims) * factor)
            return
        factor = std / max(float(out.std()), 1e-6)
        conv.weight.mul_(factor)
        if conv.bias is not None:
            conv.bias.mul_(factor)
            conv.bias.add_(mean - float(out.mean()) * factor)


def _heatmap_targets(channels: int, person_class: int = 0):
    """Per-class (std, mean) of the CenterNet heatmap logits: the person class peaks (a spread
    of 1.5 around -4, so a few positions score above 0.3), the other classes sit lower (around
    -7).  Rescaled as one tensor, a few random classes took every top-K slot (scores ~1.0) and
    the person class none, so the pipeline found nobody."""
    import torch

    std = torch.full((channels,), 1.5)
    mean = torch.full((channels,), -7.0)
    mean[person_class] = -4.0
    return std, mean


def _rescale_heads(model, task: str, images: np.ndarray):
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(images[:4]))
    if task == "ctdet":
        targets = {"hm": _heatmap_targets(out["hm"].shape[1]), "wh": (6.0, 24.0), "reg": (0.15, 0.5)}
        for head, (std, mean) in targets.items():
            _rescale_last(getattr(model, head)[-1], out[head], std, mean)
    else:
        layer = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        _rescale_last(layer, next(iter(out.values())), 0.1, 0.02)
    return model


def realistic_random_model(name: str, images: int = 8, seed: int = 0):
    """Zoo model ``name`` with random weights, BN re-estimated and heads rescaled (see module doc)."""
    import torch

    from edgepose.models import create, get_spec

    torch.manual_seed(seed)
    model = create(name)
    spec = get_spec(name)
    batch = _images(images, spec.input_size, seed=seed + 100)
    _reestimate_batchnorm(model, batch)
    return _rescale_heads(model, spec.task, batch)


def export_realistic(name: str, out_path, batch: int = 1, images: int = 8, seed: int = 0) -> Path:
    """Export :func:`realistic_random_model` to ``out_path`` (kept when it already exists)."""
    from edgepose.export import torch2onnx

    out_path = Path(out_path)
    if not out_path.is_file():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        torch2onnx(realistic_random_model(name, images=images, seed=seed), out_path, batch=batch)
    return out_path


def sample_inputs(name: str, count: int, seed: int = 500) -> np.ndarray:
    """Real-looking inputs for ``name`` at its input size (for calibration and timing)."""
    from edgepose.models import get_spec

    return _images(count, get_spec(name).input_size, seed)
