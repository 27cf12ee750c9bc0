"""Every TensorRT and cuda-python name edgepose uses exists in every supported release.

The names are not listed by hand: the build and run paths (GPU build with profiles, timing
cache and optimisation level, DLA build, parser error, failed build, runner inference and
close, status) run against the snapshot-made fakes of each release, which record every class,
method, property (read or write) and enum member the code touches.  Each recorded name is
then looked up in every snapshot in tests/data/trt_api (written from the real wheels by
tools/trt_api_snapshot.py), and in the installed tensorrt / cuda-python when there is one.
A name used only inside a version check must be listed in GUARDED with its range: it must
exist in every release of the range and must not be used outside it.
"""
import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pytest
from fakes.api import CUDA_VERSIONS, TRT_VERSIONS, cuda_runtime_snapshot, load_snapshot
from fakes.fake_cudart import STREAM, FakeCudart
from fakes.fake_tensorrt import FakeTensorRT
from helpers.paths import REPO
from helpers.trt_onnx import DET_META, POSE_META, tiny_onnx
from packaging.specifiers import SpecifierSet

from edgepose.backends.trt import build, cuda_mem, version
from edgepose.errors import EngineError
# names the code uses only behind a version check, and the releases that have them
GUARDED = {"OnnxParserFlag.ADJUST_FOR_DLA": ">=10.16"}  # build.parse_onnx, via version.adjust_for_dla_supported


# ====================================================================== looking names up in a snapshot
def has_name(snap: dict, name: str) -> bool:
    """``"tensorrt.X"``, ``"Cls()"`` (constructible), ``"Cls.attr"``, ``"Cls.prop="`` (writable),
    ``"Enum.MEMBER"``, ``"Outer.Inner.MEMBER"``, or a module function name (cuda)."""
    if name.startswith("tensorrt."):
        top = name.split(".", 1)[1]
        return top in snap["classes"] or top in snap["functions"] or top in snap["values"]
    if "." not in name and not name.endswith("()"):
        return name in snap["functions"] or name in snap["classes"]
    if name.endswith("()"):
        cls = snap["classes"].get(name[:-2])
        return bool(cls and cls["constructor"])
    write = name.endswith("=")
    owner, attr = name.rstrip("=").rsplit(".", 1)
    cls = snap["classes"].get(owner)
    if cls is None:
        return False
    if cls["kind"] == "enum" and attr in cls["members"]:
        return not write
    real = cls["attributes"].get(attr)
    if real is None:
        return False
    return not write or (real["kind"] == "property" and real["writable"])


# ====================================================================== the code paths, recorded
def _run_build_and_runner(trt_version, cuda_version, tmp_path, monkeypatch) -> tuple:
    from edgepose.backends.trt.runner import TensorRTRunner

    fake_trt, fake_cuda = FakeTensorRT(trt_version), FakeCudart(cuda_version)
    fake_trt.stream_handle = STREAM
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt.module)
    monkeypatch.setattr(cuda_mem, "_CUDART", fake_cuda.module)
    assert version.tensorrt_status()[0]
    pose = tiny_onnx(tmp_path / "pose.int8.onnx", ["N", 3, 4, 4], POSE_META.replace(precision="int8"))
    engine = build.onnx2engine(pose, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=tmp_path / "t.timing",
                               opt_level=3)
    build.onnx2engine(pose, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=tmp_path / "t.timing", opt_level=3,
                      force=True)  # with a timing cache to read back
    det = tiny_onnx(tmp_path / "det.fp16.onnx", [1, 3, 8, 8], DET_META.replace(precision="fp16"))
    if version.dla_supported(trt_version)[0]:
        build.onnx2engine(det, dla_core=0, timing_cache=False)
    with pytest.raises(EngineError):
        build.onnx2engine(tiny_onnx(tmp_path / "bad.onnx", [1, 3, 8, 8], DET_META, op="NoSuchOp"), timing_cache=False)
    fake_trt.fail_build = True
    with pytest.raises(EngineError):
        build.onnx2engine(det, timing_cache=False, force=True)
    with TensorRTRunner(engine) as runner:
        x = np.ones((3, 3, 4, 4), np.float32)
        np.testing.assert_array_equal(runner.infer({"input": x})["out"], 2 * x)
    return fake_trt.recorder.used, fake_cuda.recorder.used


