"""The ``X.engine.json`` manifest beside every TensorRT engine, its cache key and the
compatibility check ``run`` does before deserializing an engine.

A serialized TensorRT engine is tied to the exact TensorRT version that built it and to the
GPU's compute capability (TensorRT's serialized plans are not covered by semantic
versioning unless built "version compatible", which edgepose does not do).  The manifest
records both, plus everything needed to know whether a rebuild is due:

* ``cache_key``: SHA-256 over (ONNX SHA-256, TensorRT version, compute capability, the
  build options that change the engine).  ``edgepose build`` skips the build when the key of
  the manifest on disk equals the key it would build now and the engine file is intact.
  Fields that do not change the engine (GPU marketing name, timestamps, log level, timing
  cache path, ``force``) are not part of it.
* I/O names, shapes (``None`` = dynamic) and dtypes, optimisation profiles, precision,
  calibration hash, plugin ops, and the :class:`~edgepose.metadata.ModelMeta` JSON copied
  from the ONNX so the runtime can preprocess without the ONNX file.

Nothing here imports TensorRT or CUDA.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgepose.errors import EngineError
from edgepose.io_utils import atomic_path, sha256_file

SCHEMA = 1
_REBUILD = "rebuild the engine with `edgepose build --fp16|--int8 --out DIR --force`"
MANIFEST_SUFFIX = ".json"

# Build options that change the engine TensorRT produces.  Anything else in
# ``build_options`` (timing-cache path, verbosity, force, ...) is recorded but not keyed.
KEYED_OPTIONS = (
    "profiles",         # min/opt/max shapes per dynamic input
    "workspace_mb",     # memory-pool limit bounds the tactics TensorRT may choose
    "dla_core",         # None = GPU only
    "gpu_fallback",     # DLA: layers the DLA cannot run go to the GPU
    "opt_level",        # builder optimisation level, when set
    "calib_hash",       # INT8 scales come from the calibration set (already in the ONNX, keyed anyway)
    "plugins",          # plugin ops the network uses
)


def manifest_path(engine_path) -> Path:
    """``X.engine`` -> ``X.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + MANIFEST_SUFFIX)


def _canonical(value):
    """JSON-stable form: tuples -> lists, dict keys sorted by json.dumps."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def keyed_options(options: dict) -> dict:
    """The subset of ``options`` that takes part in the cache key (missing keys -> None)."""
    return {name: _canonical(options.get(name)) for name in KEYED_OPTIONS}


def cache_key(onnx_sha256: str, trt_version: str, compute_capability: str, options: dict) -> str:
    """SHA-256 hex digest of everything that determines the engine bytes."""
    payload = {
        "schema": SCHEMA,
        "onnx_sha256": str(onnx_sha256),
        "tensorrt": str(trt_version),
        "compute_capability": str(compute_capability),
        "options": keyed_options(options),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class EngineManifest:
    """What ``X.engine.json`` holds.  ``inputs``/``outputs``: lists of
    ``{"name", "shape", "dtype"}`` (shape entries ``None`` when dynamic); inputs with a
    profile also carry ``"profile": [min, opt, max]``."""

    engine: str
    tensorrt_version: str
    compute_capability: str
    onnx_sha256: str
    cache_key: str
    precision: str = "fp32"
    gpu_name: str = ""
    cuda_runtime: str | None = None
    cuda_driver: str | None = None
    onnx_name: str = ""
    engine_sha256: str | None = None
    engine_bytes: int | None = None
    calib_hash: str | None = None
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    build_options: dict = field(default_factory=dict)
    plugins: list = field(default_factory=list)
    meta_json: str | None = None
    strongly_typed: str = "flag"
    edgepose_version: str | None = None
    created: float = field(default_factory=time.time)
    build_seconds: float | None = None

    # ------------------------------------------------------------------ (de)serialisation
    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, **_canonical(asdict(self))}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> "EngineManifest":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EngineError(f"{source} is not valid JSON ({exc}); {_REBUILD}") from None
        if not isinstance(data, dict):
            raise EngineError(f"{source} is not an engine manifest; {_REBUILD}")
        schema = data.pop("schema", SCHEMA)
        if schema > SCHEMA:
            raise EngineError(f"{source} was written by a newer edgepose (manifest schema {schema}); upgrade edgepose")
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.name in ("engine", "tensorrt_version", "compute_capability",
                                                             "onnx_sha256", "cache_key") and f.name not in data]
        if missing:
            raise EngineError(f"{source} lacks {', '.join(missing)}; {_REBUILD}")
        return cls(**{k: v for k, v in data.items() if k in known})

    # ------------------------------------------------------------------ helpers
    @property
    def meta(self):
        """The :class:`ModelMeta` copied from the ONNX, or None."""
        if not self.meta_json:
            return None
        from edgepose.metadata import ModelMeta

        return ModelMeta.from_json(self.meta_json)

    def profile(self, name: str):
        for spec in self.inputs:
            if spec.get("name") == name:
                return spec.get("profile")
        return None

    @property
    def max_batch(self) -> int | None:
        """Largest batch the engine's first input accepts (profile max, or a static batch)."""
        if not self.inputs:
            return None
        first = self.inputs[0]
        prof = first.get("profile")
        if prof:
            return int(prof[2][0])
        shape = first.get("shape") or [None]
        return shape[0] if isinstance(shape[0], int) else None

    def rebuild_hint(self, engine_path=None) -> str:
        src = self.onnx_name or "the .onnx"
        where = Path(engine_path).parent if engine_path else Path(".")
        flag = f"--{self.precision} " if self.precision in ("fp16", "int8") else ""
        return (f"rebuild it on this machine from {src}: `edgepose build {flag}--out {where} --force` "
                f"(or python -c \"from edgepose.backends.trt.build import onnx2engine; "
                f"onnx2engine('{where / src}', force=True)\")")


