"""The CUDA kernels and the TensorRT plugin glue in plugins/ compile.

- Every ``plugins/*/*Kernel.cu`` with ``nvcc -c -std=c++17 -Iplugins`` for sm_87 (Orin) and
  sm_90, when nvcc exists (skipped with that reason otherwise).
- Every ``*Plugin.cpp`` and ``register.cpp`` with ``g++ -fsyntax-only`` against TensorRT headers
  when they exist (``TensorRT_ROOT`` or the JetPack / x86-64 distribution paths; skipped with
  that reason otherwise).
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.paths import REPO

PLUGINS = REPO / "plugins"
KERNELS = sorted(PLUGINS.glob("*/*Kernel.cu"))
GLUE = sorted(PLUGINS.glob("*/*Plugin.cpp")) + [PLUGINS / "register.cpp"]
ARCHES = ("sm_87", "sm_90")
TRT_DEFAULT_INCLUDES = ("/usr/include/aarch64-linux-gnu", "/usr/include/x86_64-linux-gnu", "/usr/include")


def find_nvcc():
    for cand in (shutil.which("nvcc"),
                 os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def cuda_include(nvcc):
    """include/ of the toolkit nvcc belongs to (follows wrapper scripts via `nvcc --list-gpu-arch`-free means)."""
    cands = []
    if os.environ.get("CUDA_HOME"):
        cands.append(Path(os.environ["CUDA_HOME"]) / "include")
    if nvcc:
        real = Path(os.path.realpath(nvcc))
        cands.append(real.parent.parent / "include")
        try:  # a shell wrapper (exec /usr/local/cuda-X/bin/nvcc "$@") -> read the target from it
            text = real.read_text(errors="ignore")[:2000]
            m = re.search(r"(/\S+)/bin/nvcc", text)
            if m:
                cands.append(Path(m.group(1)) / "include")
        except OSError:
            pass
    cands.append(Path("/usr/local/cuda/include"))
    for cand in cands:
        if (cand / "cuda_runtime_api.h").is_file():
            return cand
    return None


def trt_include():
    root = os.environ.get("TensorRT_ROOT")
    cands = [Path(root) / "include", Path(root)] if root else []
    cands += [Path(p) for p in TRT_DEFAULT_INCLUDES]
    for cand in cands:
        if (cand / "NvInferRuntime.h").is_file():
            return cand
    return None


def run(cmd):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(" ".join(map(str, cmd)))
        print(proc.stdout)
        print(proc.stderr)
    return proc


def test_layout():
    """One folder per op, kernel + glue + README, and every source in CMakeLists.txt."""
    assert {p.parent.name for p in KERNELS} == {"cornerPool", "heatmapTopK"}
    cmake = (PLUGINS / "CMakeLists.txt").read_text()
    for op in ("cornerPool", "heatmapTopK"):
        for name in (f"{op}Kernel.cu", f"{op}Kernel.h", f"{op}Plugin.cpp", f"{op}Plugin.h", "README.md"):
            assert (PLUGINS / op / name).is_file(), f"plugins/{op}/{name} missing"
        assert f"{op}/{op}Kernel.cu" in cmake and f"{op}/{op}Plugin.cpp" in cmake
    assert "register.cpp" in cmake


@pytest.mark.parametrize("path", KERNELS + sorted(PLUGINS.glob("*/*Kernel.h")), ids=lambda p: p.name)
def test_kernels_are_free_of_tensorrt(path):
    text = path.read_text()
    assert not re.search(r'#\s*include\s*[<"]NvInfer', text), f"{path.name} includes a TensorRT header"


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("source", KERNELS, ids=lambda p: p.parent.name)
def test_kernel_compiles(source, arch, tmp_path):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc is missing (not on PATH, not in $CUDA_HOME/bin): kernels not compiled")
    out = tmp_path / (source.stem + f"_{arch}.o")
    proc = run([nvcc, "-c", "-std=c++17", "-Iplugins", f"-arch={arch}", str(source.relative_to(REPO)),
                "-o", str(out)])
    assert proc.returncode == 0, f"nvcc failed on {source.name} for {arch}:\n{proc.stderr[-4000:]}"
    assert out.stat().st_size > 0


GLUE_CASES = [(src, None) for src in GLUE] + [(PLUGINS / "register.cpp", "-DEDGEPOSE_STATIC_REGISTRATION")]


@pytest.mark.parametrize("source,define", GLUE_CASES, ids=lambda v: getattr(v, "name", None) or str(v))
def test_plugin_glue_compiles(source, define):
    inc = trt_include()
    if inc is None:
        pytest.skip("TensorRT headers not found (set TensorRT_ROOT or install libnvinfer-dev): glue not compiled")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++/c++) on PATH: glue not compiled")
    cuda_inc = cuda_include(find_nvcc())
    if cuda_inc is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found: set CUDA_HOME")
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wno-deprecated-declarations", "-Iplugins",
           f"-I{inc}", f"-I{cuda_inc}", str(source.relative_to(REPO))]
    if define:
        cmd.insert(1, define)
    proc = run(cmd)
    assert proc.returncode == 0, f"{source.name} does not compile against {inc}:\n{proc.stderr[-4000:]}"
