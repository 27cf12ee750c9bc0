"""Export a zoo model (or any module returning a dict of heads) to a verified ONNX file.

Steps: build / load weights -> ``torch.onnx.export`` (TorchScript exporter) -> onnxsim ->
attach :class:`~edgepose.metadata.ModelMeta` -> run ONNX Runtime and PyTorch on the same
input -> write atomically only if every output is within tolerance.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose._deps import require
from edgepose.errors import ExportError, UsageError
from edgepose.compare import compare_outputs, format_errors
from edgepose.io_utils import atomic_path
from edgepose.metadata import ModelMeta, attach_metadata
from edgepose.tasks import task_spec
from edgepose.outputs import check_outputs, check_writable

FP32_TOLERANCE = 1e-4  # max abs error / max |torch output|, per output


@dataclass
class ExportReport:
    path: Path
    meta: ModelMeta
    errors: list = field(default_factory=list)
    verified: bool = False
    simplified: bool = False
    tolerance: float = FP32_TOLERANCE
    notes: list = field(default_factory=list)

    def format(self) -> str:
        size = "x".join(map(str, self.meta.input_size))
        extra = self.meta.extra or {}
        if extra.get("dynamic_hw"):
            lo, hi = ("x".join(map(str, extra[k])) for k in ("min_input_size", "max_input_size"))
            size = f"dynamic {lo} to {hi} (opt {size})"
        head = f"wrote {self.path}  ({self.meta.model}, {self.meta.task}, input {size}, " \
               f"batch {self.meta.batch or 'dynamic'}, opset {self.meta.opset})"
        body = format_errors(self.errors, self.tolerance) if self.errors else "not verified"
        return "\n".join([head, "ONNX Runtime vs PyTorch:", body, *self.notes])


def _parse_batch(batch):
    if batch in (None, "dynamic"):
        return None
    try:
        value = int(batch)
    except (TypeError, ValueError):
        raise UsageError(f"--batch must be a positive integer or 'dynamic', got {batch!r}") from None
    if value < 1:
        raise UsageError(f"--batch must be >= 1, got {value}")
    return value


def _prepare_model(model, weights, model_kwargs):
    from edgepose.models.checkpoint import load_checkpoint
    from edgepose.models.pruned import create_with_weights

    if isinstance(model, str):  # a pruned checkpoint (edgepose prune) rebuilds its narrower layers
        return create_with_weights(model, weights, model_kwargs).eval()
    if weights not in (None, "random"):
        load_checkpoint(model, weights, strict=True)
    return model.eval()


def _uses_deform_conv(model) -> bool:
    return any(type(m).__name__ == "DCN" for m in model.modules())


def _meta_for(model, input_size, batch, meta):
    spec = getattr(model, "edgepose_spec", None)
    if meta is None:
        if spec is None:
            raise UsageError("this module is not from the edgepose zoo: pass meta=ModelMeta(...) "
                             "so the ONNX file can describe its input and heads")
        kwargs = {k: v for k, v in getattr(model, "edgepose_kwargs", {}).items() if k in ("num_classes", "num_joints")}
        meta = spec.meta(**kwargs)
    if input_size is not None:
        meta = meta.replace(input_size=tuple(input_size))
    return meta.replace(batch=batch)


#: Largest frame a default ``--input-size dynamic`` export is sized for (1080p video).
DEFAULT_MAX_FRAME = (1080, 1920)


def _dynamic_meta(meta, dynamic_hw):
    """``meta`` of a dynamic-H/W detector: ``extra`` says so and gives the (min, max) input sizes
    (``dynamic_hw``: True for the canvas of a 1080p frame, or the (H, W) upper bound);
    ``input_size`` (the TensorRT opt shape) is the model's size, clipped to the bound."""
    spec = task_spec(meta.task)
    if spec.role != "detector" or spec.canvas_step is None:
        raise UsageError(f"--input-size dynamic is for detectors; {meta.model} is a {meta.task!r} model "
                         "(give it a fixed --input-size HxW)")
    lo = (spec.canvas_side(0),) * 2
    hi = tuple(spec.canvas_side(v) for v in DEFAULT_MAX_FRAME) if dynamic_hw is True else tuple(dynamic_hw)
    if len(hi) != 2 or min(hi) < lo[0]:
        raise UsageError(f"--input-size dynamic:HxW upper bound {hi} is below the smallest {meta.task} input "
                         f"{lo[0]}x{lo[1]}")
    opt = tuple(min(o, spec.largest_canvas_side(h)) if o > h else o for o, h in zip(meta.input_size, hi))
    extra = {**(meta.extra or {}), "dynamic_hw": True, "min_input_size": list(lo), "max_input_size": list(hi)}
    return meta.replace(input_size=opt, extra=extra)


