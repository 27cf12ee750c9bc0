"""onnx2engine: build a TensorRT engine (+ ``.engine.json`` manifest) from an edgepose ONNX.

Supported: TensorRT 10.3 (JetPack 6, Python 3.10) through 11.x.  The precision is already in
the ONNX (FP16 casts / INT8 Q/DQ), so the network is parsed *strongly typed*:

* TensorRT 10.x: ``create_network(1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))``;
* TensorRT 11.x: every network is strongly typed; the flag is deprecated and ignored, so
  ``create_network(0)`` is used.  ``BuilderFlag.FP16``/``INT8``/``OBEY_PRECISION_CONSTRAINTS``
  and ``int8_calibrator`` no longer exist in 11.x and are never used here (they are not allowed
  with strongly typed networks on 10.x either).

Everything TensorRT/CUDA is imported inside functions; this module imports with neither.
The pure parts (version gates, profile computation, severity mapping, parser-error
formatting, option keys) are unit-tested without a GPU.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from edgepose.errors import DependencyError, EngineError, PluginError, UsageError

log = logging.getLogger("edgepose.tensorrt")

TRT_SPEC = ">=10.3,<12"
MIN_TRT = "10.3"
DEFAULT_WORKSPACE_MB = 2048
DEFAULT_POSE_BATCH = (1, 8, 32)
DEFAULT_DET_BATCH = (1, 1, 1)
TRT_HINT = ("pip install 'edgepose[trt]' on a desktop GPU (TensorRT 10.3-11.x wheels); on Jetson use JetPack 6's "
            "system TensorRT from a venv created with --system-site-packages (see docs/tensorrt.md)")


# ====================================================================== version gates
def parse_trt_version(text: str):
    """``"10.3.0.30"`` / ``"11.1.0"`` / ``"10.7.0.post1"`` -> ``packaging.version.Version``."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(str(text).split("+")[0])
    except InvalidVersion:
        raise DependencyError(f"cannot read the TensorRT version {text!r}; edgepose needs TensorRT {TRT_SPEC}") \
            from None


def check_trt_version(text: str):
    """Return the Version when TensorRT ``text`` is supported (10.3 <= v < 12), else DependencyError."""
    from packaging.specifiers import SpecifierSet

    version = parse_trt_version(text)
    if version.release[:2] < (10, 3) or version not in SpecifierSet(TRT_SPEC, prereleases=True):
        if version.major >= 12:
            why = "TensorRT 12 and later are not supported yet (their API has not been checked)"
        else:
            why = "older TensorRT lacks the strongly typed ONNX path edgepose relies on"
        raise DependencyError(f"TensorRT {text} found; edgepose needs TensorRT {TRT_SPEC} ({why}). {TRT_HINT}")
    return version


def strongly_typed_mode(text: str) -> str:
    """How to get a strongly typed network: ``"flag"`` (10.x: NetworkDefinitionCreationFlag.
    STRONGLY_TYPED) or ``"always"`` (11.x: the only mode; the flag is deprecated/ignored)."""
    version = check_trt_version(text)
    return "always" if version.major >= 11 else "flag"


def network_flags(trt, text: str) -> int:
    """The ``create_network`` flags for TensorRT ``text``."""
    if strongly_typed_mode(text) == "flag":
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def dla_supported(text: str) -> tuple:
    """``(ok, note)``: DLA on 10.x (JetPack 6, Orin/Xavier); on 11.x only some packages ship it
    (TensorRT 11.4.1+ with JetPack 7.2.2+ on AGX Orin; 11.0-11.4.0 had none)."""
    version = check_trt_version(text)
    if version.major == 10:
        return True, ""
    if version.release[:3] >= (11, 4, 1):
        return True, "TensorRT 11.x runs DLA only on Jetson AGX Orin with JetPack 7.2.2 or later"
    return False, (f"TensorRT {text} has no DLA support (11.0-11.4.0 dropped it; 11.4.1+ brings it back for "
                   "JetPack 7.2.2+ on AGX Orin); build without --dla")


