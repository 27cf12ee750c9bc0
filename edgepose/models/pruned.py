"""Pruned checkpoints: a zoo model with narrower layers, stored so it can be rebuilt.

File format (written by ``edgepose prune``, read with ``torch.load(weights_only=True)``)::

    {"state_dict": {...},                       # the pruned weights, zoo key names
     "edgepose_pruned": {"version": 1,
                         "model": "default_pose",          # zoo name
                         "model_kwargs": {"num_joints": 17},
                         "widths": {"preact.conv1": [3, 16], ...},  # path -> [in, out]
                         "left_out": {...}, "ratio": 0.5}}   # provenance only

``widths`` lists every Conv2d / ConvTranspose2d / Linear / BatchNorm2d whose channel counts
differ from the zoo model (``[in_channels, out_channels]``; BatchNorm ``[n, n]``).
:func:`rebuild_pruned` creates the zoo model and replaces exactly those layers, so the
state_dict then loads strictly.  Loading such a file into the unpruned model fails with the
usual :class:`~edgepose.errors.CheckpointError` listing wrong-shaped keys.
"""
from __future__ import annotations

from pathlib import Path

from edgepose.errors import CheckpointError

PRUNED_KEY = "edgepose_pruned"
FORMAT_VERSION = 1

__all__ = ["PRUNED_KEY", "layer_widths", "changed_widths", "save_pruned", "read_pruned_info", "rebuild_pruned",
           "create_with_weights"]


def _torch():
    from edgepose._deps import require

    return require("torch")


def _layer_types():
    nn = _torch().nn
    return (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d)


def _in_out(module) -> list:
    nn = _torch().nn
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return [int(module.in_channels), int(module.out_channels)]
    if isinstance(module, nn.Linear):
        return [int(module.in_features), int(module.out_features)]
    return [int(module.num_features), int(module.num_features)]


def layer_widths(model) -> dict:
    """``{module_path: [in, out]}`` of every Conv2d / ConvTranspose2d / Linear / BatchNorm2d."""
    types = _layer_types()
    return {name: _in_out(m) for name, m in model.named_modules() if isinstance(m, types)}


def changed_widths(model, reference) -> dict:
    """The entries of ``layer_widths(model)`` that differ from ``reference`` (a model or a widths dict)."""
    ref = reference if isinstance(reference, dict) else layer_widths(reference)
    return {name: w for name, w in layer_widths(model).items() if ref.get(name) != w}


def save_pruned(model, path, name: str, model_kwargs: dict, reference_widths: dict, extra: dict | None = None):
    """Write ``model`` (pruned zoo model ``name``) in the pruned format, atomically."""
    from edgepose.io_utils import atomic_path

    torch = _torch()
    info = {"version": FORMAT_VERSION, "model": str(name), "model_kwargs": dict(model_kwargs),
            "widths": changed_widths(model, reference_widths), **(extra or {})}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, PRUNED_KEY: info}, str(tmp))
    return Path(path)


def read_pruned_info(path) -> dict | None:
    """The ``edgepose_pruned`` block of checkpoint ``path``, or None for an ordinary checkpoint."""
    torch = _torch()
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # unreadable files are reported by read_state_dict with their own message
        return None
    if isinstance(obj, dict) and isinstance(obj.get(PRUNED_KEY), dict):
        return obj[PRUNED_KEY]
    return None


def _narrowed(module, in_ch: int, out_ch: int):
    nn = _torch().nn
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        if module.groups != 1:
            raise CheckpointError(f"cannot rebuild grouped convolution {module} with new widths")
        kw = dict(kernel_size=module.kernel_size, stride=module.stride, padding=module.padding,
                  dilation=module.dilation, bias=module.bias is not None)
        if isinstance(module, nn.ConvTranspose2d):
            return nn.ConvTranspose2d(in_ch, out_ch, output_padding=module.output_padding, **kw)
        return nn.Conv2d(in_ch, out_ch, padding_mode=module.padding_mode, **kw)
    if isinstance(module, nn.Linear):
        return nn.Linear(in_ch, out_ch, bias=module.bias is not None)
    return nn.BatchNorm2d(out_ch, eps=module.eps, momentum=module.momentum, affine=module.affine,
                          track_running_stats=module.track_running_stats)


def rebuild_pruned(name: str, widths: dict, model_kwargs: dict | None = None):
    """Zoo model ``name`` with the layers in ``widths`` (path -> [in, out]) replaced by narrower ones."""
    from edgepose.models import create

    model = create(name, **(model_kwargs or {}))
    modules = dict(model.named_modules())
    for path, (in_ch, out_ch) in widths.items():
        layer = modules.get(path)
        if layer is None or not isinstance(layer, _layer_types()):
            raise CheckpointError(f"pruned checkpoint names layer {path!r}, which {name} does not have as a "
                                  "conv/linear/batch-norm layer; was it pruned from another model?")
        parent_path, _, child = path.rpartition(".")
        parent = modules[parent_path] if parent_path else model
        parent._modules[child] = _narrowed(layer, int(in_ch), int(out_ch))
    return model


def create_with_weights(name: str, weights, model_kwargs: dict | None = None):
    """Zoo model ``name`` with ``weights`` loaded strictly; a pruned file rebuilds the narrower model."""
    from edgepose.models import create
    from edgepose.models.checkpoint import load_checkpoint

    info = read_pruned_info(weights) if weights not in (None, "random") else None
    if info is None:
        model = create(name, **(model_kwargs or {}))
        if weights not in (None, "random"):
            load_checkpoint(model, weights, strict=True)
        return model
    if info.get("model") != name:
        raise CheckpointError(f"{weights} is a pruned {info.get('model')} checkpoint, not {name}; "
                              f"pass {info.get('model')} as the model name")
    kwargs = {**info.get("model_kwargs", {}), **(model_kwargs or {})}
    model = rebuild_pruned(name, info.get("widths", {}), kwargs)
    load_checkpoint(model, weights, strict=True)
    model.edgepose_pruned = info
    return model
