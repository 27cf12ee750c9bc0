"""What ``edgepose build`` checks before it writes anything, and its TensorRT step.

:func:`check_build_args` validates every option and input (so nothing is created for a bad
call); :func:`build_engines` tells "TensorRT cannot be used here" (a note, exit 0) from a
build that failed (EngineError with TensorRT's message); :func:`drop_stale_engines` keeps an
engine of the previous set only when it was built from the very ONNX now written.
"""
from __future__ import annotations

import logging
from pathlib import Path

from edgepose.errors import UsageError
from edgepose.quant.build import PRECISIONS

log = logging.getLogger("edgepose")


def check_build_args(options) -> tuple:
    """Every option and input of a :class:`edgepose.workflows.build.BuildOptions`, before any
    output exists; returns ``(det path, pose path, {role: ModelMeta})``."""
    from edgepose.outputs import check_writable

    o = options
    det_onnx, pose_onnx, precision, calib, max_ap_drop = o.det, o.pose, o.precision, o.calib, o.max_ap_drop
    out_dir, calib_size, eval_ann, eval_images = o.out_dir, o.calib_size, o.eval_ann, o.eval_images
    eval_size, det_threshold, threads = o.eval_size, o.det_threshold, o.threads
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    from edgepose.quant.calibration import METHODS

    if o.calib_method is not None and o.calib_method not in METHODS:
        raise UsageError(f"unknown --calib-method {o.calib_method!r}; choose one of {', '.join(METHODS)}")
    if not 0 <= o.min_agreement <= 1:
        raise UsageError(f"--min-agreement is an AP against FP32 between 0 and 1, got {o.min_agreement}")
    if o.max_fp32_layers is not None and o.max_fp32_layers < 0:
        raise UsageError(f"--max-fp32-layers must be >= 0, got {o.max_fp32_layers}")
    if max_ap_drop is not None and precision != "int8":
        raise UsageError("--max-ap-drop applies to INT8 only (FP16 keeps the sensitive layers in FP32 already)")
    if max_ap_drop is not None and not 0 <= max_ap_drop <= 100:
        raise UsageError(f"--max-ap-drop is in AP points, 0 to 100, got {max_ap_drop}")
    for option, value, low in (("--calib-size", calib_size, 1), ("--eval-size", eval_size, 1),
                               ("--threads", threads if threads is not None else 1, 1)):
        if int(value) < low:
            raise UsageError(f"{option} must be >= {low}, got {value}")
    if not 0 <= det_threshold <= 1:
        raise UsageError(f"--det-threshold must be in [0, 1] (a detector score), got {det_threshold}")
    if calib is not None and str(calib).split(":")[0] == "synthetic":
        from edgepose.workflows.calibration_feeds import parse_synthetic_spec

        parse_synthetic_spec(calib)  # synthetic:abc -> a one-line UsageError, before anything is written
    elif calib is not None and not Path(calib).exists():
        raise UsageError(f"calibration source {calib} does not exist; pass an image folder, a video, a COCO "
                         ".json or synthetic[:N[:SEED]]")
    for option, path in (("--eval-ann", eval_ann), ("--eval-images", eval_images)):
        if path is not None and not Path(path).exists():
            raise UsageError(f"{option} {path} does not exist")
    from edgepose.models.defaults import resolve_models
    from edgepose.tasks import task_spec

    det_onnx, pose_onnx = resolve_models(det_onnx, pose_onnx)
    for path in (det_onnx, pose_onnx):
        if not path.is_file():
            raise UsageError(f"{path}: no such ONNX file; export it first with `edgepose export`")
    metas = {"det": _build_metadata(det_onnx, "det"), "pose": _build_metadata(pose_onnx, "pose")}
    if task_spec(metas["det"].task).role != "detector":
        raise UsageError(f"{det_onnx} is a {metas['det'].task!r} model; --det must be a CenterNet or CornerNet "
                         "detector")
    _refuse_plugin_nodes((det_onnx, pose_onnx))
    if task_spec(metas["pose"].task).role != "pose":
        raise UsageError(f"{pose_onnx} is a {metas['pose'].task!r} model; --pose must be a pose estimator")
    check_writable(out_dir, "--out", is_dir=True)
    return det_onnx, pose_onnx, metas


