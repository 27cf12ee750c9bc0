"""Device/pinned-host buffers and a stream on cuda-python's runtime API.

cuda-python is imported lazily: ``from cuda.bindings import runtime`` (cuda-python >= 12.6.2.post1,
cuda-bindings 12.8+ / 13.x) with a fallback to ``from cuda import cudart`` (cuda-python 12.2-12.6.1,
as JetPack 6 users may have; gone in 13.0).  Checked against snapshots of the real modules in
tests/data/trt_api.  Every cudart call returns ``(error, *results)``; :func:`check` turns a failing
call into an :class:`~edgepose.errors.EngineError` naming the call and the CUDA error.

Buffers grow (never shrink) when a larger tensor arrives and are freed by ``free()``;
freeing twice is harmless.
"""
from __future__ import annotations

import ctypes

import numpy as np

from edgepose.errors import DependencyError, EngineError, NoGPUError

_CUDART = None


def import_cudart():
    """The cuda-python runtime module; DependencyError with the install hint when missing."""
    global _CUDART
    if _CUDART is not None:
        return _CUDART
    errors = []
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6.2.post1
    except ImportError as exc:
        errors.append(str(exc))
        try:
            from cuda import cudart  # cuda-python 12.2-12.6.1
        except ImportError as exc2:
            errors.append(str(exc2))
            raise DependencyError("the TensorRT runtime needs cuda-python, which cannot be imported "
                                  f"({'; '.join(dict.fromkeys(errors))}). Install it: pip install 'edgepose[trt]' "
                                  "(cuda-python matching your CUDA major version)") from None
    _CUDART = cudart
    return cudart


def format_cuda_version(value: int) -> str:
    """cudart's integer version (1000*major + 10*minor) -> "major.minor" (12060 -> "12.6")."""
    value = int(value)
    return f"{value // 1000}.{(value % 1000) // 10}"