def import_tensorrt():
    """``import tensorrt`` with the version gate; DependencyError when missing or unsupported."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DependencyError(f"TensorRT cannot be imported ({exc}). {TRT_HINT}") from None
    except OSError as exc:  # the wheel is there but libnvinfer is not loadable
        raise DependencyError(f"TensorRT is installed but its libraries cannot be loaded ({exc}). {TRT_HINT}") \
            from None
    version = getattr(trt, "__version__", None)
    if version is None:
        raise DependencyError(f"cannot tell the TensorRT version (tensorrt.__version__ missing). {TRT_HINT}")
    check_trt_version(version)
    return trt


def tensorrt_status() -> tuple:
    """``(True, "TensorRT 10.3.0 on Orin (sm 8.7)")`` when engines can be built here, else
    ``(False, reason)``; never raises.  ``edgepose build`` prints the reason in one line."""
    try:
        trt = import_tensorrt()
    except DependencyError as exc:
        return False, str(exc)
    try:
        from edgepose.backends import cuda_mem

        info = cuda_mem.device_info(0)
    except (DependencyError, EngineError) as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 -- report the driver problem, do not crash `build`
        return False, f"the CUDA runtime does not work here ({type(exc).__name__}: {exc})"
    return True, f"TensorRT {trt.__version__} on {info['name']} (compute capability {info['compute_capability']})"


# ====================================================================== ONNX inputs -> profiles
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


# ====================================================================== logging / progress
_SEVERITY_LEVELS = {
    "INTERNAL_ERROR": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "INFO": logging.DEBUG,        # TensorRT's INFO is a build diary; keep it out of the user's way
    "VERBOSE": logging.DEBUG - 5,
}


def severity_to_level(severity) -> int:
    """TensorRT ``ILogger.Severity`` (enum or its name) -> Python logging level."""
    name = getattr(severity, "name", None) or str(severity).rsplit(".", 1)[-1]
    return _SEVERITY_LEVELS.get(name.upper(), logging.INFO)


def min_severity(trt, logger: logging.Logger):
    """The least severe TensorRT severity worth producing for ``logger``'s effective level."""
    level = logger.getEffectiveLevel()
    S = trt.ILogger.Severity
    for name in ("VERBOSE", "INFO", "WARNING", "ERROR"):
        if _SEVERITY_LEVELS[name] >= level:
            return getattr(S, name)
    return S.INTERNAL_ERROR


def make_logger(trt, logger: logging.Logger | None = None):
    """A ``trt.ILogger`` that forwards TensorRT's messages to Python ``logging``."""
    logger = logger or log

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            level = severity_to_level(severity)
            if level >= logging.ERROR:
                self.errors.append(str(msg))
            logger.log(level, "TensorRT: %s", msg)

    instance = _Logger()
    try:
        instance.min_severity = min_severity(trt, logger)
    except AttributeError:
        pass
    return instance


