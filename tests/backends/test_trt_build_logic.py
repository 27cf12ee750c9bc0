"""TensorRT build logic that needs no GPU: version gates, profile computation, logger
mapping, parser-error messages, plugin error paths, the build cache (skip / rebuild), DLA
rules, status messages (the runner: tests/backends/test_trt_runner.py).

TensorRT and cuda-python are replaced *only at the library boundary* by fakes made from
snapshots of the real APIs (tests/fakes, tests/data/trt_api): real enum members and values
per release, only real methods with their real parameters, properties writable only where the
real ones are, unknown attribute writes rejected.  The fake builder records what edgepose
configured and returns bytes describing the network; the fake cudart allocates real host
memory with ctypes and really copies bytes, and the fake engine computes ``out = 2 * input``
from the memory the runner bound.  What is checked is edgepose's own logic (which flags/
profiles/limits it computes, when it rebuilds, what it writes, how the runner binds, grows and
frees buffers), never a value the fake made up.
"""
import enum
import logging
import sys

import onnx
import pytest
from fakes.api import TRT_VERSIONS
from fakes.fake_tensorrt import FakeTensorRT
from fakes.session import TrtFakes
from helpers.trt_onnx import DET_META, POSE_META, tiny_onnx

from edgepose.backends.trt import build as tb, cuda_mem, logger as tl, profiles as tp, version as tv
from edgepose.backends.trt.manifest import read_manifest
from edgepose.backends.trt.plugin_libs import load_plugins_for_engine
from edgepose.errors import DependencyError, EngineError, NoGPUError, PluginError, UsageError

_onnx = tiny_onnx


# ====================================================================== version gates
@pytest.mark.parametrize("version, mode", [("10.3.0.30", "flag"), ("10.3", "flag"), ("10.7.0.post1", "flag"),
                                           ("10.16.1", "flag"), ("11.0.0", "always"), ("11.4.1.2", "always")])
def test_supported_versions_and_strong_typing_path(version, mode):
    assert tv.strongly_typed_mode(version) == mode


@pytest.mark.parametrize("version", ["10.2.0.19", "10.2", "8.6.1", "12.0.0", "12.1", "not-a-version"])
def test_unsupported_versions_are_refused(version):
    with pytest.raises(DependencyError, match=r">=10.3,<12"):
        tv.check_trt_version(version)


@pytest.mark.parametrize("version", TRT_VERSIONS)
def test_network_flags_follow_the_version(version):
    trt = FakeTensorRT(version).module
    flags = tv.network_flags(trt, version)
    if version.startswith("10."):  # 10.x: EXPLICIT_BATCH=0, STRONGLY_TYPED=1 -> bit 1
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 2
    else:  # 11.x: always strongly typed; STRONGLY_TYPED=0 is deprecated, EXPLICIT_BATCH is gone
        assert flags == 0


def test_dla_support_by_version():
    assert tv.dla_supported("10.3.0")[0]
    ok, note = tv.dla_supported("11.2.0")
    assert not ok and "--dla" in note
    ok, note = tv.dla_supported("11.4.1")
    assert ok and "JetPack 7.2.2" in note
    assert [tv.adjust_for_dla_supported(v) for v in ("10.3.0", "10.15.1", "10.16.0.72", "11.4.0.106")] == \
        [False, False, True, True]


# ====================================================================== profiles
def test_profile_static_input_needs_none(tmp_path):
    inputs = tp.onnx_inputs(_onnx(tmp_path / "s.onnx", [1, 3, 512, 512], DET_META))
    assert inputs == [("input", (1, 3, 512, 512))]
    assert tp.compute_profiles(inputs, DET_META) == {}
    assert tp.profile_max_batch({}, inputs) == 1


