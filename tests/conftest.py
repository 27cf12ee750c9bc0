import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """../shared/reference beside the checkout (CI lays shared/ beside the clone)."""
    env = os.environ.get("EDGEPOSE_REFERENCE")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "reference", REPO / "shared" / "reference"]
    for cand in candidates:
        if (cand / "golden_vectors.json").exists():
            return cand
    raise FileNotFoundError(
        "shared/reference not found beside the repository; set EDGEPOSE_REFERENCE to its path")


@pytest.fixture(scope="session")
def reference():
    return reference_dir()


@pytest.fixture(scope="session")
def golden(reference):
    return json.loads((reference / "golden_vectors.json").read_text())


@pytest.fixture(scope="session")
def manifest(reference):
    def _load(name):
        return json.loads((reference / name).read_text())

    return _load


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (tests/gpu)")
    config.addinivalue_line("markers", "slow: longer than a few seconds")
    try:  # keep the suite predictable on 2-core CI machines
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