def grow_size(current: int, needed: int) -> int:
    """Capacity policy: keep ``current`` when it suffices, else round ``needed`` up to a
    multiple of 256 bytes and at least 1.5x ``current`` so a slowly rising batch size does not
    reallocate on every call."""
    current, needed = int(current), int(needed)
    if needed <= current:
        return current
    size = max(needed, int(current * 1.5))
    return max(256, -(-size // 256) * 256)


def _error_text(cudart, err) -> str:
    try:
        name = cudart.cudaGetErrorName(err)[1]
        text = cudart.cudaGetErrorString(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return f"{name}: {text}"
    except Exception:  # noqa: BLE001 -- only used to decorate an error we already raise
        return str(err)


def check(result, what: str):
    """Unpack a cudart result tuple; raise EngineError when its error code is not success."""
    cudart = import_cudart()
    if not isinstance(result, tuple):
        result = (result,)
    err, rest = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        raise EngineError(f"CUDA call {what} failed ({_error_text(cudart, err)}); check that the GPU is visible "
                          "(nvidia-smi / tegrastats) and that no other process holds all its memory")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def set_device(device: int = 0):
    check(import_cudart().cudaSetDevice(int(device)), f"cudaSetDevice({device})")


def device_count() -> int:
    """Visible CUDA devices; 0 when the driver reports none or an error.  cuda-python <= 12.6
    raises RuntimeError when ``libcuda.so.1`` is missing (12.9+/13.x return an error code): that is
    "no GPU" too, as a typed error, so callers can fall back to ONNX Runtime."""
    cudart = import_cudart()
    try:
        result = cudart.cudaGetDeviceCount()
    except RuntimeError as exc:
        raise NoGPUError(f"no CUDA driver here ({exc}); TensorRT engines need an NVIDIA GPU and its driver. "
                         "Check nvidia-smi or use ONNX Runtime (--backend onnxruntime)") from None
    if result[0] != cudart.cudaError_t.cudaSuccess:
        return 0
    return int(result[1])


def device_info(device: int = 0) -> dict:
    """Name, compute capability ("8.7"), CUDA runtime/driver versions and memory of ``device``."""
    cudart = import_cudart()
    count = device_count()
    if count == 0:
        raise NoGPUError("no CUDA GPU is visible to this process (cudaGetDeviceCount = 0); TensorRT engines need "
                         "one. Check the driver (nvidia-smi) or use ONNX Runtime (--backend onnxruntime)")
    if not 0 <= int(device) < count:
        raise EngineError(f"GPU {device} does not exist (this machine has {count}); pass --device 0..{count - 1}")
    prop = check(cudart.cudaGetDeviceProperties(int(device)), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    runtime = check(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    driver = check(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    return {
        "name": str(name).strip(),
        "compute_capability": f"{prop.major}.{prop.minor}",
        "cuda_runtime": format_cuda_version(runtime),
        "cuda_driver": format_cuda_version(driver),
        "total_memory": int(prop.totalGlobalMem),
    }


class Stream:
    """One CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self):
        cudart = import_cudart()
        self._stream = check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def cuda_stream(self):
        return self._stream

    @property
    def handle(self) -> int:
        return int(self._stream)  # cudaStream_t converts to its address in every cuda-python release

    def synchronize(self):
        check(import_cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def free(self):
        if self._stream is not None:
            stream, self._stream = self._stream, None
            check(import_cudart().cudaStreamDestroy(stream), "cudaStreamDestroy")


class HostDeviceBuffer:
    """A device allocation and a pinned host allocation of the same capacity, grown on demand.

    ``host_view(shape, dtype)`` is a NumPy array over the pinned memory (valid until the next
    ``ensure`` that grows it)."""

    def __init__(self, nbytes: int = 0):
        self.capacity = 0
        self.device_ptr = 0
        self.host_ptr = 0
        if nbytes:
            self.ensure(nbytes)

    def ensure(self, nbytes: int) -> bool:
        """Make room for ``nbytes``; True when it reallocated (addresses changed)."""
        new = grow_size(self.capacity, max(1, int(nbytes)))
        if new == self.capacity and self.device_ptr:
            return False
        cudart = import_cudart()
        self.free()
        self.device_ptr = int(check(cudart.cudaMalloc(new), f"cudaMalloc({new})"))
        try:
            self.host_ptr = int(check(cudart.cudaMallocHost(new), f"cudaMallocHost({new})"))
        except EngineError:
            check(cudart.cudaFree(self.device_ptr), "cudaFree")
            self.device_ptr = 0
            raise
        self.capacity = new
        return True

    def host_view(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
        if count * dtype.itemsize > self.capacity:
            raise EngineError(f"internal: pinned buffer of {self.capacity} bytes is too small for {shape} {dtype}")
        raw = (ctypes.c_byte * max(self.capacity, 1)).from_address(self.host_ptr)
        flat = np.frombuffer(raw, dtype=np.uint8, count=count * dtype.itemsize)
        return flat.view(dtype).reshape(tuple(shape))

    def to_device(self, nbytes: int, stream: Stream):
        cudart = import_cudart()
        check(cudart.cudaMemcpyAsync(self.device_ptr, self.host_ptr, int(nbytes),
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.cuda_stream),
              "cudaMemcpyAsync(host->device)")

    def to_host(self, nbytes: int, stream: Stream):
        cudart = import_cudart()
        check(cudart.cudaMemcpyAsync(self.host_ptr, self.device_ptr, int(nbytes),
                                     cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.cuda_stream),
              "cudaMemcpyAsync(device->host)")

    def free(self):
        if not (self.device_ptr or self.host_ptr):
            return
        cudart = import_cudart()
        device_ptr, host_ptr = self.device_ptr, self.host_ptr
        self.device_ptr = self.host_ptr = 0
        self.capacity = 0
        if device_ptr:
            check(cudart.cudaFree(device_ptr), "cudaFree")
        if host_ptr:
            check(cudart.cudaFreeHost(host_ptr), "cudaFreeHost")
