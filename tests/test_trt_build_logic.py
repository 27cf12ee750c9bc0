"""TensorRT build/run logic that needs no GPU: version gates, profile computation, logger
mapping, parser-error messages, plugin error paths, the build cache (skip / rebuild), DLA
rules, and the runner's buffer handling.

TensorRT and cuda-python are replaced by small fakes *only at the library boundary*: the fake
builder records what edgepose configured and returns bytes describing the network; the fake
cudart allocates real host memory with ctypes and really copies bytes, and the fake engine
computes ``out = 2 * input`` from the memory the runner bound.  What is checked is edgepose's
own logic (which flags/profiles/limits it computes, when it rebuilds, what it writes, how the
runner binds, grows and frees buffers), never a value the fake made up.
"""
import ctypes
import enum
import json
import logging
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgepose.backends import cuda_mem, tensorrt_build as tb
from edgepose.backends.engine_manifest import read_manifest
from edgepose.errors import DependencyError, EngineError, PluginError, UsageError
from edgepose.metadata import ModelMeta, attach_metadata


# ====================================================================== tiny ONNX files
def _onnx(path, shape, meta=None, op="Mul", domain=""):
    dims = [d if isinstance(d, int) else str(d) for d in shape]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    if op == "Mul":
        node = helper.make_node("Mul", ["input", "two"], ["out"], name="times_two")
    else:
        node = helper.make_node(op, ["input"], ["out"], name="odd_node", domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [two]), opset_imports=opsets)
    model.ir_version = 8
    if meta is not None:
        attach_metadata(model, meta)
    onnx.save(model, str(path))
    return path


POSE_META = ModelMeta(model="tiny_pose", task="sppe", input_size=(4, 4), batch=None, channel_order="RGB")
DET_META = ModelMeta(model="tiny_det", task="ctdet", input_size=(512, 512), batch=1,
                     extra={"min_input_size": [256, 320], "max_input_size": [768, 1024]})


# ====================================================================== version gates
@pytest.mark.parametrize("version, mode", [("10.3.0.30", "flag"), ("10.3", "flag"), ("10.7.0.post1", "flag"),
                                           ("10.16.1", "flag"), ("11.0.0", "always"), ("11.4.1.2", "always")])
def test_supported_versions_and_strong_typing_path(version, mode):
    assert tb.strongly_typed_mode(version) == mode


@pytest.mark.parametrize("version", ["10.2.0.19", "10.2", "8.6.1", "12.0.0", "12.1", "not-a-version"])
def test_unsupported_versions_are_refused(version):
    with pytest.raises(DependencyError, match=r">=10.3,<12"):
        tb.check_trt_version(version)


def test_network_flags_follow_the_version():
    trt = _fake_trt("10.3.0")
    assert tb.network_flags(trt, "10.3.0") == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) != 0
    assert tb.network_flags(trt, "11.1.0") == 0


def test_dla_support_by_version():
    assert tb.dla_supported("10.3.0")[0]
    ok, note = tb.dla_supported("11.2.0")
    assert not ok and "--dla" in note
    ok, note = tb.dla_supported("11.4.1")
    assert ok and "JetPack 7.2.2" in note


# ====================================================================== profiles
def test_profile_static_input_needs_none(tmp_path):
    inputs = tb.onnx_inputs(_onnx(tmp_path / "s.onnx", [1, 3, 512, 512], DET_META))
    assert inputs == [("input", (1, 3, 512, 512))]
    assert tb.compute_profiles(inputs, DET_META) == {}
    assert tb.profile_max_batch({}, inputs) == 1