def _second_size(meta):
    """A second input size, other than ``meta.input_size`` and within the dynamic bounds, to verify on."""
    spec, extra = task_spec(meta.task), meta.extra
    sizes = []
    for side, k, lo, hi in zip(meta.input_size, (1, 2), extra["min_input_size"], extra["max_input_size"]):
        up, down = side + k * spec.canvas_step, side - k * spec.canvas_step
        sizes.append(up if up <= hi else down if down >= lo else side)
    return tuple(sizes)


def torch2onnx(model, out_path, *, weights=None, input_size=None, batch=1, opset=None, decode=False,
               decode_k=100, plugins="auto", simplify=True, verify=True, meta=None,
               tolerance=FP32_TOLERANCE, model_kwargs=None, seed=0, log=None, dynamic_hw=False) -> ExportReport:
    """Export ``model`` (zoo name or ``nn.Module``) to ``out_path``; returns an ExportReport.

    ``weights``: None (keep the module's), ``"random"`` or a checkpoint path.  ``batch``: an
    int or ``"dynamic"``.  ``decode``: end the graph in the standard-op decoder (CenterNet
    boxes / SPPE argmax coordinates).  ``plugins``: ``"on"`` emits TensorRT plugin nodes for custom ops
    (not runnable on ONNX Runtime, so not verified), ``"off"`` standard-op decompositions,
    ``"auto"`` (default) plugin nodes only when the plugin library is installed.  ``dynamic_hw``
    (detectors): True or an ``(H, W)`` upper bound for dynamic height/width axes (metadata
    ``extra``: ``dynamic_hw``, ``min_input_size``, ``max_input_size``; verified at two sizes).
    Raises ExportError, leaving no file,
    when ONNX Runtime and PyTorch differ by more than ``tolerance`` of an output's maximum.
    """
    require("torch")  # a clear DependencyError before anything else
    say = log or (lambda msg: None)
    batch = _parse_batch(batch)
    plugins = _resolve_plugins(plugins)
    if decode and decode_k > (4096 if plugins else 3840):
        raise UsageError(f"--decode-k {decode_k} is too large: TensorRT's TopK allows K <= 3840 "
                         "(4096 with the HeatmapTopK plugin)")
    model = _prepare_model(model, weights, model_kwargs)
    meta = _meta_for(model, input_size, batch, meta)
    if dynamic_hw:
        if decode:
            raise UsageError("--decode needs a fixed --input-size (the in-graph decoder is sized for one input); "
                             "export the dynamic-size detector without --decode")
        meta = _dynamic_meta(meta, dynamic_hw)
    h, w = meta.input_size
    multiple = task_spec(meta.task).input_multiple
    if h % multiple or w % multiple:
        raise UsageError(f"{meta.model} ({meta.task}) input size must be a multiple of {multiple}, got {h}x{w}")
    opset = _check_opset(model, opset)
    if isinstance(weights, (str, Path)) and str(weights) != "random":
        check_outputs({"--weights": weights}, {"--out": out_path})
    else:
        check_writable(out_path, "--out")  # a read-only or missing folder fails before the export

    net, output_names = model, None
    if decode:
        from edgepose.export.graph_decode import wrap_with_decode

        net, output_names, updates = wrap_with_decode(model, meta, K=decode_k)
        meta = meta.replace(**updates)
    example, output_names, checks = _examples(net, meta, batch, seed, output_names)
    meta = meta.replace(output_names=output_names, opset=opset, input_name=meta.input_name or "input")
    say(f"exporting {meta.model} to ONNX (opset {opset})")
    proto = _run_exporter(net, example, meta, batch, plugins)
    report = ExportReport(path=Path(out_path), meta=meta, tolerance=tolerance)
    if simplify and not plugins:
        proto, report.simplified = _simplify(proto, report.notes)
    elif plugins:
        report.notes.append("not simplified: graph has plugin nodes")
    attach_metadata(proto, meta)
    _save_verified(proto, report, checks, verify and not plugins, say)
    if plugins:
        report.notes.append("not verified on ONNX Runtime: plugin nodes run only in TensorRT "
                            "(export without --plugins to verify the decomposition)")
    return report


