"""Pick a backend for a model file or zoo name.

* ``*.engine`` -> TensorRT (``edgepose.backends.trt.runner``); when TensorRT cannot be used on
  this machine and ``backend="auto"``, the sibling ``*.onnx`` runs on ONNX Runtime instead,
  with a one-line warning naming the backend that runs.
* ``*.onnx``   -> ONNX Runtime.
* zoo name, ``*.pth``/``*.pkl`` or ``name:weights.pth`` -> PyTorch (reference; needs torch).

``meta_overrides`` (input_size, mean, std, scale, channel_order, ...) replace fields of the
embedded metadata, or build one for an ONNX file exported without edgepose metadata.
"""
from __future__ import annotations

import logging
from pathlib import Path

from edgepose.errors import DependencyError, MetadataError, UsageError

log = logging.getLogger("edgepose")

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
_TORCH_SUFFIXES = (".pth", ".pkl", ".pt")
_ORT_ONLY = ("threads", "providers", "disable_cse")


def _is_zoo_name(text: str) -> bool:
    try:
        from edgepose.models import list_models
    except ImportError:
        return False
    return text in list_models()


def _split_torch_spec(text: str):
    """``name``, ``name:weights.pth`` or ``weights.pth`` (needs model=...) -> (name, weights)."""
    if ":" in text:
        name, weights = text.split(":", 1)
        if _is_zoo_name(name):
            return name, weights
    if _is_zoo_name(text):
        return text, None
    return None, text


def load_runner(path_or_model, backend: str = "auto", meta_overrides: dict | None = None,
                model: str | None = None, **kw):
    """Return a :class:`~edgepose.backends.base.Runner` for ``path_or_model``.

    ``kw`` go to the runner (ORT: providers, threads, disable_cse; TensorRT: its options).
    ``model``: zoo name for a bare ``.pth`` checkpoint with ``backend="torch"``.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(path_or_model, (str, Path)):  # an nn.Module
        from edgepose.backends.torch_runner import TorchRunner

        return _with_overrides(TorchRunner(path_or_model, meta=kw.pop("meta", None)), meta_overrides)

    text = str(path_or_model)
    suffix = Path(text).suffix.lower()

    if backend == "torch" or (backend == "auto" and (suffix in _TORCH_SUFFIXES or _split_torch_spec(text)[0])):
        return _with_overrides(_torch_runner(text, suffix, model, kw.pop("meta", None)), meta_overrides)

    if suffix in (".engine", ".plan"):
        if backend in ("auto", "tensorrt"):
            try:
                from edgepose.backends.trt.runner import TensorRTRunner

                trt_kw = {k: v for k, v in kw.items() if k not in _ORT_ONLY}
                return _with_overrides(TensorRTRunner(text, **trt_kw), meta_overrides)
            except (ImportError, DependencyError) as exc:
                if backend == "tensorrt":
                    if isinstance(exc, DependencyError):
                        raise
                    raise DependencyError(f"the TensorRT backend is not available ({exc}); "
                                          "install edgepose[trt] or use --backend onnxruntime") from None
                reason = str(exc).split(". ")[0]
        else:
            reason = "--backend onnxruntime was asked for"
        onnx_path = Path(text).with_suffix(".onnx")
        if not onnx_path.is_file():
            raise DependencyError(f"cannot run {text}: {reason}; and there is no {onnx_path.name} beside it "
                                  "to run on ONNX Runtime. Install TensorRT or pass the .onnx file")
        log.warning("edgepose: warning: TensorRT cannot run here (%s); running %s on ONNX Runtime", reason, onnx_path)
        text, suffix = str(onnx_path), ".onnx"

    if backend == "tensorrt":
        raise UsageError(f"{text}: the tensorrt backend needs a .engine file; build one with `edgepose build`")
    if suffix != ".onnx":
        raise UsageError(f"{text}: unknown model kind; pass a .onnx or .engine file, a zoo name, "
                         "or name:weights.pth with --backend torch")
    from edgepose.backends.onnxruntime import ORTRunner

    ort_kw = {k: kw[k] for k in ("providers", "threads", "disable_cse", "meta") if k in kw}
    return _with_overrides(ORTRunner(text, **ort_kw), meta_overrides)


def _torch_runner(text, suffix, model, meta):
    if suffix in (".onnx", ".engine", ".plan"):
        raise UsageError(f"{text}: the torch backend runs zoo models (name or name:weights.pth), "
                         "not ONNX/engine files; use --backend onnxruntime or tensorrt")
    from edgepose.backends.torch_runner import TorchRunner

    name, weights = _split_torch_spec(text)
    name = name or model
    if name is None:
        raise UsageError(f"{text}: say which zoo model the checkpoint is for, e.g. centernet_res18:{text}")
    return TorchRunner(name, weights=weights, meta=meta)


# ---------------------------------------------------------------- metadata for bare ONNX files
def guess_meta(runner, **overrides):
    """Build a ModelMeta for a model without edgepose metadata from its output names/shapes
    plus ``overrides`` (input_size, mean, std, ...).  ``input_size`` is required unless the
    input shape is static."""
    from edgepose.metadata import ModelMeta
    from edgepose.tasks import bare_meta_fields, guess_task

    names = [o.name for o in runner.outputs]
    spec_in = runner.inputs[0]
    guessed = guess_task(names)
    if guessed is None:
        raise MetadataError(f"{runner.name}: cannot tell the model kind from outputs {names}; re-export it "
                            "with `edgepose export` so it carries edgepose metadata")
    task, decode = guessed
    size = overrides.pop("input_size", None)
    if size is None:
        hw = spec_in.shape[2:4]
        if len(hw) != 2 or None in hw:
            raise MetadataError(f"{runner.name} has no edgepose metadata and a dynamic input size; "
                                "pass --input-size HxW (or re-export with `edgepose export`)")
        size = hw
    base = bare_meta_fields(task, names)
    base.update(model=Path(str(runner.name)).stem, task=task, decode=decode, input_size=tuple(size),
                input_name=spec_in.name, output_names=names, batch=spec_in.shape[0])
    base.update(overrides)
    return ModelMeta(**base)


def _with_overrides(runner, overrides):
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not overrides:
        return runner
    if runner.meta is None:
        runner.meta = guess_meta(runner, **overrides)
    else:
        runner.meta = runner.meta.replace(**overrides)
    return runner