def test_profile_pose_dynamic_batch(tmp_path):
    inputs = tp.onnx_inputs(_onnx(tmp_path / "p.onnx", ["N", 3, 256, 192], POSE_META))
    assert inputs == [("input", (None, 3, 256, 192))]
    prof = tp.compute_profiles(inputs, POSE_META)
    assert prof == {"input": [[1, 3, 256, 192], [8, 3, 256, 192], [32, 3, 256, 192]]}
    assert tp.profile_max_batch(prof, inputs) == 32
    prof = tp.compute_profiles(inputs, POSE_META, pose_batch=(2, 4, 16))
    assert prof["input"][0][0] == 2 and prof["input"][1][0] == 4 and prof["input"][2][0] == 16
    with pytest.raises(UsageError, match="min <= opt <= max"):
        tp.compute_profiles(inputs, POSE_META, pose_batch=(8, 4, 16))


def test_profile_detector_batch_and_dynamic_hw(tmp_path):
    inputs = tp.onnx_inputs(_onnx(tmp_path / "d.onnx", ["N", 3, "H", "W"], DET_META))
    prof = tp.compute_profiles(inputs, DET_META, det_batch=(1, 1, 2))
    assert prof == {"input": [[1, 3, 256, 320], [1, 3, 512, 512], [2, 3, 768, 1024]]}
    prof = tp.compute_profiles(inputs, DET_META, det_hw=((128, 128), (384, 384), (640, 640)))
    assert prof["input"][0][2:] == [128, 128] and prof["input"][2][2:] == [640, 640]
    # metadata without a range: fixed at the exported size
    plain = DET_META.replace(extra={})
    assert tp.compute_profiles(inputs, plain)["input"] == [[1, 3, 512, 512]] * 3
    with pytest.raises(EngineError, match="no edgepose metadata"):
        tp.compute_profiles(inputs, None)
    with pytest.raises(UsageError, match="min <= opt <= max"):
        tp.compute_profiles(inputs, DET_META, det_hw=((600, 600), (512, 512), (768, 768)))


def test_unreadable_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x08:broken")
    with pytest.raises(UsageError, match="not a readable ONNX"):
        tp.onnx_inputs(bad)


def test_profile_refuses_other_dynamic_axes(tmp_path):
    inputs = tp.onnx_inputs(_onnx(tmp_path / "c.onnx", [1, "C", 64, 64], DET_META))
    with pytest.raises(EngineError, match="dynamic axis 1"):
        tp.compute_profiles(inputs, DET_META)


# ====================================================================== logger, progress
def test_severity_mapping():
    Sev = enum.IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")
    assert tl.severity_to_level(Sev.INTERNAL_ERROR) == logging.CRITICAL
    assert tl.severity_to_level(Sev.ERROR) == logging.ERROR
    assert tl.severity_to_level(Sev.WARNING) == logging.WARNING
    assert tl.severity_to_level(Sev.INFO) == logging.DEBUG
    assert tl.severity_to_level(Sev.VERBOSE) < logging.DEBUG
    assert tl.severity_to_level("Severity.WARNING") == logging.WARNING
    sev = FakeTensorRT("10.3.0").module.ILogger.Severity  # the real members of 10.3
    assert tl.severity_to_level(sev.VERBOSE) < tl.severity_to_level(sev.INFO) < tl.severity_to_level(sev.WARNING)


@pytest.mark.parametrize("version", TRT_VERSIONS)
def test_trt_messages_reach_python_logging_filtered_by_level(caplog, version):
    trt = FakeTensorRT(version).module
    py_logger = logging.getLogger("edgepose.test.trt")
    trt_logger = tl.make_logger(trt, py_logger)
    with caplog.at_level(logging.DEBUG, logger="edgepose.test.trt"):
        trt_logger.log(trt.ILogger.Severity.ERROR, "bad thing")
        trt_logger.log(trt.ILogger.Severity.INFO, "diary")
    assert {r.getMessage(): r.levelno for r in caplog.records} == {"TensorRT: bad thing": logging.ERROR,
                                                                   "TensorRT: diary": logging.DEBUG}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgepose.test.trt"):  # ILogger has no min_severity: log() filters
        trt_logger.log(trt.ILogger.Severity.VERBOSE, "noise")
        trt_logger.log(trt.ILogger.Severity.INFO, "diary")
        trt_logger.log(trt.ILogger.Severity.ERROR, "worse thing")
    assert [r.getMessage() for r in caplog.records] == ["TensorRT: worse thing"]
    assert trt_logger.errors == ["bad thing", "worse thing"]


