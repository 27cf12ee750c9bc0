"""pytest plugin: in CI (``CI=true``) a skipped test is a failure, except the documented skips.

CI machines have no CUDA GPU, no TensorRT and no TensorRT headers, so the tests that need them
(tests/gpu, the plugin glue build, engines) may skip there; anything else that skips in CI --
a missing optional package, a server that did not start -- would hide a broken install step.
PyTorch missing (helpers/optional.py, "PyTorch is not installed") is such a skip: it fails in CI.
"""
from __future__ import annotations

import os
import re

import pytest

ALLOWED_CI_SKIPS = re.compile(r"TensorRT|CUDA GPU|no GPU|nvcc|CUDA headers", re.IGNORECASE)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_undocumented_skip(report):
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not ALLOWED_CI_SKIPS.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"skipped in CI, which counts as a failure (only the GPU/TensorRT skips are "
                               f"documented): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_undocumented_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_undocumented_skip(outcome.get_result())
