"""Read and write checkpoints in the official wrappers, never executing pickled code.

Formats (see shared/reference/README.md, "Checkpoint wrapping"):

* CenterNet ``*.pth``: ``{"epoch": int, "state_dict": {...}[, "optimizer": ...]}``, no prefix.
* AlphaPose ``*.pth``: a bare state_dict.
* CornerNet-Lite ``*.pkl``: a bare state_dict whose keys all start with ``module.``.

:func:`load_checkpoint` accepts all three, strips a ``module.`` prefix (not ``module_list``),
tolerates missing ``num_batches_tracked`` buffers, and on any other mismatch raises a
:class:`CheckpointError` listing missing / unexpected / wrong-shaped keys and, when it can
tell, which model the file looks like.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

from edgepose.errors import CheckpointError
from edgepose.io_utils import atomic_path

_SHOW = 5  # keys listed per category in error messages
_NBT = "num_batches_tracked"

# key fragments that identify an architecture, most specific first
_FINGERPRINTS = (
    ("tl_modules.", "cornernet_squeeze (CornerNet-Lite)"),
    ("hps.", "CenterNet multi_pose (not in the edgepose zoo)"),
    ("base.dla_up.", "centernet_dla34"),
    ("dla_up.", "centernet_dla34"),
    ("deconv_layers.0.conv_offset_mask.", "centernet_resdcn18"),
    ("duc1.", "fastpose_res50 (AlphaPose FastPose)"),
    ("final_layer.", "simplepose_res50 (AlphaPose SimplePose)"),
    ("deconv_layers.", "centernet_res18"),
)


def _torch():
    from edgepose._deps import require

    return require("torch")


def read_state_dict(path) -> dict:
    """Return the (unprefixed) state_dict stored in ``path``, whatever the wrapper."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path passed to --weights")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects, not just tensors "
            f"({str(exc).splitlines()[0][:160]}). edgepose never executes pickled code. Re-save it "
            "where you trust it: torch.save(model.state_dict(), 'clean.pth')") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {path}: the file is truncated or not a PyTorch checkpoint ({exc}). "
            "Download or copy it again and compare its size/SHA-256 with the source") from None
    return _unwrap(obj, path)


def _unwrap(obj, path) -> dict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state_dict (found {type(obj).__name__}); "
                              "expected a CenterNet {'epoch','state_dict'} dict or a bare state_dict")
    tensors = {}
    for key, value in obj.items():
        if not hasattr(value, "shape"):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                                  "is this a training-state file? pass the model weights file")
        if key.startswith("module") and not key.startswith("module_list"):
            key = key[7:]
        tensors[key] = value
    return tensors


def guess_model(state_dict: dict) -> str | None:
    """Name of the zoo / official model whose layout ``state_dict`` has, if recognisable."""
    from edgepose.models.signature import signature

    sig = signature(state_dict, "sorted_no_nbt")
    table = json.loads((Path(__file__).with_name("signatures.json")).read_text())
    for name, entry in table.items():
        if entry["sorted_no_nbt"] == sig:
            return f"{name} ({entry['official_name']})"
    keys = list(state_dict)
    for fragment, name in _FINGERPRINTS:
        if any(fragment in k for k in keys):
            return name
    return None


def _listing(title, keys, describe=str):
    shown = ", ".join(describe(k) for k in keys[:_SHOW])
    more = f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return f"{len(keys)} {title}: {shown}{more}"


def _pruned_hint(path) -> str:
    from edgepose.models.pruned import read_pruned_info

    info = read_pruned_info(path)
    if info is None:
        return ""
    return (f" It is a pruned {info.get('model')} checkpoint (edgepose prune) with narrower layers:"
            " `edgepose export`/`run --backend torch` rebuild it, in Python use"
            " edgepose.models.pruned.create_with_weights.")


def load_checkpoint(model, path, strict: bool = True) -> dict:
    """Load an official checkpoint into ``model``; returns a summary dict.

    ``strict=True`` requires every key and shape to match (missing ``num_batches_tracked``
    buffers are tolerated).  ``strict=False`` loads what fits, like the official CenterNet
    loader, and reports the rest in the returned summary.
    """
    loaded = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in loaded and not k.endswith(_NBT)]
    unexpected = [k for k in loaded if k not in own]
    wrong = [k for k in loaded if k in own and tuple(loaded[k].shape) != tuple(own[k].shape)]
    if strict and (missing or unexpected or wrong):
        parts = []
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if wrong:
            parts.append(_listing("wrong-shaped keys", wrong,
                                  lambda k: f"{k} file {tuple(loaded[k].shape)} vs model {tuple(own[k].shape)}"))
        guess = guess_model(loaded)
        spec = getattr(model, "edgepose_spec", None)
        target = spec.name if spec is not None else type(model).__name__
        hint = f" The file looks like {guess}." if guess else ""
        hint += _pruned_hint(path)
        raise CheckpointError(
            f"{path} does not fit {target}: " + "; ".join(parts) + "." + hint +
            " Pick the matching model (edgepose models) or the right --num-classes, or pass strict=False")
    usable = {k: v for k, v in loaded.items() if k in own and k not in wrong}
    for key, value in own.items():  # tolerate absent BN counters
        if key not in usable and key.endswith(_NBT):
            usable[key] = value
    result = model.load_state_dict(usable, strict=strict)
    return {"path": str(path), "loaded": len(usable), "missing": missing, "unexpected": unexpected,
            "wrong_shape": wrong, "result": result}


def save_checkpoint(model_or_state_dict, path, fmt: str = "centernet", epoch: int = 0, optimizer=None):
    """Save in an official wrapper: ``centernet`` ({epoch, state_dict[, optimizer]}),
    ``alphapose`` (bare state_dict) or ``cornernet`` (bare, keys prefixed ``module.``)."""
    torch = _torch()
    state = model_or_state_dict.state_dict() if hasattr(model_or_state_dict, "state_dict") else model_or_state_dict
    state = {k: v.detach().cpu() for k, v in state.items()}
    if fmt == "centernet":
        obj = {"epoch": int(epoch), "state_dict": state}
        if optimizer is not None:
            obj["optimizer"] = optimizer.state_dict()
    elif fmt == "alphapose":
        obj = state
    elif fmt == "cornernet":
        obj = {f"module.{k}": v for k, v in state.items()}
    else:
        raise CheckpointError(f"unknown checkpoint format {fmt!r}; use centernet, alphapose or cornernet")
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))
    return Path(path)