@pytest.fixture(scope="module")
def used(tmp_path_factory):
    """``{"tensorrt": {version: names}, "cuda": {version: names}}`` from running the code paths."""
    out = {"tensorrt": {}, "cuda": {}}
    trt_log = logging.getLogger("edgepose.tensorrt")
    level = trt_log.level
    with pytest.MonkeyPatch.context() as mp:
        trt_log.setLevel(logging.DEBUG)  # every log() branch runs
        for i, trt_version in enumerate(TRT_VERSIONS):
            cuda_version = CUDA_VERSIONS[i % len(CUDA_VERSIONS)]
            trt_names, cuda_names = _run_build_and_runner(trt_version, cuda_version,
                                                          tmp_path_factory.mktemp(f"t{i}"), mp)
            out["tensorrt"][trt_version] = trt_names
            out["cuda"].setdefault(cuda_version, set()).update(cuda_names)
        for cuda_version in CUDA_VERSIONS:  # every cuda-python release through the runner path too
            _, cuda_names = _run_build_and_runner(TRT_VERSIONS[0], cuda_version,
                                                  tmp_path_factory.mktemp(f"c{cuda_version}"), mp)
            out["cuda"].setdefault(cuda_version, set()).update(cuda_names)
        trt_log.setLevel(level)
    return out


def _in_range(name, trt_version) -> bool:
    return trt_version.split("+")[0] in SpecifierSet(GUARDED[name], prereleases=True)


# ====================================================================== the contract
def test_the_code_paths_touch_the_api_they_should(used):
    names = set().union(*used["tensorrt"].values())
    for expected in ("Builder()", "Builder.build_serialized_network", "IBuilderConfig.set_memory_pool_limit",
                     "IBuilderConfig.builder_optimization_level=", "IBuilderConfig.DLA_core=",
                     "BuilderFlag.GPU_FALLBACK",
                     "IExecutionContext.set_tensor_address", "IExecutionContext.execute_async_v3",
                     "ICudaEngine.get_tensor_profile_shape", "OnnxParser.parse_from_file", "tensorrt.nptype"):
        assert expected in names, f"{expected} not exercised: the contract would not cover it"
    assert {"cudaMemcpyAsync", "cudaGetDeviceCount", "cudaError_t.cudaSuccess"} <= set().union(*used["cuda"].values())


@pytest.mark.parametrize("snapshot", TRT_VERSIONS)
def test_tensorrt_names_exist_in_every_supported_release(used, snapshot):
    snap = load_snapshot("tensorrt", snapshot)
    everywhere = set().union(*used["tensorrt"].values())
    missing = sorted(n for n in everywhere - set(GUARDED) if not has_name(snap, n))
    assert missing == [], f"TensorRT {snapshot} lacks {missing}: guard them by version (GUARDED) or stop using them"
    for name in GUARDED:
        if _in_range(name, snapshot):
            assert has_name(snap, name), f"{name} is guarded as {GUARDED[name]} but TensorRT {snapshot} lacks it"
        else:
            assert name not in used["tensorrt"][snapshot], \
                f"{name} used on TensorRT {snapshot}, outside {GUARDED[name]}"


def test_guards_are_needed_and_used(used):
    everywhere = set().union(*used["tensorrt"].values())
    for name, spec in GUARDED.items():
        assert name in everywhere, f"GUARDED lists {name}, which the code no longer uses"
        assert not all(has_name(load_snapshot("tensorrt", v), name) for v in TRT_VERSIONS), \
            f"{name} exists in every supported release; drop its guard"


@pytest.mark.parametrize("snapshot", CUDA_VERSIONS)
def test_cuda_names_exist_in_every_supported_release(used, snapshot):
    snap = cuda_runtime_snapshot(snapshot)
    everywhere = set().union(*used["cuda"].values())
    missing = sorted(n for n in everywhere if not has_name(snap, n))
    assert missing == [], f"cuda-python {snapshot} lacks {missing}"


# ====================================================================== the installed releases, when present
def _installed(module: str) -> list:
    try:
        return [module] if importlib.util.find_spec(module.split(".")[0]) is not None else []
    except (ImportError, ValueError):
        return []


def _live_snapshot(module: str) -> dict:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import trt_api_snapshot
    finally:
        sys.path.pop(0)
    return trt_api_snapshot.introspect(module, None)  # a subprocess: import + introspection only, no calls


def test_names_exist_in_the_installed_releases(used):
    """With tensorrt and/or cuda-python installed (a GPU machine, or the real bindings made
    importable with stub libraries: tools/trt_api_snapshot.py env), their live API is checked too."""
    for module in _installed("tensorrt") + _installed("cuda"):
        if module == "cuda":
            probe = subprocess.run([sys.executable, "-c", "import cuda.bindings.runtime"], capture_output=True)
            module = "cuda.bindings.runtime" if probe.returncode == 0 else "cuda.cudart"
        snap = _live_snapshot(module)
        if module == "tensorrt":
            version.check_trt_version(snap["version"])
            names = {n for n in set().union(*used["tensorrt"].values())
                     if n not in GUARDED or _in_range(n, snap["version"])}
        else:
            names = set().union(*used["cuda"].values())
        missing = sorted(n for n in names if not has_name(snap, n))
        assert missing == [], f"the installed {module} {snap['version']} lacks {missing}"