def test_progress_monitor_logs_top_level_phases(caplog):
    trt = FakeTensorRT("10.3.0").module
    mon = tl.make_progress_monitor(trt, logging.getLogger("edgepose.test.progress"), "building x.engine")
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


# ====================================================================== tensorrt_status
def test_status_without_tensorrt_says_why(fakes, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    ok, reason = tv.tensorrt_status()
    assert ok is False and "TensorRT cannot be imported" in reason and "edgepose[trt]" in reason


def test_status_with_too_old_tensorrt(fakes):
    fakes.use("10.2.0.19")
    ok, reason = tv.tensorrt_status()
    assert ok is False and "10.2.0.19" in reason and ">=10.3" in reason


def test_status_without_gpu_says_no_gpu(fakes):
    trt = fakes.use("10.3.0")
    fakes.cudart.devices = 0
    ok, reason = tv.tensorrt_status()
    assert ok is False and "no CUDA GPU" in reason and "TensorRT cannot" not in reason
    assert trt.builders == [] and "tensorrt.Builder" not in trt.recorder.used  # no TensorRT call to find out


@pytest.mark.parametrize("cuda_version, says", [("12.2.1", "no CUDA driver"), ("12.6.2.post1", "no CUDA driver"),
                                                ("12.9.0", "no CUDA GPU"), ("13.0.0", "no CUDA GPU")])
def test_no_driver_is_a_typed_no_gpu_error(monkeypatch, cuda_version, says):
    """cuda-python <= 12.6 raises RuntimeError without libcuda.so.1, later ones return an error code:
    both become NoGPUError (a DependencyError, so `run` falls back to ONNX Runtime)."""
    fakes = TrtFakes(monkeypatch, cuda_version)
    fakes.use("10.3.0")
    fakes.cudart.no_driver = True
    with pytest.raises(NoGPUError, match=says):
        cuda_mem.device_info(0)
    ok, reason = tv.tensorrt_status()
    assert ok is False and says in reason


def test_status_ready(fakes):
    fakes.use("11.1.0")
    ok, reason = tv.tensorrt_status()
    assert ok and "TensorRT 11.1.0" in reason and "Fake GPU" in reason and "8.7" in reason


# ====================================================================== onnx2engine glue
@pytest.mark.parametrize("version", ["10.3.0.30", "10.16.0.72"])
def test_build_configures_strongly_typed_profiles_workspace_and_cache(fakes, tmp_path, version):
    fake = fakes.use(version)
    trt = fake.module
    onnx_path = _onnx(tmp_path / "pose.int8.onnx", ["N", 3, 4, 4], POSE_META.replace(precision="int8"))
    cache = tmp_path / "cache" / "t.timing"
    engine = tb.onnx2engine(onnx_path, workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=cache,
                            calib_hash="feed", opt_level=4)
    b, cfg = fake.last_builder, fake.last_config
    assert engine == tmp_path / "pose.int8.engine" and engine.is_file()
    assert b._network_flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 2
    assert cfg._pools == {trt.MemoryPoolType.WORKSPACE: 64 << 20}
    assert cfg.builder_optimization_level == 4 and cfg.flags == 0  # no precision flags: strongly typed
    assert cfg._profiles[0]._shapes == {"input": ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4))}
    assert cfg.progress_monitor is not None
    assert cache.read_bytes() == b"timing:" + b"|built"  # new cache, serialized after the build
    m = read_manifest(engine)
    assert m.tensorrt_version == version and m.compute_capability == "8.7" and m.gpu_name == "Fake GPU"
    assert m.precision == "int8" and m.calib_hash == "feed" and m.strongly_typed == "flag"
    assert m.cuda_runtime == "12.6" and m.onnx_name == "pose.int8.onnx"
    assert m.inputs == [{"name": "input", "shape": [None, 3, 4, 4], "dtype": "float32",
                         "profile": [[1, 3, 4, 4], [2, 3, 4, 4], [4, 3, 4, 4]]}]
    assert m.outputs == [{"name": "out", "shape": [None, 3, 4, 4], "dtype": "float32"}]
    assert m.meta == POSE_META.replace(precision="int8") and m.max_batch == 4

    # same inputs: skipped; the timing cache is read back next time a build does run
    kw = dict(workspace_mb=64, pose_batch=(1, 2, 4), timing_cache=cache, calib_hash="feed", opt_level=4)
    assert tb.onnx2engine(onnx_path, **kw) == engine
    assert fake.builds == 1
    tb.onnx2engine(onnx_path, **kw, force=True)
    assert fake.builds == 2 and fake.last_config._loaded == b"timing:|built"
    tb.onnx2engine(onnx_path, **{**kw, "workspace_mb": 128})
    assert fake.builds == 3  # an option that changes the engine -> rebuilt
    model = onnx.load(str(onnx_path))
    model.doc_string = "re-exported"
    onnx.save(model, str(onnx_path))  # other ONNX bytes -> rebuilt
    tb.onnx2engine(onnx_path, **{**kw, "workspace_mb": 128})
    assert fake.builds == 4


