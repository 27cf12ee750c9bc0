"""The one way a test needs PyTorch: ``torch = torch_or_skip()`` at module level (the whole module
skips) or ``torch_or_skip()`` inside a test or fixture (that test skips).

The ONNX path (``edgepose run`` on ONNX models) must work without torch, so torch is optional for
the package; the tests that export, train or compare against PyTorch skip with one reason,
``TORCH_MISSING``. That reason is deliberately not among the documented CI skips
(tests/helpers/ci_skips.py: only GPU/TensorRT), so in CI a missing torch is a failure.
"""
import pytest

TORCH_MISSING = "PyTorch is not installed"


def torch_or_skip():
    """The ``torch`` module, or skip with ``TORCH_MISSING`` when it cannot be imported."""
    return pytest.importorskip("torch", reason=TORCH_MISSING)
