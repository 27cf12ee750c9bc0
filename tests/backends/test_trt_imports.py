"""The TensorRT backend modules import on a machine without TensorRT and without CUDA, and
say what is missing only when used.  Runs in a subprocess whose ``sys.modules`` entries for
``tensorrt`` and ``cuda`` are None, so an installed TensorRT cannot hide a top-level import."""
import json
import subprocess
import sys
import textwrap

import pytest

from helpers.paths import REPO


SCRIPT = textwrap.dedent("""
    import json, sys
    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda",
                 "pycuda.driver", "pycuda.autoinit", "torch"):
        sys.modules[name] = None  # any import of these now raises ImportError
    import edgepose.backends.trt.runner as rt
    import edgepose.backends.trt.build as tb
    import edgepose.backends.trt.manifest as em
    import edgepose.backends.trt.cuda_mem as cm
    import edgepose.backends.trt.version as tv
    from edgepose.errors import DependencyError
    out = {"imported": True}
    out["status"] = tv.tensorrt_status()
    try:
        cm.import_cudart()
    except DependencyError as exc:
        out["cudart"] = str(exc)
    open(sys.argv[1], "wb").write(b"not an engine")
    try:
        rt.TensorRTRunner(sys.argv[1])
    except DependencyError as exc:
        out["runner"] = str(exc)
    try:
        tb.onnx2engine(sys.argv[2])
    except DependencyError as exc:
        out["build"] = str(exc)
    print(json.dumps(out))
""")


@pytest.fixture
def tiny_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_backend_imports_without_tensorrt_or_cuda(tmp_path, tiny_onnx):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "x.engine"), str(tiny_onnx)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"]
    ok, reason = out["status"]
    assert ok is False and "TensorRT cannot be imported" in reason and "edgepose[trt]" in reason
    assert "cuda-python" in out["cudart"] and "pip install 'edgepose[trt]'" in out["cudart"]
    assert "TensorRT cannot be imported" in out["runner"]
    assert "TensorRT cannot be imported" in out["build"]


def test_factory_falls_back_to_onnxruntime_without_tensorrt(tmp_path, tiny_onnx):
    """`edgepose run` with engines on a machine without TensorRT: ONNX Runtime on the sibling
    .onnx, saying so (exercises the DependencyError contract TensorRTRunner keeps)."""
    script = textwrap.dedent("""
        import logging, sys
        sys.modules["tensorrt"] = None
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from edgepose.backends.factory import load_runner
        r = load_runner(sys.argv[1])
        print(r.backend, r.path.name)
    """)
    engine = tmp_path / "det.fp16.engine"
    engine.write_bytes(b"engine from another machine")
    (tmp_path / "det.fp16.onnx").write_bytes(tiny_onnx.read_bytes())
    proc = subprocess.run([sys.executable, "-c", script, str(engine)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["onnxruntime", "det.fp16.onnx"]
    assert "ONNX Runtime" in proc.stderr and "TensorRT" in proc.stderr


def test_runner_imports_nothing_from_build():
    """Loader and runner stay apart (Polygraphy style): running an engine needs no build code."""
    import ast

    tree = ast.parse((REPO / "edgepose" / "backends" / "trt" / "runner.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imported and not any(m.startswith("edgepose.backends.trt.build") for m in imported), sorted(imported)
    assert not any(m.startswith(("tensorrt", "cuda")) for m in imported)  # both only through trt.version/cuda_mem
