"""Timings of the plugin CUDA kernels against their standard-op decompositions (PyTorch on the
same GPU).  A benchmark, not a test: it prints one ``[timing]`` line per case and asserts nothing
beyond "the kernel ran".  Needs a CUDA GPU, a CUDA build of torch and nvcc; run from the
repository root (benchmarks/gpu_check.sh does):

    python benchmarks/kernel_timing.py [--shim-dir DIR]
"""
import argparse
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the kernel wrappers the GPU tests use (tests/helpers/cuda_kernels.py)

from helpers.cuda_kernels import (MODES, build_shim, corner_pool_decomposition_torch,  # noqa: E402
                                  corner_pool_gpu, heatmap_topk_decomposition_torch, heatmap_topk_gpu, time_cuda_ms)

log = logging.getLogger("edgepose.bench.kernels")


def corner_pool_rows(lib, torch, dtype):
    x = torch.randn(1, 128, 64, 64, device="cuda", dtype=dtype)  # CornerNet-Squeeze pool input size
    name = "fp32" if dtype == torch.float32 else "fp16"
    for mode in MODES:
        k_ms = time_cuda_ms(lambda: corner_pool_gpu(lib, x, mode))
        d_ms = time_cuda_ms(lambda: corner_pool_decomposition_torch(x, mode))
        yield f"corner_pool {mode:6s} {name} 1x128x64x64: kernel {k_ms:.4f} ms, decomposition(torch) {d_ms:.4f} ms"


def heatmap_topk_rows(lib, torch, dtype):
    name = "fp32" if dtype == torch.float32 else "fp16"
    for (n, c, h, w, k) in [(1, 80, 128, 128, 100), (8, 80, 128, 128, 100), (1, 80, 128, 128, 3840)]:
        hm = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
        wh = torch.rand(n, 2, h, w, device="cuda", dtype=dtype) * 20
        reg = torch.rand(n, 2, h, w, device="cuda", dtype=dtype)
        k_ms = time_cuda_ms(lambda: heatmap_topk_gpu(lib, hm, wh, reg, k))
        d_ms = time_cuda_ms(lambda: heatmap_topk_decomposition_torch(hm, wh, reg, k))
        yield (f"heatmap_topk {name} {n}x{c}x{h}x{w} K={k}: kernel {k_ms:.4f} ms, "
               f"decomposition(torch: sigmoid+maxpool+topk+gather) {d_ms:.4f} ms")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shim-dir", type=Path, default=None, help="where to build libep_shim.so (default: a temp dir)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    import torch

    if not torch.cuda.is_available():
        log.error("kernel timing: no CUDA device visible to torch (a CPU build?); nothing timed")
        return 3
    lib, message = build_shim(args.shim_dir or tempfile.mkdtemp(prefix="ep-shim-"))
    log.info(message)
    for dtype in (torch.float32, torch.float16):
        for line in list(corner_pool_rows(lib, torch, dtype)) + list(heatmap_topk_rows(lib, torch, dtype)):
            log.info("[timing] %s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
