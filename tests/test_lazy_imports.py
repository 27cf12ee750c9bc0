"""Heavy dependencies are imported lazily.

* Every module imports on a machine without TensorRT and CUDA.
* With torch unimportable too (a deployment device), every runtime module imports and the CLI
  starts; only model definitions, training and torch-side export helpers may need torch.
"""
import json
import subprocess
import sys
import textwrap

# modules allowed to need torch at import time (model definitions, training, torch-side export)
TORCH_SIDE = ("edgepose.models.", "edgepose.train", "edgepose.ops.", "edgepose.export.graph_decode")
TORCH_FREE_IN_MODELS = ("edgepose.models.checkpoint", "edgepose.models.signature", "edgepose.models.defaults")
MUST_IMPORT_WITHOUT_TORCH = (
    "edgepose", "edgepose.cli", "edgepose.metadata", "edgepose.models", "edgepose.models.checkpoint",
    "edgepose.export", "edgepose.backends", "edgepose.backends.onnxruntime", "edgepose.backends.factory",
    "edgepose.backends.trt.runner", "edgepose.backends.trt.build",
    "edgepose.pipeline", "edgepose.pipeline.pipeline", "edgepose.pipeline.preprocess", "edgepose.pipeline.decode", "edgepose.data.sources", "edgepose.eval.coco",
    "edgepose.eval.timing", "edgepose.plugins", "edgepose.ops",
    # bottom layer, and the NumPy decode the pipeline takes from ops.heatmap_topk
    "edgepose.tasks", "edgepose.onnx_graph", "edgepose.ort_session", "edgepose.compare", "edgepose.progress",
    "edgepose.data.coco", "edgepose.ops.heatmap_topk",
)

_PROBE = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    for name in {blocked!r}:
        sys.modules[name] = None  # makes `import name` raise ImportError
    import edgepose
    results = {{"edgepose": None}}
    for info in pkgutil.walk_packages(edgepose.__path__, "edgepose."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
            results[info.name] = None
        except Exception as exc:
            results[info.name] = f"{{type(exc).__name__}}: {{exc}}"
    loaded = sorted(m for m in {blocked!r} if m in sys.modules and sys.modules[m] is not None)
    print(json.dumps({{"results": results, "loaded": loaded}}))
""")


def _probe(blocked):
    out = subprocess.run([sys.executable, "-c", _PROBE.format(blocked=list(blocked))],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_imports_without_tensorrt_and_cuda():
    report = _probe(["tensorrt", "cuda", "cuda.bindings", "pycuda"])
    failures = {k: v for k, v in report["results"].items() if v}
    assert failures == {}
    assert len(report["results"]) > 20


def test_runtime_imports_without_torch():
    report = _probe(["torch", "tensorrt", "cuda", "torchvision"])
    results = report["results"]
    for name in MUST_IMPORT_WITHOUT_TORCH:
        assert results.get(name, "missing") is None, f"{name}: {results.get(name, 'not found')}"
    for name, error in results.items():
        torch_side = name.startswith(TORCH_SIDE) and not name.startswith(TORCH_FREE_IN_MODELS)
        if not torch_side:
            assert error is None, f"{name} needs torch at import time: {error}"


def test_cli_help_without_torch():
    code = "import sys; sys.modules['torch'] = None; from edgepose.cli import main; main(['--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("export", "models", "run"):
        assert command in out.stdout
