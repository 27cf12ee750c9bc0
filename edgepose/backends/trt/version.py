"""Which TensorRT edgepose works with, the lazy ``import tensorrt``, and what each release
supports (checked against snapshots of the real bindings in tests/data/trt_api).

Supported: TensorRT 10.3 (JetPack 6, Python 3.10) through 11.x.  The precision is already in
the ONNX (FP16 casts / INT8 Q/DQ), so the network is parsed *strongly typed*:

* TensorRT 10.x: ``create_network(1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))``
  (10.x: ``EXPLICIT_BATCH=0, STRONGLY_TYPED=1``);
* TensorRT 11.x: every network is strongly typed (``STRONGLY_TYPED=0`` is deprecated and
  ignored, ``EXPLICIT_BATCH`` is gone), so ``create_network(0)`` is used.
  ``BuilderFlag.FP16``/``INT8``/``OBEY_PRECISION_CONSTRAINTS`` and ``int8_calibrator`` are never used.

Nothing here calls into TensorRT proper: :func:`tensorrt_status` asks CUDA for a GPU first and
never creates a ``trt.Builder`` to find out.
"""
from __future__ import annotations

from edgepose.errors import DependencyError, EngineError

TRT_SPEC = ">=10.3,<12"
MIN_TRT = "10.3"
TRT_HINT = ("pip install 'edgepose[trt]' on a desktop GPU (TensorRT 10.3-11.x wheels, for CUDA 12 or 13); on Jetson "
            "use JetPack 6's system TensorRT from a venv created with --system-site-packages (see docs/tensorrt.md)")
# OnnxParserFlag.ADJUST_FOR_DLA appeared in TensorRT 10.16 (value 4); 10.3 (JetPack 6) builds DLA
# engines without it -- the builder's GPU fallback takes the layers the DLA cannot run.
ADJUST_FOR_DLA_SINCE = (10, 16)


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


def adjust_for_dla_supported(text: str) -> bool:
    """True when the ONNX parser of TensorRT ``text`` has ``OnnxParserFlag.ADJUST_FOR_DLA`` (10.16+)."""
    return check_trt_version(text).release[:2] >= ADJUST_FOR_DLA_SINCE


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
    """``(True, "TensorRT 10.3.0 on Orin (compute capability 8.7)")`` when engines can be built
    here, else ``(False, reason)``; never raises.  The GPU is checked through CUDA first, so a
    machine without one hears "no CUDA GPU" whether or not TensorRT imports."""
    from edgepose.backends.trt import cuda_mem

    try:
        info = cuda_mem.device_info(0)
        gpu_problem = None
    except (DependencyError, EngineError) as exc:
        info, gpu_problem = None, str(exc)
    try:
        trt = import_tensorrt()
    except DependencyError as exc:
        return False, "; ".join(p for p in (gpu_problem, str(exc)) if p)
    if gpu_problem:
        return False, gpu_problem
    return True, f"TensorRT {trt.__version__} on {info['name']} (compute capability {info['compute_capability']})"
