"""Where the repository is, wherever a test module sits under tests/."""
from pathlib import Path


def _repo_root() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / "setup.py").is_file():
            return folder
    raise FileNotFoundError(f"no setup.py above {__file__}: tests/ is not inside an edgepose checkout")


REPO = _repo_root()
TESTS = REPO / "tests"
TEST_DATA = TESTS / "data"