def test_profile_pose_dynamic_batch(tmp_path):
    inputs = tb.onnx_inputs(_onnx(tmp_path / "p.onnx", ["N", 3, 256, 192], POSE_META))
    assert inputs == [("input", (None, 3, 256, 192))]
    prof = tb.compute_profiles(inputs, POSE_META)
    assert prof == {"input": [[1, 3, 256, 192], [8, 3, 256, 192], [32, 3, 256, 192]]}
    assert tb.profile_max_batch(prof, inputs) == 32
    prof = tb.compute_profiles(inputs, POSE_META, pose_batch=(2, 4, 16))
    assert prof["input"][0][0] == 2 and prof["input"][1][0] == 4 and prof["input"][2][0] == 16
    with pytest.raises(UsageError, match="min <= opt <= max"):
        tb.compute_profiles(inputs, POSE_META, pose_batch=(8, 4, 16))


def test_profile_detector_batch_and_dynamic_hw(tmp_path):
    inputs = tb.onnx_inputs(_onnx(tmp_path / "d.onnx", ["N", 3, "H", "W"], DET_META))
    prof = tb.compute_profiles(inputs, DET_META, det_batch=(1, 1, 2))
    assert prof == {"input": [[1, 3, 256, 320], [1, 3, 512, 512], [2, 3, 768, 1024]]}
    prof = tb.compute_profiles(inputs, DET_META, det_hw=((128, 128), (384, 384), (640, 640)))
    assert prof["input"][0][2:] == [128, 128] and prof["input"][2][2:] == [640, 640]
    # metadata without a range: fixed at the exported size
    plain = DET_META.replace(extra={})
    assert tb.compute_profiles(inputs, plain)["input"] == [[1, 3, 512, 512]] * 3
    with pytest.raises(EngineError, match="no edgepose metadata"):
        tb.compute_profiles(inputs, None)
    with pytest.raises(UsageError, match="min <= opt <= max"):
        tb.compute_profiles(inputs, DET_META, det_hw=((600, 600), (512, 512), (768, 768)))


def test_unreadable_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x08:broken")
    with pytest.raises(UsageError, match="not a readable ONNX"):
        tb.onnx_inputs(bad)


def test_profile_refuses_other_dynamic_axes(tmp_path):
    inputs = tb.onnx_inputs(_onnx(tmp_path / "c.onnx", [1, "C", 64, 64], DET_META))
    with pytest.raises(EngineError, match="dynamic axis 1"):
        tb.compute_profiles(inputs, DET_META)


# ====================================================================== logger, parser errors
def test_severity_mapping():
    Sev = enum.IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")
    assert tb.severity_to_level(Sev.INTERNAL_ERROR) == logging.CRITICAL
    assert tb.severity_to_level(Sev.ERROR) == logging.ERROR
    assert tb.severity_to_level(Sev.WARNING) == logging.WARNING
    assert tb.severity_to_level(Sev.INFO) == logging.DEBUG
    assert tb.severity_to_level(Sev.VERBOSE) < logging.DEBUG
    assert tb.severity_to_level("Severity.WARNING") == logging.WARNING
    trt = _fake_trt("10.3.0")
    quiet = logging.getLogger("edgepose.test.quiet")
    quiet.setLevel(logging.WARNING)
    assert tb.min_severity(trt, quiet) == trt.ILogger.Severity.WARNING
    quiet.setLevel(logging.DEBUG)
    assert tb.min_severity(trt, quiet) == trt.ILogger.Severity.INFO


def test_trt_messages_reach_python_logging(caplog):
    trt = _fake_trt("10.3.0")
    logger = tb.make_logger(trt, logging.getLogger("edgepose.test.trt"))
    with caplog.at_level(logging.DEBUG, logger="edgepose.test.trt"):
        logger.log(trt.ILogger.Severity.ERROR, "bad thing")
        logger.log(trt.ILogger.Severity.INFO, "diary")
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels == {"TensorRT: bad thing": logging.ERROR, "TensorRT: diary": logging.DEBUG}
    assert logger.errors == ["bad thing"]


