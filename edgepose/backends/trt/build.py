"""onnx2engine: build a TensorRT engine (+ ``.engine.json`` manifest) from an edgepose ONNX.

The steps are separate functions, Polygraphy style (loader -> config -> build -> save):

1. :func:`plan_build` -- everything decided without TensorRT: metadata, precision, DLA rules,
   profiles, plugins, manifest options and the cache key (so an up-to-date engine is skipped
   before anything is built);
2. :func:`parse_onnx` -- builder network (strongly typed, see :mod:`.version`) + ONNX parser;
3. :func:`configure` -- workspace, optimisation level, profiles, DLA, timing cache, progress;
4. :func:`build_serialized` -- ``build_serialized_network`` -> engine bytes;
5. :func:`save_engine` -- engine file and manifest, each written whole or not at all.

Everything TensorRT/CUDA is imported inside functions; this module imports with neither.
The GPU is looked up through CUDA before any TensorRT object is created.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from edgepose.backends.trt import cuda_mem
from edgepose.backends.trt.logger import make_logger, make_progress_monitor
from edgepose.backends.trt.profiles import DEFAULT_DET_BATCH, DEFAULT_POSE_BATCH, compute_profiles, onnx_inputs
from edgepose.backends.trt.version import (adjust_for_dla_supported, dla_supported, import_tensorrt, network_flags,
                                           strongly_typed_mode)
from edgepose.errors import EngineError, UsageError

log = logging.getLogger("edgepose.tensorrt")

DEFAULT_WORKSPACE_MB = 2048
NO_ADJUST_FOR_DLA = ("TensorRT {version} has no OnnxParserFlag.ADJUST_FOR_DLA (it arrived in 10.16); the DLA engine is "
                     "built without it and layers the DLA cannot run go to the GPU (GPU fallback)")


# ====================================================================== 1. plan (no TensorRT)
@dataclass
class BuildPlan:
    """What one build will do; ``options`` is what the manifest records (keyed subset: manifest.KEYED_OPTIONS)."""

    onnx_path: Path
    engine_path: Path
    trt_version: str
    device: dict
    meta: object
    precision: str
    profiles: dict
    plugins: list
    options: dict
    onnx_sha256: str
    cache_key: str
    timing_cache: Path | None
    adjust_for_dla: bool = False

    @property
    def label(self) -> str:
        return f"building {self.engine_path.name}"


def _precision_of(meta, onnx_path) -> str:
    if meta is not None and meta.precision:
        return meta.precision
    for tag in ("int8", "fp16"):
        if f".{tag}." in Path(onnx_path).name:
            return tag
    return "fp32"


def build_options(*, profiles, workspace_mb, dla_core, gpu_fallback, opt_level, calib_hash, plugins) -> dict:
    """The options recorded in the manifest (the keyed subset is in manifest.KEYED_OPTIONS)."""
    return {"profiles": profiles, "workspace_mb": int(workspace_mb), "dla_core": dla_core,
            "gpu_fallback": bool(gpu_fallback) if dla_core is not None else None, "opt_level": opt_level,
            "calib_hash": calib_hash, "plugins": list(plugins)}


def _read_meta(onnx_path, logger):
    from edgepose.errors import MetadataError
    from edgepose.metadata import read_metadata

    try:
        return read_metadata(onnx_path)
    except MetadataError:
        logger.warning("edgepose: %s has no edgepose metadata; the engine will need --input-size/--mean/--std "
                       "at run time", onnx_path)
        return None


def _check_dla(dla_core, precision, onnx_path, version, logger) -> bool:
    """DLA rules; returns whether the parser gets ADJUST_FOR_DLA (TensorRT 10.16+)."""
    if dla_core is None:
        return False
    if precision not in ("fp16", "int8"):
        raise UsageError(f"--dla runs only FP16/INT8 layers, but {Path(onnx_path).name} is {precision}; build with "
                         "--fp16 or --int8 (the precision lives in the ONNX)")
    ok, note = dla_supported(version)
    if not ok:
        raise EngineError(note)
    if note:
        logger.warning("edgepose: %s", note)
    adjust = adjust_for_dla_supported(version)
    if not adjust:
        logger.warning("edgepose: %s", NO_ADJUST_FOR_DLA.format(version=version))
    return adjust


def plan_build(onnx_path, engine_path, trt_version: str, device: dict, *, workspace_mb, pose_batch, det_batch, det_hw,
               dla_core, gpu_fallback, timing_cache, calib_hash, opt_level, plugin_lib, logger) -> BuildPlan:
    """Step 1: decide the build from the ONNX, the options and the GPU ``device`` (cuda_mem.device_info)."""
    from edgepose.backends.trt.manifest import cache_key
    from edgepose.backends.trt.plugin_libs import prepare_plugins
    from edgepose.backends.trt.timing_cache import default_timing_cache
    from edgepose.io_utils import sha256_file

    meta = _read_meta(onnx_path, logger)
    precision = _precision_of(meta, onnx_path)
    adjust = _check_dla(dla_core, precision, onnx_path, trt_version, logger)
    profiles = compute_profiles(onnx_inputs(onnx_path), meta, pose_batch=pose_batch, det_batch=det_batch, det_hw=det_hw)
    plugin_ops = prepare_plugins(onnx_path, plugin_lib)
    options = build_options(profiles=profiles, workspace_mb=workspace_mb, dla_core=dla_core, gpu_fallback=gpu_fallback,
                            opt_level=opt_level, calib_hash=calib_hash, plugins=plugin_ops)
    onnx_sha = sha256_file(onnx_path)
    if timing_cache is False:
        cache_path = None
    else:
        cache_path = Path(timing_cache) if timing_cache else default_timing_cache(trt_version,
                                                                                  device["compute_capability"])
    return BuildPlan(onnx_path=Path(onnx_path), engine_path=Path(engine_path), trt_version=trt_version, device=device,
                     meta=meta, precision=precision, profiles=profiles, plugins=plugin_ops, options=options,
                     onnx_sha256=onnx_sha, cache_key=cache_key(onnx_sha, trt_version, device["compute_capability"],
                                                               options),
                     timing_cache=cache_path, adjust_for_dla=adjust)


# ====================================================================== 2. parse
def format_parser_errors(parser, onnx_path) -> str:
    """One line per ONNX-parser error: node index, name and operator, and the description."""
    lines = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node, name, op, desc = err.node(), err.node_name(), err.node_operator(), err.desc()
        where = []
        if node is not None and int(node) >= 0:
            where.append(f"node {node}")
        if name:
            where.append(repr(str(name)))
        if op:
            where.append(f"({op})")
        lines.append(f"  {' '.join(where) or 'graph'}: {desc or err}")
    text = "\n".join(lines) or "  (the parser gave no details; run with --verbose)"
    hint = ("check that the ONNX passes `edgepose export`'s verification and uses ops TensorRT supports; "
            "plugin ops need libedgepose_plugins.so, or re-export with `--plugins off`")
    return f"TensorRT cannot parse {onnx_path}:\n{text}\n{hint}"


def parse_onnx(trt, builder, plan: BuildPlan, trt_logger):
    """Step 2: a strongly typed network filled by the ONNX parser; returns ``(network, parser)``
    (the parser owns weights the network refers to: keep it until the build is done)."""
    network = builder.create_network(network_flags(trt, plan.trt_version))
    parser = trt.OnnxParser(network, trt_logger)
    if plan.adjust_for_dla:
        parser.set_flag(trt.OnnxParserFlag.ADJUST_FOR_DLA)
    if not parser.parse_from_file(str(plan.onnx_path)):
        raise EngineError(format_parser_errors(parser, plan.onnx_path))
    return network, parser


# ====================================================================== 3. configure
def _add_profile(builder, config, plan: BuildPlan):
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.profiles.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    if config.add_optimization_profile(profile) < 0:
        raise EngineError(f"TensorRT rejected the optimisation profile {plan.profiles} for {plan.onnx_path.name}; "
                          "check the batch/size ranges (pose_batch, det_hw)")


def _configure_dla(trt, builder, config, dla_core: int, gpu_fallback: bool):
    cores = int(builder.num_DLA_cores)
    if not 0 <= int(dla_core) < cores:
        raise EngineError(f"--dla {dla_core}: this device has {cores} DLA core(s) "
                          f"({'use 0..' + str(cores - 1) if cores else 'DLA exists on Jetson Xavier/Orin only'}); "
                          "drop --dla to build for the GPU")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    if gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def configure(trt, builder, plan: BuildPlan, logger):
    """Step 3: the builder config; returns ``(config, timing_cache, progress_monitor)`` -- the
    cache and monitor must outlive the build."""
    from edgepose.backends.trt.timing_cache import attach_timing_cache

    options = plan.options
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace_mb"]) << 20)
    if options["opt_level"] is not None:
        config.builder_optimization_level = int(options["opt_level"])
    if plan.profiles:
        _add_profile(builder, config, plan)
    if options["dla_core"] is not None:
        _configure_dla(trt, builder, config, options["dla_core"], options["gpu_fallback"])
    cache = attach_timing_cache(config, plan.timing_cache, logger)
    monitor = make_progress_monitor(trt, logger, plan.label)
    config.progress_monitor = monitor
    return config, cache, monitor


# ====================================================================== 4. build
def build_serialized(builder, network, config, plan: BuildPlan, trt_logger, logger) -> tuple:
    """Step 4: ``(engine bytes, seconds)``; EngineError quoting TensorRT's last errors when it fails."""
    options = plan.options
    logger.info("%s: TensorRT %s, %s, strongly typed (%s), workspace %d MiB%s%s%s", plan.label, plan.trt_version,
                plan.precision, "creation flag" if strongly_typed_mode(plan.trt_version) == "flag"
                else "always on in 11.x", options["workspace_mb"],
                f", DLA core {options['dla_core']}" if options["dla_core"] is not None else "",
                " (ADJUST_FOR_DLA)" if plan.adjust_for_dla else "",
                f", profiles {plan.profiles}" if plan.profiles else "")
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - started
    if serialized is None:
        errors = "; ".join(trt_logger.errors[-3:]) if trt_logger.errors else "see the TensorRT messages above"
        raise EngineError(f"TensorRT could not build {plan.engine_path.name} from {plan.onnx_path.name} ({errors}). "
                          f"Try a larger workspace (--workspace, now {options['workspace_mb']} MiB), a smaller max "
                          "batch, or run with --verbose for TensorRT's full log")
    return bytes(memoryview(serialized)), seconds


