"""The plugin CUDA kernels (plugins/, no TensorRT) as Python callables for the GPU tests and the
kernel timing benchmark: nvcc builds them with tests/gpu/kernel_shim.cu (C entry points) into a
shared library loaded with ctypes; PyTorch provides the CUDA memory and the stream."""
import ctypes
import os
import shutil
import subprocess
import time
from pathlib import Path

from helpers.paths import REPO

MODES = {"top": 0, "bottom": 1, "left": 2, "right": 3}


def _nvcc():
    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if cand and os.path.isfile(cand):
            return cand
    return None


def build_shim(out_dir):
    """Compile the plugin kernels + tests/gpu/kernel_shim.cu for this GPU and load them with ctypes.
    Returns ``(library, message)``; RuntimeError when nvcc is missing or fails."""
    import torch

    nvcc = _nvcc()
    if nvcc is None:
        raise RuntimeError("nvcc is missing: cannot compile the kernels for the GPU test")
    major, minor = torch.cuda.get_device_capability()
    out = Path(out_dir) / "libep_shim.so"
    cmd = [nvcc, "-shared", "-Xcompiler", "-fPIC", "-std=c++17", "-O3", "-Iplugins", f"-arch=sm_{major}{minor}",
           "tests/gpu/kernel_shim.cu", "plugins/cornerPool/cornerPoolKernel.cu",
           "plugins/heatmapTopK/heatmapTopKKernel.cu", "-o", str(out)]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    message = f"[kernels] compiled for sm_{major}{minor} in {time.time() - t0:.1f}s"
    so = ctypes.CDLL(str(out))
    u, i = ctypes.c_uint64, ctypes.c_int
    so.ep_corner_pool.argtypes = [i, u, u, i, i, i, i, i, u]
    so.ep_corner_pool.restype = i
    so.ep_heatmap_topk_workspace.argtypes = [i, i, i, i, i]
    so.ep_heatmap_topk_workspace.restype = ctypes.c_size_t
    so.ep_heatmap_topk.argtypes = [i, u, u, u, i, i, i, i, i, i, i, u, u, u, u, ctypes.c_size_t, u]
    so.ep_heatmap_topk.restype = i
    return so, message


def _stream():
    import torch

    return torch.cuda.current_stream().cuda_stream


def corner_pool_gpu(lib, x, mode):
    import torch

    out = torch.empty_like(x)
    n, c, h, w = x.shape
    err = lib.ep_corner_pool(0 if x.dtype == torch.float32 else 1, x.data_ptr(), out.data_ptr(), n, c, h, w,
                             MODES[mode], _stream())
    assert err == 0, f"cornerPoolImpl returned cudaError {err}"
    return out


def heatmap_topk_gpu(lib, hm, wh, reg, k, apply_sigmoid=True, stride=4):
    import torch

    n, c, h, w = hm.shape
    dev = hm.device
    boxes = torch.empty(n, k, 4, dtype=hm.dtype, device=dev)
    scores = torch.empty(n, k, dtype=hm.dtype, device=dev)
    classes = torch.empty(n, k, dtype=torch.int32, device=dev)
    size = lib.ep_heatmap_topk_workspace(n, c, h, w, k)
    ws = torch.empty(max(size, 1), dtype=torch.uint8, device=dev)
    err = lib.ep_heatmap_topk(0 if hm.dtype == torch.float32 else 1, hm.data_ptr(), wh.data_ptr(), reg.data_ptr(),
                              n, c, h, w, k, int(apply_sigmoid), stride, boxes.data_ptr(), scores.data_ptr(),
                              classes.data_ptr(), ws.data_ptr(), size, _stream())
    assert err == 0, f"heatmapTopKImpl returned cudaError {err}"
    return boxes, scores, classes


def time_cuda_ms(fn, iters=20):
    """Mean milliseconds per call of ``fn`` on the current CUDA stream (3 warm-up calls)."""
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def corner_pool_decomposition_torch(x, mode):
    """The ONNX decomposition's math in torch: log2(n) steps of max with an edge-padded shift."""
    import torch

    axis = 2 if mode in ("top", "bottom") else 3
    reverse = mode in ("top", "left")
    n = x.shape[axis]
    y, s = x, 1
    while s < n:
        if reverse:
            shifted = torch.cat([y.narrow(axis, s, n - s), y.narrow(axis, n - 1, 1).expand_as(y.narrow(axis, 0, s))], axis)
        else:
            shifted = torch.cat([y.narrow(axis, 0, 1).expand_as(y.narrow(axis, 0, s)), y.narrow(axis, 0, n - s)], axis)
        y = torch.maximum(y, shifted)
        s *= 2
    return y


def heatmap_topk_decomposition_torch(hm, wh, reg, k, stride=4):
    from edgepose.ops.heatmap_topk import _torch_heatmap_topk

    return _torch_heatmap_topk(hm, wh, reg, k, True, stride)