def test_progress_monitor_logs_top_level_phases(caplog):
    trt = _fake_trt("10.3.0")
    mon = tb.make_progress_monitor(trt, logging.getLogger("edgepose.test.progress"), "building x.engine")
    with caplog.at_level(logging.INFO, logger="edgepose.test.progress"):
        mon.phase_start("Building engine", None, 20)
        mon.phase_start("Tactic search", "Building engine", 3)
        keep = [mon.step_complete("Tactic search", i) for i in range(3)]
        keep += [mon.step_complete("Building engine", i) for i in range(20)]
        mon.phase_finish("Tactic search")
        mon.phase_finish("Building engine")
    text = [r.getMessage() for r in caplog.records]
    assert all(keep)
    assert text[0] == "building x.engine: Building engine (20 steps)"
    assert "building x.engine: Building engine 50%" in text and "building x.engine: Building engine 100%" in text
    assert not any("Tactic search" in t for t in text)  # nested phases stay quiet
    assert text[-1].startswith("building x.engine: Building engine done in")
    del trt.IProgressMonitor
    assert tb.make_progress_monitor(trt, logging.getLogger("x"), "l") is None


# ====================================================================== tensorrt_status
def test_status_without_tensorrt_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = tb.tensorrt_status()
    assert ok is False and "TensorRT cannot be imported" in reason and "edgepose[trt]" in reason


def test_status_with_too_old_tensorrt(fakes):
    fakes.use("10.2.0.19")
    ok, reason = tb.tensorrt_status()
    assert ok is False and "10.2.0.19" in reason and ">=10.3" in reason


def test_status_without_gpu(fakes):
    fakes.use("10.3.0")
    fakes.cudart.devices = 0
    ok, reason = tb.tensorrt_status()
    assert ok is False and "no CUDA GPU" in reason


def test_status_ready(fakes):
    fakes.use("11.1.0")
    ok, reason = tb.tensorrt_status()
    assert ok and "TensorRT 11.1.0" in reason and "Fake GPU" in reason and "8.7" in reason


# ====================================================================== onnx2engine glue
def test_build_configures_strongly_typed_profiles_workspace_and_cache(fakes, tmp_path):
    trt = fakes.use("10.3.0.30")
    onnx_path = _onnx(tmp_path / "pose.int8.onnx", ["N", 3, 4, 4], POSE_META.replace(precision="int8"))
    cache = tmp_path / "cache" / "t.timing"
    engine = tb.onnx2engine(onnx_path, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=cache,
                            calib_hash="feed")
    b = trt.Builder.last
    assert engine == tmp_path / "pose.int8.engine" and engine.is_file()
    assert b.network_flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert b.config.pools == {trt.MemoryPoolType.WORKSPACE: 64 << 20}
    assert b.config.profiles[0].shapes == {"input": ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4))}
    assert b.config.progress_monitor is not None
    assert cache.read_bytes() == b"timing:" + b"|built"  # new cache, serialized after the build
    m = read_manifest(engine)
    assert m.tensorrt_version == "10.3.0.30" and m.compute_capability == "8.7" and m.gpu_name == "Fake GPU"
    assert m.precision == "int8" and m.calib_hash == "feed" and m.strongly_typed == "flag"
    assert m.cuda_runtime == "12.6" and m.onnx_name == "pose.int8.onnx"
    assert m.inputs == [{"name": "input", "shape": [None, 3, 4, 4], "dtype": "float32",
                         "profile": [[1, 3, 4, 4], [2, 3, 4, 4], [4, 3, 4, 4]]}]
    assert m.outputs == [{"name": "out", "shape": [None, 3, 4, 4], "dtype": "float32"}]
    assert m.meta == POSE_META.replace(precision="int8") and m.max_batch == 4

    # same inputs: skipped; the timing cache is read back next time a build does run
    assert tb.onnx2engine(onnx_path, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=cache,
                          calib_hash="feed") == engine
    assert trt.Builder.builds == 1
    tb.onnx2engine(onnx_path, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=cache, calib_hash="feed",
                   force=True)
    assert trt.Builder.builds == 2 and trt.Builder.last.config.cache_loaded_from == b"timing:|built"
    tb.onnx2engine(onnx_path, workspace_mb=128, pose_batch=(1, 2, 4), timing_cache=cache, calib_hash="feed")
    assert trt.Builder.builds == 3  # an option that changes the engine -> rebuilt
    model = onnx.load(str(onnx_path))
    model.doc_string = "re-exported"
    onnx.save(model, str(onnx_path))  # other ONNX bytes -> rebuilt
    tb.onnx2engine(onnx_path, workspace_mb=128, pose_batch=(1, 2, 4), timing_cache=cache, calib_hash="feed")
    assert trt.Builder.builds == 4