# ====================================================================== 5. save
def _np_dtype_name(trt, dtype) -> str:
    """NumPy name of a TensorRT dtype; TensorRT's own name for the ones NumPy lacks (``trt.nptype``
    raises TypeError for BF16/FP8/INT4/FP4)."""
    import numpy as np

    try:
        return np.dtype(trt.nptype(dtype)).name
    except TypeError:
        return str(dtype.name).lower()


def _io_specs(trt, network, profiles) -> tuple:
    def spec(tensor, with_profile):
        shape = [int(d) if int(d) >= 0 else None for d in tensor.shape]
        out = {"name": tensor.name, "shape": shape, "dtype": _np_dtype_name(trt, tensor.dtype)}
        if with_profile and tensor.name in profiles:
            out["profile"] = profiles[tensor.name]
        return out

    inputs = [spec(network.get_input(i), True) for i in range(network.num_inputs)]
    outputs = [spec(network.get_output(i), False) for i in range(network.num_outputs)]
    return inputs, outputs


def _edgepose_version():
    try:
        from importlib.metadata import version

        return version("edgepose")
    except Exception:  # noqa: BLE001 -- not installed as a distribution (source checkout)
        return None


def save_engine(trt, blob: bytes, network, plan: BuildPlan, seconds: float) -> Path:
    """Step 5: the engine bytes and ``X.engine.json``, each written atomically."""
    from edgepose.backends.trt.manifest import EngineManifest, write_manifest
    from edgepose.io_utils import atomic_path

    inputs_spec, outputs_spec = _io_specs(trt, network, plan.profiles)
    with atomic_path(plan.engine_path) as tmp:
        tmp.write_bytes(blob)
    info = plan.device
    manifest = EngineManifest(
        engine=plan.engine_path.name, tensorrt_version=plan.trt_version, compute_capability=info["compute_capability"],
        onnx_sha256=plan.onnx_sha256, cache_key=plan.cache_key, precision=plan.precision, gpu_name=info["name"],
        cuda_runtime=info["cuda_runtime"], cuda_driver=info["cuda_driver"], onnx_name=plan.onnx_path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(), engine_bytes=len(blob), calib_hash=plan.options["calib_hash"],
        inputs=inputs_spec, outputs=outputs_spec,
        build_options={**plan.options, "timing_cache": str(plan.timing_cache) if plan.timing_cache else None,
                       "device": info.get("index", 0), "adjust_for_dla": plan.adjust_for_dla},
        plugins=plan.plugins, meta_json=plan.meta.to_json() if plan.meta is not None else None,
        strongly_typed=strongly_typed_mode(plan.trt_version), edgepose_version=_edgepose_version(),
        build_seconds=round(seconds, 2))
    write_manifest(manifest, plan.engine_path)
    return plan.engine_path


