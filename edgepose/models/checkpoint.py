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
from edgepose.io_utils import atomic_torch_save

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
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; pass the .pth/.pkl file inside it "
                              "to --weights")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path passed to --weights")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise _unreadable(path, exc) from None
    return _unwrap(obj, path)


def _unreadable(path, exc) -> CheckpointError:
    """Tell pickled code (refused on purpose) from a file that is not a checkpoint at all."""
    text = str(exc)
    if "Unsupported global" in text:  # the weights-only unpickler met a class or function
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported global" in ln), "")[:160]
        return CheckpointError(
            f"refused to load {path}: it contains pickled Python objects, not just tensors ({detail}). "
            "edgepose never executes pickled code. Re-save it where you trust it: "
            "torch.save(model.state_dict(), 'clean.pth')")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"PK":
        kind = "a damaged or truncated torch.save archive"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a Python pickle that is not a tensor checkpoint (or a damaged one)"
    else:
        kind = "neither a torch.save archive nor a pickle (random or damaged bytes)"
    return CheckpointError(f"cannot read {path}: it is {kind}. Download or copy it again and compare its "
                           "size/SHA-256 with the source")


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


def guess_model(state_dict: dict, exact_only: bool = False) -> str | None:
    """Name of the zoo / official model whose layout ``state_dict`` has, if recognisable
    (``exact_only``: only an exact key/shape signature match, no key-fragment guess)."""
    from edgepose.models.signature import signature

    sig = signature(state_dict, "sorted_no_nbt")
    table = json.loads((Path(__file__).with_name("signatures.json")).read_text())
    for name, entry in table.items():
        if entry["sorted_no_nbt"] == sig:
            return f"{name} ({entry['official_name']})"
    if exact_only:
        return None
    keys = list(state_dict)
    for fragment, name in _FINGERPRINTS:
        if any(fragment in k for k in keys):
            return name
    return None


def _same_layout(own: dict, loaded: dict) -> bool:
    keys = {k for k in own if not k.endswith(_NBT)}
    if keys != {k for k in loaded if not k.endswith(_NBT)}:
        return False
    return all(tuple(own[k].shape) == tuple(loaded[k].shape) for k in keys)


def fitting_models(state_dict: dict, exclude=()) -> list:
    """Zoo models (with the ``num_classes`` the file's ``hm`` head implies) that ``state_dict``
    loads into strictly, as ``[(name, kwargs)]``.  Models are built on torch's meta device
    (no memory, no weights), so every candidate is actually checked, never guessed."""
    torch = _torch()
    from edgepose.models import create, get_spec, list_models

    keys = list(state_dict)
    hm = [k for k in keys if k.startswith("hm.") and k.endswith(".bias")]
    fits = []
    for name in list_models():
        spec = get_spec(name)
        if name in exclude or (name == "centernet_dla34" and not any("dla_up." in k for k in keys)):
            continue  # DLA is slow to build the first time; only tried when its layers are present
        kwargs = {}
        if spec.task == "ctdet" and hm and int(state_dict[hm[-1]].shape[0]) != spec.meta().num_classes:
            kwargs = {"num_classes": int(state_dict[hm[-1]].shape[0])}
        try:
            with torch.device("meta"):
                own = create(name, **kwargs).state_dict()
        except Exception:  # noqa: BLE001 -- a builder that cannot take these sizes does not fit
            continue
        if _same_layout(own, state_dict):
            fits.append((name, kwargs))
    return fits


def _fit_hint(loaded: dict) -> str:
    """Name only models the file really loads into; else an exact official-layout match."""
    fits = fitting_models(loaded)
    if fits:
        names = ", ".join(name + (f" with --num-classes {kw['num_classes']}" if kw else "") for name, kw in fits)
        return f" It loads into {names} (see `edgepose models`); pass that model instead."
    guess = guess_model(loaded, exact_only=True)
    if guess:
        return f" Its layout is the official {guess}, which no edgepose zoo model takes."
    return " No edgepose zoo model takes it; check that --weights is the checkpoint of this model (`edgepose models`)."


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
    buffers are tolerated); the error names the zoo models the file does load into, if any.
    ``strict=False`` (Python API only) loads what fits, like the official CenterNet loader,
    and reports the rest in the returned summary.
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
        spec = getattr(model, "edgepose_spec", None)
        target = spec.name if spec is not None else type(model).__name__
        hint = _pruned_hint(path) or _fit_hint(loaded)
        raise CheckpointError(f"{path} does not fit {target}: " + "; ".join(parts) + "." + hint)
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
    _torch()  # a clear DependencyError when torch is missing
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
    return atomic_torch_save(obj, path)