def _examples(net, meta, batch, seed, output_names):
    """``(example input, output names, [(input, PyTorch outputs)] to verify)``: the input at
    ``meta.input_size`` and, for a dynamic-H/W export, a second one of another size."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(batch or 2, 3, *meta.input_size, generator=gen)
    output_names, reference = _reference_outputs(net, example, output_names)
    checks = [(example.numpy(), reference)]
    if (meta.extra or {}).get("dynamic_hw"):
        second = torch.randn(batch or 2, 3, *_second_size(meta), generator=gen)
        checks.append((second.numpy(), _reference_outputs(net, second, output_names)[1]))
    return example, output_names, checks


def _check_opset(model, opset):
    opset = opset or (19 if _uses_deform_conv(model) else 17)
    if opset < 17:
        raise UsageError(f"opset {opset} is too old: edgepose exports opset >= 17 (19 with DeformConv)")
    if _uses_deform_conv(model) and opset < 19:
        raise UsageError("this model has deformable convolutions, which ONNX has from opset 19: use --opset 19")
    return opset


def _reference_outputs(net, example, output_names):
    """PyTorch's outputs on ``example``: ``(output names, {name: array})``."""
    import torch

    with torch.no_grad():
        reference = net(example)
    if isinstance(reference, dict):
        return output_names or list(reference), {k: v.numpy() for k, v in reference.items()}
    reference = reference if isinstance(reference, (tuple, list)) else (reference,)
    return output_names, dict(zip(output_names, (r.numpy() for r in reference)))


def _run_exporter(net, example, meta, batch, plugins):
    """``torch.onnx.export`` (TorchScript exporter) of ``net`` -> ModelProto."""
    import torch

    from edgepose.ops import plugin_export

    onnx = require("onnx")
    input_name, output_names = meta.input_name, meta.output_names
    axes_in, axes_out = {}, {}
    if batch is None:
        axes_in, axes_out = {0: "batch"}, {0: "batch"}
    if (meta.extra or {}).get("dynamic_hw"):
        axes_in, axes_out = {**axes_in, 2: "height", 3: "width"}, {**axes_out, 2: "out_height", 3: "out_width"}
    dynamic_axes = {input_name: axes_in, **{n: axes_out for n in output_names}} if axes_in else None
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.onnx"
        try:
            with plugin_export(plugins), torch.no_grad():
                torch.onnx.export(net, (example,), str(raw_path), input_names=[input_name],
                                  output_names=output_names, opset_version=meta.opset,
                                  dynamic_axes=dynamic_axes, dynamo=False, do_constant_folding=True)
        except OSError as exc:  # the temporary folder is full or read-only: say so, not "export failed"
            from edgepose.outputs import output_error

            raise output_error(exc, f"the temporary export file in {tmp} (set TMPDIR to another disk)") from None
        except Exception as exc:  # the exporter raises many kinds
            raise ExportError(f"torch.onnx.export failed for {meta.model}: {exc}") from exc
        return onnx.load(str(raw_path))


