"""tests/gpu is collected only where the CUDA driver reports a GPU (libcuda's cuDeviceGetCount:
no torch, no cuda-python needed).  Elsewhere its modules are not even imported, and the header
says so; on a GPU machine every test here must pass (bash benchmarks/gpu_check.sh)."""
import ctypes
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """GPUs the CUDA driver sees; 0 without a driver or a device."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def pytest_ignore_collect(collection_path, config):
    if cuda_device_count() > 0:
        return None
    return collection_path.is_relative_to(HERE) and collection_path != HERE


def pytest_report_header(config):
    n = cuda_device_count()
    return (f"tests/gpu: {n} CUDA device(s)" if n else
            "tests/gpu: not collected, no CUDA device here (run bash benchmarks/gpu_check.sh on a GPU machine)")


def pytest_collection_modifyitems(config, items):
    """A file of this folder named on the command line is collected anyway: skip it, saying why."""
    if cuda_device_count() > 0:
        return
    import pytest

    skip = pytest.mark.skip(reason="no CUDA GPU on this machine (run bash benchmarks/gpu_check.sh on one)")
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)