class _Progress:
    """Phase/step bookkeeping shared by the IProgressMonitor adapter (thread-safe)."""

    def __init__(self, logger: logging.Logger, label: str):
        self.logger, self.label = logger, label
        self.lock = threading.Lock()
        self.phases = {}
        self.cancelled = False

    def start(self, phase, parent, steps):
        with self.lock:
            self.phases[phase] = (parent, int(steps), time.monotonic())
            if parent is None:
                self.logger.info("%s: %s (%d steps)", self.label, phase, steps)

    def step(self, phase, step) -> bool:
        with self.lock:
            parent, steps, _ = self.phases.get(phase, (None, 0, 0.0))
            if parent is None and steps >= 10 and (step + 1) % max(1, steps // 10) == 0:
                self.logger.info("%s: %s %d%%", self.label, phase, int(100 * (step + 1) / steps))
            return not self.cancelled

    def finish(self, phase):
        with self.lock:
            parent, _, started = self.phases.pop(phase, (None, 0, time.monotonic()))
            if parent is None:
                self.logger.info("%s: %s done in %.1f s", self.label, phase, time.monotonic() - started)


def make_progress_monitor(trt, logger: logging.Logger, label: str):
    """An ``IProgressMonitor`` logging top-level phases, or None when TensorRT lacks the interface."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    state = _Progress(logger, label)

    class _Monitor(base):
        def __init__(self):
            base.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            state.start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return state.step(phase_name, step)

        def phase_finish(self, phase_name):
            state.finish(phase_name)

    return _Monitor()


class _Heartbeat:
    """Fallback progress: a log line every ``every`` seconds while the build runs."""

    def __init__(self, logger: logging.Logger, label: str, every: float = 15.0):
        self.logger, self.label, self.every = logger, label, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        started = time.monotonic()
        while not self._stop.wait(self.every):
            self.logger.info("%s: still building (%.0f s)", self.label, time.monotonic() - started)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=1.0)


# ====================================================================== parser errors
def format_parser_errors(parser, onnx_path) -> str:
    """One line per ONNX-parser error: node index, name and operator, and the description."""
    lines = []
    for i in range(int(getattr(parser, "num_errors", 0))):
        err = parser.get_error(i)

        def field(attr):
            fn = getattr(err, attr, None)
            try:
                return fn() if callable(fn) else fn
            except Exception:  # noqa: BLE001 -- older bindings lack some accessors
                return None

        node, name, op, desc = field("node"), field("node_name"), field("node_operator"), field("desc")
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


# ====================================================================== plugins
def prepare_plugins(onnx_path, plugin_lib=None) -> list:
    """Load the plugin library before parsing when the graph has edgepose plugin nodes.
    Returns the sorted plugin op types (empty when none); PluginError naming the ops otherwise."""
    from edgepose import plugins

    ops = sorted(plugins.required_plugins(onnx_path))
    if not ops:
        return []
    if plugin_lib is not None:
        plugins.load(plugin_lib)
    plugins.ensure_plugins_for(onnx_path)
    return ops


def load_plugins_for_engine(ops, engine_path, plugin_lib=None):
    """Load the plugin library before deserializing an engine whose manifest lists plugin ops."""
    if not ops:
        return None
    from edgepose import plugins

    lib = plugin_lib or plugins.find_library()
    if lib is None:
        raise PluginError(f"{engine_path} uses the edgepose plugin op(s) {', '.join(sorted(ops))}, but "
                          f"{plugins.LIB_NAME} was not found. Build it with `{plugins.BUILD_COMMAND}` or set "
                          f"{plugins.ENV_VAR} to its path")
    return plugins.load(lib)


# ====================================================================== timing cache
def default_timing_cache(trt_version: str, compute_capability: str) -> Path:
    """One cache per TensorRT version and GPU type, shared by all builds of this user."""
    root = Path(os.environ.get("EDGEPOSE_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not os.environ.get("EDGEPOSE_CACHE"):
        root = root / "edgepose"
    cc = str(compute_capability).replace(".", "")
    return root / f"trt-{trt_version}-sm{cc}.timing"


def _attach_timing_cache(config, path: Path | None, logger):
    if path is None:
        return None
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    ok = config.set_timing_cache(cache, False)
    if ok is False and data:
        logger.warning("edgepose: timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    elif data:
        logger.info("reusing timing cache %s", path)
    return cache


def _save_timing_cache(config, path: Path | None, logger):
    if path is None:
        return
    from edgepose.io_utils import atomic_path

    cache = config.get_timing_cache()
    if cache is None:
        return
    blob = cache.serialize()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(bytes(memoryview(blob)))
    except OSError as exc:  # a read-only home must not fail the build
        logger.warning("edgepose: could not save the timing cache to %s (%s)", path, exc)


# ====================================================================== build
def _np_dtype_name(trt, dtype) -> str:
    try:
        import numpy as np

        return np.dtype(trt.nptype(dtype)).name
    except (TypeError, KeyError, AttributeError):
        return str(getattr(dtype, "name", dtype)).lower()


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


def _precision_of(meta, onnx_path) -> str:
    if meta is not None and meta.precision:
        return meta.precision
    for tag in ("int8", "fp16"):
        if f".{tag}." in Path(onnx_path).name:
            return tag
    return "fp32"


def _edgepose_version():
    try:
        from importlib.metadata import version

        return version("edgepose")
    except Exception:  # noqa: BLE001 -- not installed as a distribution (source checkout)
        return None


def build_options(*, profiles, workspace_mb, dla_core, gpu_fallback, opt_level, calib_hash, plugins) -> dict:
    """The options recorded in the manifest (the keyed subset is in engine_manifest.KEYED_OPTIONS)."""
    return {"profiles": profiles, "workspace_mb": int(workspace_mb), "dla_core": dla_core,
            "gpu_fallback": bool(gpu_fallback) if dla_core is not None else None, "opt_level": opt_level,
            "calib_hash": calib_hash, "plugins": list(plugins)}


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
    from edgepose.backends import cuda_mem
    from edgepose.backends.engine_manifest import EngineManifest, cache_key, is_up_to_date, write_manifest
    from edgepose.errors import MetadataError
    from edgepose.io_utils import atomic_path, sha256_file
    from edgepose.metadata import read_metadata

    logger = log or globals()["log"]
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path}: no such ONNX file; write it first with `edgepose export` / `edgepose build`")
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    trt = import_tensorrt()
    version = trt.__version__
    mode = strongly_typed_mode(version)
    info = cuda_mem.device_info(device)
    cuda_mem.set_device(device)

    try:
        meta = read_metadata(onnx_path)
    except MetadataError:
        meta = None
        logger.warning("edgepose: %s has no edgepose metadata; the engine will need --input-size/--mean/--std "
                       "at run time", onnx_path)
    precision = _precision_of(meta, onnx_path)
    if dla_core is not None:
        if precision not in ("fp16", "int8"):
            raise UsageError(f"--dla runs only FP16/INT8 layers, but {onnx_path.name} is {precision}; build with "
                             "--fp16 or --int8 (the precision lives in the ONNX)")
        ok, note = dla_supported(version)
        if not ok:
            raise EngineError(note)
        if note:
            logger.warning("edgepose: %s", note)

    inputs = onnx_inputs(onnx_path)
    profiles = compute_profiles(inputs, meta, pose_batch=pose_batch, det_batch=det_batch, det_hw=det_hw)
    plugin_ops = prepare_plugins(onnx_path, plugin_lib)
    options = build_options(profiles=profiles, workspace_mb=workspace_mb, dla_core=dla_core,
                            gpu_fallback=gpu_fallback, opt_level=opt_level, calib_hash=calib_hash, plugins=plugin_ops)
    onnx_sha = sha256_file(onnx_path)
    key = cache_key(onnx_sha, version, info["compute_capability"], options)
    if not force:
        current, why = is_up_to_date(engine_path, key)
        if current:
            logger.info("%s is up to date (same ONNX, TensorRT %s, sm %s and options); not rebuilding",
                        engine_path, version, info["compute_capability"])
            return engine_path
        logger.info("building %s: %s", engine_path.name, why)

    if timing_cache is False:
        cache_path = None
    else:
        cache_path = Path(timing_cache) if timing_cache else default_timing_cache(version, info["compute_capability"])

    trt_logger = make_logger(trt, logger)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(network_flags(trt, version))
    parser = trt.OnnxParser(network, trt_logger)
    if dla_core is not None and hasattr(trt, "OnnxParserFlag") and hasattr(trt.OnnxParserFlag, "ADJUST_FOR_DLA"):
        parser.set_flag(trt.OnnxParserFlag.ADJUST_FOR_DLA)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineError(format_parser_errors(parser, onnx_path))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if opt_level is not None:
        config.builder_optimization_level = int(opt_level)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
        if config.add_optimization_profile(profile) < 0:
            raise EngineError(f"TensorRT rejected the optimisation profile {profiles} for {onnx_path.name}; "
                              "check the batch/size ranges (pose_batch, det_hw)")
    if dla_core is not None:
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if not 0 <= int(dla_core) < cores:
            raise EngineError(f"--dla {dla_core}: this device has {cores} DLA core(s) "
                              f"({'use 0..' + str(cores - 1) if cores else 'DLA exists on Jetson Xavier/Orin only'}); "
                              "drop --dla to build for the GPU")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        if gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = _attach_timing_cache(config, cache_path, logger)  # noqa: F841 -- must outlive the build
    label = f"building {engine_path.name}"
    monitor = make_progress_monitor(trt, logger, label)
    if monitor is not None:
        config.progress_monitor = monitor

    logger.info("%s: TensorRT %s, %s, strongly typed (%s), workspace %d MiB%s%s", label, version, precision,
                "creation flag" if mode == "flag" else "always on in 11.x", workspace_mb,
                f", DLA core {dla_core}" if dla_core is not None else "",
                f", profiles {profiles}" if profiles else "")
    started = time.monotonic()
    if monitor is None:
        with _Heartbeat(logger, label):
            serialized = builder.build_serialized_network(network, config)
    else:
        serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - started
    if serialized is None:
        errors = "; ".join(trt_logger.errors[-3:]) if trt_logger.errors else "see the TensorRT messages above"
        raise EngineError(f"TensorRT could not build {engine_path.name} from {onnx_path.name} ({errors}). Try a "
                          f"larger workspace (--workspace, now {workspace_mb} MiB), a smaller max batch, or run with "
                          "--verbose for TensorRT's full log")
    blob = bytes(memoryview(serialized))
    _save_timing_cache(config, cache_path, logger)

    inputs_spec, outputs_spec = _io_specs(trt, network, profiles)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(blob)
    manifest = EngineManifest(
        engine=engine_path.name, tensorrt_version=version, compute_capability=info["compute_capability"],
        onnx_sha256=onnx_sha, cache_key=key, precision=precision, gpu_name=info["name"],
        cuda_runtime=info["cuda_runtime"], cuda_driver=info["cuda_driver"], onnx_name=onnx_path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(), engine_bytes=len(blob), calib_hash=calib_hash,
        inputs=inputs_spec, outputs=outputs_spec,
        build_options={**options, "timing_cache": str(cache_path) if cache_path else None, "device": device},
        plugins=plugin_ops, meta_json=meta.to_json() if meta is not None else None, strongly_typed=mode,
        edgepose_version=_edgepose_version(), build_seconds=round(seconds, 2))
    write_manifest(manifest, engine_path)
    logger.info("wrote %s (%.1f MB, %.0f s) and %s.json", engine_path, len(blob) / 1e6, seconds, engine_path.name)
    return engine_path


def build_engines(onnx_paths, out_dir=None, **options) -> list:
    """``onnx2engine`` for each ONNX file; engines go to ``out_dir`` (default: beside each ONNX)
    as ``<stem>.engine`` (``det.int8.onnx`` -> ``det.int8.engine``).  Returns the engine paths."""
    engines = []
    for onnx_path in onnx_paths:
        onnx_path = Path(onnx_path)
        target = (Path(out_dir) if out_dir else onnx_path.parent) / (onnx_path.stem + ".engine")
        engines.append(onnx2engine(onnx_path, target, **options))
    return engines