@pytest.mark.parametrize("version", ["11.1.0", "11.4.0.106"])
def test_build_on_trt11_uses_no_creation_flag(fakes, tmp_path, version):
    fake = fakes.use(version)
    onnx_path = _onnx(tmp_path / "det.fp16.onnx", [1, 3, 8, 8], DET_META.replace(precision="fp16"))
    engine = tb.build_engine_files([onnx_path], tmp_path / "out", timing_cache=False)[0]
    assert engine == tmp_path / "out" / "det.fp16.engine"
    assert fake.last_builder._network_flags == 0 and fake.last_config._profiles == []
    assert fake.last_config.get_timing_cache() is None
    assert read_manifest(engine).strongly_typed == "always"


def test_foreign_timing_cache_is_replaced(fakes, tmp_path, caplog):
    fake = fakes.use("10.3.0")
    fake.reject_timing_cache = True
    cache = tmp_path / "t.timing"
    cache.write_bytes(b"from another GPU")
    with caplog.at_level(logging.WARNING, logger="edgepose.tensorrt"):
        tb.onnx2engine(_onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META), timing_cache=cache)
    assert "does not fit this TensorRT/GPU" in caplog.text
    assert cache.read_bytes() == b"timing:|built"  # the fresh cache replaced the foreign one


def test_manifest_names_dtypes_numpy_lacks(fakes, tmp_path):
    fakes.use("10.3.0", io_dtype="BF16")  # trt.nptype raises TypeError for BF16
    engine = tb.onnx2engine(_onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META), timing_cache=False)
    assert read_manifest(engine).inputs[0]["dtype"] == "bf16"


def test_parser_errors_name_the_nodes(fakes, tmp_path):
    fakes.use("10.3.0")
    onnx_path = _onnx(tmp_path / "bad.onnx", [1, 3, 8, 8], DET_META, op="NoSuchOp")
    with pytest.raises(EngineError) as err:
        tb.onnx2engine(onnx_path, timing_cache=False)
    text = str(err.value)
    assert "cannot parse" in text and "node 0 'odd_node' (NoSuchOp)" in text and "No importer" in text
    assert not (tmp_path / "bad.engine").exists()


