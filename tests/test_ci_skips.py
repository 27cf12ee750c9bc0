"""The CI skip policy (tests/helpers/ci_skips.py) run on a small test file in a subprocess."""
import os
import subprocess
import sys

from helpers.paths import TESTS

SAMPLE = """
import pytest

def test_optional():
    pytest.skip("some optional package is missing")

def test_gpu():
    pytest.skip("no CUDA GPU here")

def test_runs():
    assert True
"""


def _run(tmp_path, ci):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "helpers.ci_skips",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_sample.py")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_undocumented_skip_fails_in_ci(tmp_path):
    res = _run(tmp_path, ci=True)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "1 failed, 1 passed, 1 skipped" in res.stdout
    assert "skipped in CI" in res.stdout and "some optional package is missing" in res.stdout


def test_skips_stay_skips_outside_ci(tmp_path):
    res = _run(tmp_path, ci=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed, 2 skipped" in res.stdout