# ====================================================================== the whole build
def onnx2engine(onnx_path, engine_path=None, *, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                pose_batch=DEFAULT_POSE_BATCH, det_batch=DEFAULT_DET_BATCH, det_hw=None, dla_core: int | None = None,
                gpu_fallback: bool = True, timing_cache=None, calib_hash: str | None = None, force: bool = False,
                opt_level: int | None = None, plugin_lib=None, device: int = 0, log: logging.Logger | None = None) \
        -> Path:
    """Build ``engine_path`` (default: the ONNX path with ``.engine``) and its manifest.

    ``workspace_mb``: memory-pool (workspace) limit.  ``pose_batch``/``det_batch``: (min, opt,
    max) batch of the profile for pose/detector models with a dynamic batch; ``det_hw``:
    ((h, w) min, opt, max) for a detector with a dynamic image size (default: metadata).
    ``dla_core``: run on that DLA core with GPU fallback (``gpu_fallback``); DLA runs FP16/INT8
    layers only, so the ONNX must be an FP16 or INT8 one.  ``timing_cache``: path, None (per-
    user default for this TensorRT/GPU) or False (off).  ``calib_hash``: recorded and keyed.
    ``force``: rebuild even when the manifest says the engine is current.
    Returns the engine path.  Raises EngineError/PluginError/DependencyError that say what to do.
    """
    from edgepose.backends.trt.manifest import is_up_to_date
    from edgepose.backends.trt.timing_cache import save_timing_cache

    logger = log or globals()["log"]
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path}: no such ONNX file; write it first with `edgepose export` / `edgepose build`")
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    trt = import_tensorrt()
    info = {**cuda_mem.device_info(device), "index": device}  # no GPU -> NoGPUError before any TensorRT call
    cuda_mem.set_device(device)
    plan = plan_build(onnx_path, engine_path, trt.__version__, info, workspace_mb=workspace_mb, pose_batch=pose_batch,
                      det_batch=det_batch, det_hw=det_hw, dla_core=dla_core, gpu_fallback=gpu_fallback,
                      timing_cache=timing_cache, calib_hash=calib_hash, opt_level=opt_level, plugin_lib=plugin_lib,
                      logger=logger)
    if not force:
        current, why = is_up_to_date(engine_path, plan.cache_key)
        if current:
            logger.info("%s is up to date (same ONNX, TensorRT %s, sm %s and options); not rebuilding",
                        engine_path, plan.trt_version, info["compute_capability"])
            return engine_path
        logger.info("building %s: %s", engine_path.name, why)

    trt_logger = make_logger(trt, logger)
    builder = trt.Builder(trt_logger)
    network, parser = parse_onnx(trt, builder, plan, trt_logger)  # noqa: F841 -- parser must outlive the build
    config, cache, monitor = configure(trt, builder, plan, logger)  # noqa: F841 -- cache too
    blob, seconds = build_serialized(builder, network, config, plan, trt_logger, logger)
    save_timing_cache(config, plan.timing_cache, logger)
    save_engine(trt, blob, network, plan, seconds)
    logger.info("wrote %s (%.1f MB, %.0f s) and %s.json", engine_path, len(blob) / 1e6, seconds, engine_path.name)
    return engine_path


def build_engine_files(onnx_paths, out_dir=None, **options) -> list:
    """``onnx2engine`` for each ONNX file; engines go to ``out_dir`` (default: beside each ONNX)
    as ``<stem>.engine`` (``det.int8.onnx`` -> ``det.int8.engine``).  Returns the engine paths."""
    engines = []
    for onnx_path in onnx_paths:
        onnx_path = Path(onnx_path)
        target = (Path(out_dir) if out_dir else onnx_path.parent) / (onnx_path.stem + ".engine")
        engines.append(onnx2engine(onnx_path, target, **options))
    return engines