def test_build_on_trt11_uses_no_creation_flag(fakes, tmp_path):
    trt = fakes.use("11.1.0")
    onnx_path = _onnx(tmp_path / "det.fp16.onnx", [1, 3, 8, 8], DET_META.replace(precision="fp16"))
    engine = tb.build_engines([onnx_path], tmp_path / "out", timing_cache=False)[0]
    assert engine == tmp_path / "out" / "det.fp16.engine"
    assert trt.Builder.last.network_flags == 0 and trt.Builder.last.config.profiles == []
    assert trt.Builder.last.config.timing_cache is None
    assert read_manifest(engine).strongly_typed == "always"


def test_parser_errors_name_the_nodes(fakes, tmp_path):
    fakes.use("10.3.0")
    onnx_path = _onnx(tmp_path / "bad.onnx", [1, 3, 8, 8], DET_META, op="NoSuchOp")
    with pytest.raises(EngineError) as err:
        tb.onnx2engine(onnx_path, timing_cache=False)
    text = str(err.value)
    assert "cannot parse" in text and "node 0 'odd_node' (NoSuchOp)" in text and "No importer" in text
    assert not (tmp_path / "bad.engine").exists()


def test_failed_build_says_what_to_try(fakes, tmp_path):
    trt = fakes.use("10.3.0")
    trt.Builder.fail = True
    onnx_path = _onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META)
    with pytest.raises(EngineError, match="out of memory.*--workspace"):
        tb.onnx2engine(onnx_path, timing_cache=False)
    assert not (tmp_path / "det.engine").exists() and not (tmp_path / "det.engine.json").exists()


def test_dla_rules(fakes, tmp_path):
    trt = fakes.use("10.3.0")
    fp32 = _onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META)
    with pytest.raises(UsageError, match="only FP16/INT8"):
        tb.onnx2engine(fp32, dla_core=0, timing_cache=False)
    fp16 = _onnx(tmp_path / "det.fp16.onnx", [1, 3, 8, 8], DET_META.replace(precision="fp16"))
    with pytest.raises(EngineError, match="2 DLA core"):
        tb.onnx2engine(fp16, dla_core=5, timing_cache=False)
    engine = tb.onnx2engine(fp16, dla_core=1, timing_cache=False)
    cfg = trt.Builder.last.config
    assert cfg.default_device_type == trt.DeviceType.DLA and cfg.DLA_core == 1
    assert trt.BuilderFlag.GPU_FALLBACK in cfg.flags
    assert trt.OnnxParserFlag.ADJUST_FOR_DLA in trt.Builder.last.parser_flags
    assert read_manifest(engine).build_options["dla_core"] == 1
    fakes.use("11.2.0")
    with pytest.raises(EngineError, match="no DLA support"):
        tb.onnx2engine(fp16, dla_core=0, timing_cache=False, force=True)


def test_missing_plugin_library_fails_before_parsing(fakes, tmp_path, monkeypatch):
    from edgepose import plugins

    trt = fakes.use("10.3.0")
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "PACKAGE_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(plugins, "BUILD_DIR", tmp_path / "nowhere")
    onnx_path = _onnx(tmp_path / "cn.onnx", [1, 3, 8, 8], DET_META.replace(task="cornernet"), op="CornerPool",
                      domain="edgepose")
    with pytest.raises(PluginError) as err:
        tb.onnx2engine(onnx_path, timing_cache=False)
    assert "CornerPool" in str(err.value) and "cmake" in str(err.value)
    assert trt.Builder.builds == 0 and trt.Builder.last is None
    with pytest.raises(PluginError, match="HeatmapTopK.*cmake"):
        tb.load_plugins_for_engine(["HeatmapTopK"], tmp_path / "det.engine")
    assert tb.load_plugins_for_engine([], tmp_path / "det.engine") is None


