"""Optimisation-profile shapes for an edgepose ONNX: which inputs are dynamic and their
(min, opt, max) from the model metadata and the batch options.  Needs onnx, not TensorRT."""
from __future__ import annotations

from edgepose.errors import EngineError, UsageError

DEFAULT_POSE_BATCH = (1, 8, 32)
DEFAULT_DET_BATCH = (1, 1, 1)


def onnx_inputs(onnx_path) -> list:
    """``[(name, shape)]`` of the graph inputs (initializers excluded); dynamic dims -> None."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except FileNotFoundError:
        raise UsageError(f"{onnx_path}: no such ONNX file") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise UsageError(f"{onnx_path} is not a readable ONNX file ({exc}); export it again") from None
    inits = {init.name for init in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = []
        for dim in value.type.tensor_type.shape.dim:
            dims.append(int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None)
        out.append((value.name, tuple(dims)))
    return out


def _triple(value, what: str) -> tuple:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3 or not (1 <= value[0] <= value[1] <= value[2]):
        raise UsageError(f"{what} must be (min, opt, max) with 1 <= min <= opt <= max, got {value}")
    return value


def _hw_range(meta, det_hw):
    """(min, opt, max) of (H, W): ``det_hw`` when given, else from the metadata: opt =
    ``input_size``, min/max = ``extra["min_input_size"]``/``extra["max_input_size"]`` when set."""
    if det_hw is not None:
        lo, opt, hi = (tuple(int(v) for v in hw) for hw in det_hw)
    elif meta is not None:
        opt = tuple(int(v) for v in meta.input_size)
        extra = meta.extra or {}
        lo = tuple(int(v) for v in extra.get("min_input_size", opt))
        hi = tuple(int(v) for v in extra.get("max_input_size", opt))
    else:
        return None
    for a, b, c in zip(lo, opt, hi):
        if not 1 <= a <= b <= c:
            raise UsageError(f"input size range must satisfy min <= opt <= max per axis, got {lo}, {opt}, {hi}")
    return lo, opt, hi


def compute_profiles(inputs, meta=None, pose_batch=DEFAULT_POSE_BATCH, det_batch=DEFAULT_DET_BATCH,
                     det_hw=None) -> dict:
    """Optimisation-profile shapes ``{input: [min, opt, max]}`` for the dynamic inputs.

    ``inputs``: ``[(name, shape)]`` with None for dynamic dims (see :func:`onnx_inputs`).
    Batch (axis 0): ``pose_batch`` for a pose model (``meta.task == "sppe"``), else
    ``det_batch``.  H/W (axes 2, 3 of NCHW): ``det_hw`` or the metadata (see
    :func:`_hw_range`).  Static inputs get no profile; an empty dict means the engine needs none.
    """
    task = getattr(meta, "task", None)
    batch = _triple(pose_batch if task == "sppe" else det_batch, "pose_batch" if task == "sppe" else "det_batch")
    profiles = {}
    for name, shape in inputs:
        shape = tuple(None if (d is None or (isinstance(d, int) and d < 0)) else int(d) for d in shape)
        if all(d is not None for d in shape):
            continue
        lo, opt, hi = list(shape), list(shape), list(shape)
        hw = None
        for axis, dim in enumerate(shape):
            if dim is not None:
                continue
            if axis == 0:
                lo[0], opt[0], hi[0] = batch
            elif axis in (2, 3) and len(shape) == 4:
                if hw is None:
                    hw = _hw_range(meta, det_hw)
                if hw is None:
                    raise EngineError(f"input {name!r} has a dynamic {'height' if axis == 2 else 'width'} and the "
                                      "ONNX carries no edgepose metadata to size it; re-export it with `edgepose "
                                      "export` or give the detector size range (det_hw=(min, opt, max))")
                k = axis - 2
                lo[axis], opt[axis], hi[axis] = hw[0][k], hw[1][k], hw[2][k]
            else:
                raise EngineError(f"input {name!r} has a dynamic axis {axis} in {shape}; edgepose builds profiles for "
                                  "a dynamic batch (axis 0) and image size (axes 2, 3) only. Re-export with that "
                                  "axis fixed")
        profiles[name] = [lo, opt, hi]
    return profiles


def profile_max_batch(profiles: dict, inputs) -> int | None:
    """Largest batch of the first input: its profile max, or its static batch."""
    if not inputs:
        return None
    name, shape = inputs[0]
    if name in profiles:
        return int(profiles[name][2][0])
    return shape[0] if shape and isinstance(shape[0], int) else None
