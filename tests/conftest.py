import json
import os
from pathlib import Path

import pytest

from helpers.paths import TEST_DATA


def reference_dir() -> Path:
    """The reference facts the tests compare against: ``tests/data/reference`` in the repository.

    ``EDGEPOSE_REFERENCE`` may point at another copy (e.g. a newer set of golden vectors);
    nothing outside the repository is needed by default.
    """
    env = os.environ.get("EDGEPOSE_REFERENCE")
    cand = Path(env) if env else TEST_DATA / "reference"
    if not (cand / "golden_vectors.json").exists():
        raise FileNotFoundError(f"reference data not found in {cand} (golden_vectors.json missing)")
    return cand


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


# CI=true: an undocumented skip fails (tests/helpers/ci_skips.py says which skips are documented)
pytest_plugins = ["helpers.ci_skips"]