# ---------------------------------------------------------------------- files
def write_manifest(manifest: EngineManifest, engine_path) -> Path:
    """Write ``X.engine.json`` atomically; return its path."""
    path = manifest_path(engine_path)
    with atomic_path(path) as tmp:
        tmp.write_text(manifest.to_json() + "\n", encoding="utf-8")
    return path


def read_manifest(engine_path) -> EngineManifest:
    """Read the manifest beside ``engine_path``; EngineError (with the rebuild command) when absent."""
    path = manifest_path(engine_path)
    if not path.is_file():
        raise EngineError(f"{engine_path} has no manifest {path.name} beside it, so edgepose cannot tell which "
                          "TensorRT/GPU built it or how to feed it; rebuild it with `edgepose build --fp16|--int8 "
                          "--out DIR --force` (engines and their .json travel together)")
    return EngineManifest.from_json(path.read_text(encoding="utf-8"), source=str(path))


def is_up_to_date(engine_path, key: str) -> tuple:
    """``(True, "")`` when ``engine_path`` and its manifest exist, the manifest's cache key is
    ``key`` and the engine bytes are the ones the manifest recorded; else ``(False, why)``."""
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        return False, "no engine yet"
    try:
        manifest = read_manifest(engine_path)
    except EngineError as exc:
        return False, str(exc).split(";")[0]
    if manifest.cache_key != key:
        return False, "the ONNX, TensorRT version, GPU or build options changed"
    if manifest.engine_bytes is not None and engine_path.stat().st_size != manifest.engine_bytes:
        return False, "the engine file size differs from its manifest"
    if manifest.engine_sha256 and sha256_file(engine_path) != manifest.engine_sha256:
        return False, "the engine file does not match its manifest's SHA-256"
    return True, ""


def _same_version(built: str, here: str) -> bool:
    """TensorRT plans need the same major.minor.patch(.build); compare numerically so that
    "10.3.0" == "10.3.0.0" but "10.3.0.30" != "10.3.0.26"."""
    from packaging.version import InvalidVersion, Version

    try:
        a, b = Version(str(built).split("+")[0]), Version(str(here).split("+")[0])
    except InvalidVersion:
        return str(built) == str(here)
    return a.release + (0,) * (4 - len(a.release)) == b.release + (0,) * (4 - len(b.release))


def check_compatible(manifest: EngineManifest, trt_version: str, compute_capability: str, engine_path=None):
    """Raise EngineError when the engine was built by another TensorRT version or for a GPU
    of another compute capability; the message says how to rebuild."""
    problems = []
    if not _same_version(manifest.tensorrt_version, trt_version):
        problems.append(f"TensorRT {manifest.tensorrt_version} built it, this machine has TensorRT {trt_version}")
    if str(manifest.compute_capability) != str(compute_capability):
        problems.append(f"it was built for compute capability {manifest.compute_capability}"
                        f"{' (' + manifest.gpu_name + ')' if manifest.gpu_name else ''}, this GPU is "
                        f"{compute_capability}")
    if problems:
        name = engine_path or manifest.engine
        raise EngineError(f"cannot run {name}: {'; '.join(problems)}. TensorRT engines only run with the TensorRT "
                          f"version and GPU type that built them; {manifest.rebuild_hint(engine_path)}")