def test_failed_build_says_what_to_try(fakes, tmp_path):
    fake = fakes.use("10.3.0")
    fake.fail_build = True
    onnx_path = _onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META)
    with pytest.raises(EngineError, match="out of memory.*--workspace"):
        tb.onnx2engine(onnx_path, timing_cache=False)
    assert not (tmp_path / "det.engine").exists() and not (tmp_path / "det.engine.json").exists()


def test_build_without_gpu_touches_no_tensorrt(fakes, tmp_path):
    fake = fakes.use("10.3.0")
    fakes.cudart.devices = 0
    with pytest.raises(NoGPUError, match="no CUDA GPU"):
        tb.onnx2engine(_onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META), timing_cache=False)
    assert fake.builders == []


def test_dla_rules(fakes, tmp_path, caplog):
    fake = fakes.use("10.3.0")
    trt = fake.module
    fp32 = _onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META)
    with pytest.raises(UsageError, match="only FP16/INT8"):
        tb.onnx2engine(fp32, dla_core=0, timing_cache=False)
    fp16 = _onnx(tmp_path / "det.fp16.onnx", [1, 3, 8, 8], DET_META.replace(precision="fp16"))
    with pytest.raises(EngineError, match="2 DLA core"):
        tb.onnx2engine(fp16, dla_core=5, timing_cache=False)
    with caplog.at_level(logging.WARNING, logger="edgepose.tensorrt"):
        engine = tb.onnx2engine(fp16, dla_core=1, timing_cache=False)
    cfg = fake.last_config
    assert cfg.default_device_type == trt.DeviceType.DLA and cfg.DLA_core == 1
    assert cfg.flags == 1 << int(trt.BuilderFlag.GPU_FALLBACK) == 1 << 3 and cfg.get_flag(trt.BuilderFlag.GPU_FALLBACK)
    # 10.3 (JetPack 6) has no OnnxParserFlag.ADJUST_FOR_DLA: not set, and the build says so
    assert fake.parsers[-1]._flags == set() and "ADJUST_FOR_DLA" in caplog.text
    assert read_manifest(engine).build_options["dla_core"] == 1
    assert read_manifest(engine).build_options["adjust_for_dla"] is False

    fake = fakes.use("10.16.0.72")
    engine = tb.onnx2engine(fp16, dla_core=1, timing_cache=False, force=True)
    assert fake.parsers[-1]._flags == {fake.module.OnnxParserFlag.ADJUST_FOR_DLA}
    assert int(fake.module.OnnxParserFlag.ADJUST_FOR_DLA) == 4
    assert read_manifest(engine).build_options["adjust_for_dla"] is True
    fakes.use("11.2.0")
    with pytest.raises(EngineError, match="no DLA support"):
        tb.onnx2engine(fp16, dla_core=0, timing_cache=False, force=True)


def test_missing_plugin_library_fails_before_parsing(fakes, tmp_path, monkeypatch):
    from edgepose import plugins

    fake = fakes.use("10.3.0")
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "PACKAGE_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(plugins, "BUILD_DIR", tmp_path / "nowhere")
    onnx_path = _onnx(tmp_path / "cn.onnx", [1, 3, 8, 8], DET_META.replace(task="cornernet"), op="CornerPool",
                      domain="edgepose")
    with pytest.raises(PluginError) as err:
        tb.onnx2engine(onnx_path, timing_cache=False)
    assert "CornerPool" in str(err.value) and "cmake" in str(err.value)
    assert fake.builds == 0 and fake.last_builder is None
    with pytest.raises(PluginError, match="HeatmapTopK.*cmake"):
        load_plugins_for_engine(["HeatmapTopK"], tmp_path / "det.engine")
    assert load_plugins_for_engine([], tmp_path / "det.engine") is None


@pytest.fixture
def fakes(monkeypatch):
    return TrtFakes(monkeypatch)