def _save_verified(proto, report, checks, verify, say):
    """Write ``proto`` to ``report.path`` atomically; with ``verify`` only when ONNX Runtime
    agrees with the reference of every ``(example, reference)`` of ``checks`` within
    ``report.tolerance`` (ExportError, no file, otherwise).  With several checks (dynamic
    H/W) each row is named ``output@HxW``."""
    onnx = require("onnx")
    with atomic_path(report.path) as tmp_path:
        onnx.save(proto, str(tmp_path))
        if verify:
            say("checking ONNX Runtime against PyTorch")
            report.errors = []
            for example, reference in checks:
                rows = _verify(tmp_path, report.meta.input_name, example, reference, report.tolerance)
                for row in rows if len(checks) > 1 else ():
                    row.name = f"{row.name}@{example.shape[2]}x{example.shape[3]}"
                report.errors.extend(rows)
            report.verified = True
            if not all(e.ok for e in report.errors):
                raise ExportError("ONNX Runtime and PyTorch disagree beyond tolerance; no file written.\n"
                                  + format_errors(report.errors, report.tolerance))


def _resolve_plugins(plugins) -> bool:
    """``"auto"``: plugin nodes only when libedgepose_plugins.so can be found."""
    if plugins in (True, "on"):
        return True
    if plugins in (False, None, "off"):
        return False
    if plugins == "auto":
        from edgepose.plugins import find_library

        try:
            return find_library() is not None
        except Exception:  # a broken EDGEPOSE_PLUGIN_LIB is reported when plugins are forced on
            return False
    raise UsageError(f"plugins must be 'auto', 'on' or 'off', got {plugins!r}")


def _simplify(proto, notes):
    try:
        onnxsim = require("onnxsim")
        simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim raises on exotic graphs; the unsimplified graph is still valid
        notes.append(f"onnxsim skipped: {exc}")
        return proto, False
    if not ok:
        notes.append("onnxsim check failed; kept the unsimplified graph")
        return proto, False
    return simplified, True


def _verify(path, input_name, example, reference, tolerance):
    from edgepose.ort_session import create_session, run_feeds

    session = create_session(path, error=ExportError)
    outputs = run_feeds(session, [{input_name: example.astype(np.float32)}])[0]
    if "dets" not in outputs:
        return compare_outputs(reference, outputs, tolerance)
    # decoded rows: near-equal scores may come out in another order
    matched, skipped = _match_rows(reference["dets"], outputs["dets"])
    rows = compare_outputs(reference, {**outputs, "dets": matched}, tolerance)
    total = int(np.prod(reference["dets"].shape[:2]))
    for r in rows:
        if r.name == "dets":
            r.note = f"{total - skipped}/{total} rows compared; the rest tie within 1e-4"
    return rows


def _match_rows(ref, got, score_tol=1e-4):
    """Pair each reference row [x1,y1,x2,y2,score,cls] with the candidate row of the same class
    and score.  Rows whose score is within ``score_tol`` of another row's are ambiguous (a
    near-tie can move a 3x3 peak or swap the K-th detection) and keep the reference value.
    Returns ``(matched rows, number of ambiguous rows skipped)``."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    matched, skipped = ref.copy(), 0
    for b in range(ref.shape[0]):
        for i, row in enumerate(ref[b]):
            near_ref = np.abs(ref[b, :, 4] - row[4]) <= score_tol
            near_got = (np.abs(got[b, :, 4] - row[4]) <= score_tol) & (got[b, :, 5] == row[5])
            if near_ref.sum() == 1 and near_got.sum() == 1:
                matched[b, i] = got[b][near_got][0]
            elif near_got.sum() == 0 and near_ref.sum() == 1:
                matched[b, i] = got[b, i]  # a clear detection ORT lacks: report the mismatch
            else:
                skipped += 1
    return matched, skipped