# ====================================================================== runner glue
def test_cuda_helpers(fakes):
    assert cuda_mem.format_cuda_version(12060) == "12.6" and cuda_mem.format_cuda_version(13000) == "13.0"
    assert cuda_mem.grow_size(1024, 100) == 1024  # fits: keep
    assert cuda_mem.grow_size(0, 1) == 256
    assert cuda_mem.grow_size(1024, 1100) == 1536  # at least 1.5x, so a creeping batch does not realloc each time
    assert cuda_mem.grow_size(1024, 5000) == 5120  # rounded up to 256 bytes
    with pytest.raises(EngineError, match="cudaMalloc.*cudaErrorFake"):
        cuda_mem.check((fakes.cudart.cudaError_t.cudaErrorMemoryAllocation,), "cudaMalloc(1)")
    assert cuda_mem.check((0, 5), "x") == 5 and cuda_mem.check((0, 1, 2), "x") == (1, 2)
    info = cuda_mem.device_info(0)
    assert info == {"name": "Fake GPU", "compute_capability": "8.7", "cuda_runtime": "12.6", "cuda_driver": "12.8",
                    "total_memory": 1 << 30}
    with pytest.raises(EngineError, match="GPU 3 does not exist"):
        cuda_mem.device_info(3)


def test_runner_binds_grows_reuses_and_frees_buffers(fakes, tmp_path):
    from edgepose.backends.tensorrt import TensorRTRunner

    trt = fakes.use("10.3.0")
    onnx_path = _onnx(tmp_path / "pose.onnx", ["N", 3, 4, 4], POSE_META)
    engine = tb.onnx2engine(onnx_path, pose_batch=(1, 2, 4), timing_cache=False)
    with pytest.raises(UsageError, match="unknown option"):
        TensorRTRunner(engine, batch_size=3)
    runner = TensorRTRunner(engine, threads=2, providers=["CPUExecutionProvider"])  # ORT options: ignored
    assert runner.backend == "tensorrt" and runner.max_batch == 4 and runner.static_batch is None
    assert [(s.name, s.shape, s.dtype) for s in runner.inputs] == [("input", (None, 3, 4, 4), np.float32)]
    assert runner.meta == POSE_META
    rng = np.random.default_rng(0)
    x2 = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = runner.infer({"input": x2})
    np.testing.assert_array_equal(out["out"], 2 * x2)
    mallocs = fakes.cudart.mallocs
    x1 = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(runner.infer({"input": x1})["out"], 2 * x1)
    assert fakes.cudart.mallocs == mallocs  # smaller batch: buffers reused
    x4 = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    first = runner.infer({"input": x4})["out"]
    np.testing.assert_array_equal(first, 2 * x4)
    assert fakes.cudart.mallocs > mallocs  # larger batch: grown
    assert trt.last_context.input_shapes["input"] == (4, 3, 4, 4)
    runner.infer({"input": x1})
    np.testing.assert_array_equal(first, 2 * x4)  # results are copies, not views of pinned memory
    with pytest.raises(UsageError, match=r"outside the engine's profile.*max_batch=4"):
        runner.infer({"input": np.zeros((5, 3, 4, 4), np.float32)})
    with pytest.raises(UsageError, match="dtype"):
        runner.infer({"input": x1.astype(np.float64)})
    assert fakes.cudart.live and fakes.cudart.streams == 1
    runner.close()
    assert fakes.cudart.live == {} and fakes.cudart.streams == 0
    runner.close()  # twice is fine
    with pytest.raises(UsageError, match="closed"):
        runner._infer({"input": x1})


