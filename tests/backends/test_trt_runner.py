"""TensorRTRunner and cuda_mem without a GPU, on fakes made from snapshots of the real TensorRT and
cuda-python APIs (tests/fakes): binding, buffer growth and reuse, freeing, the checks the runner
makes (set_tensor_address's bool, dtypes NumPy lacks, engines from another TensorRT/GPU) and the
ONNX Runtime fallback without a GPU.  The fake engine computes ``out = 2 * input`` from the memory
the runner bound; what is checked is the runner's own logic."""
import logging

import numpy as np
import pytest
from fakes.api import TRT_VERSIONS
from fakes.session import TrtFakes
from helpers.trt_onnx import DET_META, POSE_META, tiny_onnx

from edgepose.backends.trt import build as tb, cuda_mem
from edgepose.errors import EngineError, UsageError

_onnx = tiny_onnx


# ====================================================================== runner glue
def test_cuda_helpers(fakes):
    assert cuda_mem.format_cuda_version(12060) == "12.6" and cuda_mem.format_cuda_version(13000) == "13.0"
    assert cuda_mem.grow_size(1024, 100) == 1024  # fits: keep
    assert cuda_mem.grow_size(0, 1) == 256
    assert cuda_mem.grow_size(1024, 1100) == 1536  # at least 1.5x, so a creeping batch does not realloc each time
    assert cuda_mem.grow_size(1024, 5000) == 5120  # rounded up to 256 bytes
    with pytest.raises(EngineError, match="cudaMalloc.*cudaErrorFake"):
        cuda_mem.check((fakes.cuda.raw.cudaError_t.cudaErrorMemoryAllocation,), "cudaMalloc(1)")
    assert cuda_mem.check((0, 5), "x") == 5 and cuda_mem.check((0, 1, 2), "x") == (1, 2)
    info = cuda_mem.device_info(0)
    assert info == {"name": "Fake GPU", "compute_capability": "8.7", "cuda_runtime": "12.6", "cuda_driver": "12.8",
                    "total_memory": 1 << 30}
    with pytest.raises(EngineError, match="GPU 3 does not exist"):
        cuda_mem.device_info(3)


@pytest.mark.parametrize("version", TRT_VERSIONS)
def test_runner_binds_grows_reuses_and_frees_buffers(fakes, tmp_path, version):
    from edgepose.backends.trt.runner import TensorRTRunner

    fake = fakes.use(version)
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
    assert fake.last_context._input_shapes["input"] == (4, 3, 4, 4)
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


def test_runner_checks_set_tensor_address(fakes, tmp_path):
    from edgepose.backends.trt.runner import TensorRTRunner

    fake = fakes.use("10.3.0")
    engine = tb.onnx2engine(_onnx(tmp_path / "pose.onnx", ["N", 3, 4, 4], POSE_META), timing_cache=False)
    fake.refuse_address = {"out"}  # set_tensor_address returns False for it
    with TensorRTRunner(engine) as runner:
        with pytest.raises(EngineError, match="'out'.*set_tensor_address returned False"):
            runner.infer({"input": np.zeros((1, 3, 4, 4), np.float32)})


def test_runner_refuses_tensors_numpy_cannot_hold(fakes, tmp_path):
    from edgepose.backends.trt.runner import TensorRTRunner

    fakes.use("10.16.0.72", io_dtype="BF16")
    engine = tb.onnx2engine(_onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META), timing_cache=False)
    with pytest.raises(EngineError, match="'input' is BF16, which NumPy cannot hold"):
        TensorRTRunner(engine)
    assert fakes.cudart.live == {} and fakes.cudart.streams == 0


def test_runner_refuses_engine_from_other_trt_or_gpu(fakes, tmp_path):
    from edgepose.backends.trt.runner import TensorRTRunner

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


def test_no_gpu_falls_back_to_onnxruntime(fakes, tmp_path, caplog):
    """An engine on a machine whose cuda-python has no driver: `run` uses the sibling ONNX."""
    from edgepose.backends.factory import load_runner

    fakes.use("10.3.0")
    engine = tb.onnx2engine(_onnx(tmp_path / "det.onnx", [1, 3, 8, 8], DET_META), timing_cache=False)
    fakes.cudart.no_driver = True
    with caplog.at_level(logging.WARNING):
        runner = load_runner(str(engine))
    assert runner.backend == "onnxruntime" and "no CUDA GPU" in caplog.text
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(runner.infer({"input": x})["out"], 2 * x)


@pytest.fixture
def fakes(monkeypatch):
    return TrtFakes(monkeypatch)