def _refuse_plugin_nodes(paths):
    """The build runs every model on ONNX Runtime, which has no TensorRT plugin ops: CornerPool
    nodes run there as their exact decomposition (:mod:`edgepose.workflows.build_plugins`);
    a plugin without one (HeatmapTopK) is refused before anything is written."""
    from edgepose.ops.plugin_graph import DECOMPOSABLE
    from edgepose.plugins import required_plugins

    for path in paths:
        found = sorted(required_plugins(path) - set(DECOMPOSABLE))
        if found:
            raise UsageError(f"{path} has TensorRT plugin nodes ({', '.join(found)}) that ONNX Runtime cannot run "
                             "and edgepose cannot replace by standard ops, and `edgepose build` runs the model there; "
                             "re-export it with `edgepose export ... --plugins off` (the exact standard-op "
                             "decomposition)")


def _build_metadata(path, role):
    """The edgepose metadata ``build`` needs; a bare ONNX gets advice that fits `build`
    (which has no --input-size/--mean/--std: it needs the exported metadata)."""
    from edgepose.errors import MetadataError
    from edgepose.metadata import read_metadata

    try:
        return read_metadata(path)
    except MetadataError as exc:
        if "no edgepose metadata" not in str(exc):
            raise
        raise MetadataError(f"{path} has no edgepose metadata, which `edgepose build` needs (input size, "
                            f"normalisation, heads); re-export the {role} model with `edgepose export MODEL "
                            f"--weights FILE.pth --out {role}.onnx` and pass that") from None


def drop_stale_engines(stage: Path, outs: dict, built: list):
    """An engine of this set that was not (re)built now belongs to the previous ONNX unless its
    manifest records the new ONNX's hash: remove it (and its manifest) from the new set."""
    from edgepose.backends.trt.manifest import manifest_path, read_manifest
    from edgepose.errors import EdgeposeError
    from edgepose.io_utils import sha256_file

    names = {Path(e).name for e in built}
    for onnx_path in outs.values():
        engine = stage / (onnx_path.stem + ".engine")
        if engine.name in names or not (engine.exists() or manifest_path(engine).exists()):
            continue
        try:
            current = read_manifest(engine).onnx_sha256 == sha256_file(onnx_path)
        except (EdgeposeError, OSError, ValueError):
            current = False
        if not current:
            log.info("edgepose build: removing %s, built from the previous %s", engine.name, onnx_path.name)
            for path in (engine, manifest_path(engine)):
                if path.exists():
                    path.unlink()


def build_engines(report: dict, out_dir, **trt_options) -> tuple:
    """Build TensorRT engines into ``out_dir`` from the ONNX files of ``report`` (found there by
    name) when TensorRT can be used here.  ``trt_options`` go to
    :func:`edgepose.backends.trt.build.onnx2engine` (workspace_mb, dla_core, pose_batch,
    force, ...).  Returns ``(engine paths, None)``, or ``([], reason)`` when TensorRT, its
    Python bindings or a GPU are absent.  A build that fails for any other reason raises
    EngineError carrying TensorRT's message: it is not a success."""
    from edgepose.errors import EdgeposeError, EngineError

    tensorrt_status, onnx2engine = _tensorrt_api()
    ok, why = tensorrt_status()  # TensorRT missing / wrong version, no cuda-python, no GPU
    if not ok:
        return [], why
    engines = []
    calib_hash = (report.get("calibration") or {}).get("sha256")
    for onnx_name in report["outputs"].values():
        onnx_path = Path(out_dir) / Path(onnx_name).name
        engine = onnx_path.with_suffix(".engine")
        try:
            engines.append(str(onnx2engine(onnx_path, engine, calib_hash=calib_hash, **trt_options)))
        except EdgeposeError as exc:
            raise type(exc)(f"TensorRT engine for {Path(onnx_name).name} failed: {exc}") from None
        except Exception as exc:  # noqa: BLE001 -- TensorRT's own exceptions: report, never succeed
            raise EngineError(f"TensorRT engine for {Path(onnx_name).name} failed: {type(exc).__name__}: {exc}") \
                from None
    return engines, None


def _tensorrt_api():
    """``(tensorrt_status, onnx2engine)`` of the TensorRT backend (a seam the tests replace)."""
    from edgepose.backends.trt.build import onnx2engine
    from edgepose.backends.trt.version import tensorrt_status

    return tensorrt_status, onnx2engine
