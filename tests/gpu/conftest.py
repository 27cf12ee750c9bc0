"""tests/gpu runs only where CUDA is usable; elsewhere the whole folder is skipped with the reason."""
import pytest


def _cuda_ok():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_ok():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine (run benchmarks/gpu_check.sh on one)")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