def test_runner_refuses_engine_from_other_trt_or_gpu(fakes, tmp_path):
    from edgepose.backends.tensorrt import TensorRTRunner

    fakes.use("10.3.0.30")
    engine = tb.onnx2engine(_onnx(tmp_path / "det.int8.onnx", [1, 3, 8, 8], DET_META.replace(precision="int8")),
                            timing_cache=False)
    fakes.use("10.4.0")
    with pytest.raises(EngineError, match=r"TensorRT 10.3.0.30 built it.*edgepose build --int8 --out .* --force"):
        TensorRTRunner(engine)
    fakes.use("10.3.0.30")
    fakes.cudart.cc = (8, 6)
    with pytest.raises(EngineError, match="compute capability 8.7"):
        TensorRTRunner(engine)
    assert fakes.cudart.live == {} and fakes.cudart.streams == 0
    (tmp_path / "det.int8.engine.json").unlink()
    with pytest.raises(EngineError, match="no manifest"):
        TensorRTRunner(engine)


# ====================================================================== the fakes
class _FakeCudart:
    """cuda-python's runtime surface, backed by ctypes host memory (copies really happen)."""

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorMemoryAllocation = 2

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self):
        self.live, self.mallocs, self.streams, self.devices, self.cc = {}, 0, 0, 1, (8, 7)

    def _alloc(self, n):
        buf = ctypes.create_string_buffer(int(n))
        self.live[ctypes.addressof(buf)] = buf
        return (0, ctypes.addressof(buf))

    def cudaMalloc(self, n):
        self.mallocs += 1
        return self._alloc(n)

    def cudaMallocHost(self, n):
        return self._alloc(n)

    def cudaFree(self, ptr):
        del self.live[ptr]
        return (0,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert dst in self.live and src in self.live and stream == 7
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamCreate(self):
        self.streams += 1
        return (0, 7)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamDestroy(self, stream):
        self.streams -= 1
        return (0,)

    def cudaGetDeviceCount(self):
        return (0, self.devices)

    def cudaGetDeviceProperties(self, device):
        return (0, types.SimpleNamespace(name=b"Fake GPU\0\0", major=self.cc[0], minor=self.cc[1],
                                         totalGlobalMem=1 << 30))

    def cudaRuntimeGetVersion(self):
        return (0, 12060)

    def cudaDriverGetVersion(self):
        return (0, 12080)

    def cudaSetDevice(self, device):
        return (0,)

    def cudaGetErrorName(self, err):
        return (0, b"cudaErrorFake")

    def cudaGetErrorString(self, err):
        return (0, b"fake")


def _fake_trt(version):
    """A stand-in for the ``tensorrt`` module surface edgepose uses."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class ILogger:
        Severity = enum.IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE", start=0)

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    trt.ILogger, trt.IProgressMonitor = ILogger, IProgressMonitor
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH STRONGLY_TYPED",
                                                     start=0)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", "WORKSPACE", start=0)
    trt.DeviceType = enum.IntEnum("DeviceType", "GPU DLA", start=0)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", "GPU_FALLBACK", start=0)
    trt.OnnxParserFlag = enum.IntEnum("OnnxParserFlag", "NATIVE_INSTANCENORM ADJUST_FOR_DLA", start=0)
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", "NONE INPUT OUTPUT", start=0)
    trt.DataType = enum.IntEnum("DataType", "FLOAT HALF", start=0)
    trt.nptype = lambda dt: {0: np.float32, 1: np.float16}[int(dt)]

    class Network:
        def __init__(self):
            self.inputs, self.outputs = [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class ParserError:
        def __init__(self, index, node):
            self.index, self.n = index, node

        def node(self):
            return self.index

        def node_name(self):
            return self.n.name

        def node_operator(self):
            return self.n.op_type

        def desc(self):
            return f"No importer registered for op: {self.n.op_type}"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []
            Builder.last.parser_flags = set()

        def set_flag(self, flag):
            Builder.last.parser_flags.add(flag)

        def parse_from_file(self, path):
            model = onnx.load(path)
            self.errors = [ParserError(i, n) for i, n in enumerate(model.graph.node) if n.op_type != "Mul"]

            def tensor(v):
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                return types.SimpleNamespace(name=v.name, shape=dims, dtype=trt.DataType.FLOAT)

            self.network.inputs = [tensor(v) for v in model.graph.input]
            self.network.outputs = [tensor(v) for v in model.graph.output]
            return not self.errors

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data if self.data else b"timing:"

    class Config:
        def __init__(self):
            self.pools, self.profiles, self.flags = {}, [], set()
            self.timing_cache = self.progress_monitor = self.cache_loaded_from = None
            self.default_device_type, self.DLA_core = trt.DeviceType.GPU, -1

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            self.cache_loaded_from = bytes(data) or self.cache_loaded_from
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

        def set_flag(self, flag):
            self.flags.add(flag)

    class Builder:
        last, builds, fail = None, 0, False
        num_DLA_cores = 2

        def __init__(self, logger):
            Builder.last, self.logger = self, logger

        def create_network(self, flags):
            self.network_flags, self.network = flags, Network()
            return self.network

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if Builder.fail:
                self.logger.log(trt.ILogger.Severity.ERROR, "out of memory")
                return None
            Builder.builds += 1
            mon = config.progress_monitor
            mon.phase_start("Building", None, 1)
            mon.step_complete("Building", 0)
            mon.phase_finish("Building")
            if config.timing_cache is not None:
                config.timing_cache.data = config.timing_cache.serialize() + b"|built"
            io = [{"name": t.name, "shape": list(t.shape), "mode": mode}
                  for mode, ts in ((1, network.inputs), (2, network.outputs)) for t in ts]
            profiles = {k: [list(s) for s in v] for p in config.profiles for k, v in p.shapes.items()}
            return json.dumps({"io": io, "profiles": profiles}).encode()

    class Context:
        def __init__(self, engine):
            self.engine, self.input_shapes, self.addresses = engine, {}, {}
            trt.last_context = self

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profiles[name]
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.input_shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            spec = self.engine.io[name]
            if spec["mode"] == 2:  # output: batch of the input
                batch = next(iter(self.input_shapes.values()))[0] if self.input_shapes else spec["shape"][0]
                return (batch,) + tuple(spec["shape"][1:])
            return self.input_shapes.get(name, tuple(spec["shape"]))

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 7
            (iname,) = [n for n, s in self.engine.io.items() if s["mode"] == 1]
            (oname,) = [n for n, s in self.engine.io.items() if s["mode"] == 2]
            count = int(np.prod(self.get_tensor_shape(iname)))
            src = np.frombuffer((ctypes.c_float * count).from_address(self.addresses[iname]), np.float32)
            dst = np.frombuffer((ctypes.c_float * count).from_address(self.addresses[oname]), np.float32)
            dst[:] = 2 * src
            return True

    class Engine:
        def __init__(self, blob):
            data = json.loads(blob)
            self.io = {t["name"]: t for t in data["io"]}
            self.names = list(self.io)
            self.profiles = data["profiles"]

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode(self.io[name]["mode"])

        def get_tensor_dtype(self, name):
            return trt.DataType.FLOAT

        def get_tensor_shape(self, name):
            return tuple(self.io[name]["shape"])

        def get_tensor_profile_shape(self, name, index):
            return [tuple(s) for s in self.profiles[name]]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine(blob)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


class _Fakes:
    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch
        self.cudart = _FakeCudart()
        monkeypatch.setattr(cuda_mem, "_CUDART", self.cudart)

    def use(self, version):
        trt = _fake_trt(version)
        self.monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt


@pytest.fixture
def fakes(monkeypatch):
    return _Fakes(monkeypatch)
