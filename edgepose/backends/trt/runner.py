"""TensorRT runner (the Runner protocol) on cuda-python.

    runner = TensorRTRunner("build/pose.int8.engine")
    out = runner.infer({"input": crops})          # crops: (n, 3, 256, 192) float32, n <= max_batch

Before deserializing, the ``X.engine.json`` manifest is read and checked: an engine built by
another TensorRT version or for a GPU of another compute capability is refused with the
command that rebuilds it.  Per call: ``set_input_shape`` for dynamic dims, host -> pinned ->
device copies, ``set_tensor_address`` for every I/O tensor, ``execute_async_v3`` on the
runner's one stream, output shapes read back from the context, device -> pinned copies,
one synchronize.  Buffers are kept between calls and grown when a larger batch arrives.

Importing this module needs neither TensorRT nor CUDA: both are imported in ``__init__``,
which raises :class:`~edgepose.errors.DependencyError` when they are missing or when there is
no GPU (:class:`~edgepose.errors.NoGPUError`; the backend factory then falls back to ONNX
Runtime).  The GPU is looked up through CUDA before any TensorRT object is created.  This
module imports nothing from :mod:`edgepose.backends.trt.build`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgepose.backends.base import Runner, TensorSpec
from edgepose.errors import EngineError, UsageError

log = logging.getLogger("edgepose.tensorrt")


def _dims(shape) -> tuple:
    return tuple(int(d) for d in shape)


class TensorRTRunner(Runner):
    """Run a TensorRT engine built by :func:`edgepose.backends.trt.build.onnx2engine`.

    ``device``: CUDA device index.  ``meta``: a ModelMeta overriding the manifest's.
    ``check``: refuse engines whose manifest says another TensorRT/compute capability built
    them (leave on; off only for debugging).  ``plugin_lib``: path of libedgepose_plugins.so
    when the engine has plugin layers and the library is not in a default place.
    ONNX Runtime options (``providers``, ``threads``, ``disable_cse``) are accepted and ignored,
    so one ``runner_kw`` serves both backends.
    """

    backend = "tensorrt"
    # options the other runners take; the factory passes the same runner_kw to every backend
    _OTHER_BACKENDS_KW = ("providers", "threads", "disable_cse")

    def __init__(self, engine_path, device: int = 0, meta=None, check: bool = True, plugin_lib=None, **other_kw):
        unknown = sorted(set(other_kw) - set(self._OTHER_BACKENDS_KW))
        if unknown:
            raise UsageError(f"TensorRTRunner got unknown option(s) {unknown}; "
                             "it takes device, meta, check, plugin_lib")
        self._closed = True  # close() is safe even when __init__ fails half way
        self._buffers = {}
        self._stream = None
        self.context = self.engine = self.runtime = None
        self.path = Path(engine_path)
        self.name = self.path.name
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such engine file; build it with "
                             "`edgepose build --fp16|--int8 --out DIR`")

        from edgepose.backends.trt import cuda_mem
        from edgepose.backends.trt.logger import make_logger
        from edgepose.backends.trt.manifest import check_compatible, read_manifest
        from edgepose.backends.trt.plugin_libs import load_plugins_for_engine
        from edgepose.backends.trt.version import import_tensorrt

        trt = import_tensorrt()          # DependencyError -> the factory falls back to ONNX Runtime
        cuda_mem.import_cudart()         # idem when cuda-python is missing
        self._trt, self._cuda = trt, cuda_mem
        self.manifest = read_manifest(self.path)
        info = cuda_mem.device_info(device)  # NoGPUError (a DependencyError) -> idem
        if check:
            check_compatible(self.manifest, trt.__version__, info["compute_capability"], self.path)
        self.device, self.device_name = int(device), info["name"]
        cuda_mem.set_device(self.device)
        load_plugins_for_engine(self.manifest.plugins, self.path, plugin_lib)

        self._logger = make_logger(trt, log)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            detail = "; ".join(self._logger.errors[-2:]) or "see the TensorRT messages above"
            raise EngineError(f"TensorRT cannot deserialize {self.path} ({detail}); "
                              f"{self.manifest.rebuild_hint(self.path)}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?); "
                              "close other GPU programs or rebuild with a smaller max batch")
        self._closed = False
        self._stream = cuda_mem.Stream()

        self._read_io(trt)
        self.meta = meta if meta is not None else self.manifest.meta

    def _numpy_dtype(self, trt, name):
        dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(trt.nptype(dtype))
        except TypeError:  # trt.nptype has no NumPy type for BF16/FP8/INT4/FP4
            raise EngineError(f"{self.name}: tensor {name!r} is {getattr(dtype, 'name', dtype)}, which NumPy cannot "
                              "hold, so this runner cannot feed or read it; export the model with FP32/FP16 inputs "
                              "and outputs (edgepose's FP16/INT8 graphs keep FP32 I/O) and rebuild") from None

    def _read_io(self, trt):
        """I/O specs, dtypes and profiles from the engine; max/static batch from the first input."""
        self.inputs, self.outputs, self._profiles, self._dtypes = [], [], {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = self._dtypes[name] = self._numpy_dtype(trt, name)
            shape = tuple(None if int(d) < 0 else int(d) for d in self.engine.get_tensor_shape(name))
            spec = TensorSpec(name, shape, dtype)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(spec)
                if None in shape:
                    lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
                    self._profiles[name] = (_dims(lo), _dims(opt), _dims(hi))
            else:
                self.outputs.append(spec)
        first = self.inputs[0] if self.inputs else None
        if first is not None and first.name in self._profiles:
            self.max_batch = self._profiles[first.name][2][0]
        elif first is not None and first.shape and isinstance(first.shape[0], int):
            self.max_batch = first.shape[0]
        else:
            self.max_batch = None
        self.static_batch = first.shape[0] if first is not None and isinstance(first.shape[0], int) else None

    # ------------------------------------------------------------------ inference
    def _buffer(self, name, nbytes):
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = self._cuda.HostDeviceBuffer()
        buf.ensure(nbytes)
        return buf

    def _check_profile(self, name, shape):
        prof = self._profiles.get(name)
        if prof is None:
            return
        lo, _, hi = prof
        outside = [axis for axis, (a, s, b) in enumerate(zip(lo, shape, hi)) if not a <= s <= b]
        if not outside:
            return
        fix = f"split the batch (max_batch={self.max_batch}) or rebuild with a larger range (pose_batch / det_hw)"
        if outside != [0]:  # the image size: the range came from the export's dynamic bounds
            fix = (f"this frame needs a {shape[2]}x{shape[3]} input; re-export the detector with `edgepose export "
                   f"--input-size dynamic:{max(shape[2], hi[2])}x{max(shape[3], hi[3])}` and rebuild the engine")
        raise UsageError(f"{self.name}: input {name!r} of shape {tuple(shape)} is outside the engine's profile "
                         f"{lo}..{hi}; {fix}")

    def _bind(self, name, device_ptr):
        if not self.context.set_tensor_address(name, device_ptr):  # returns bool: False = not bound
            raise EngineError(f"{self.name}: TensorRT refused the device address for tensor {name!r} "
                              "(set_tensor_address returned False); see the TensorRT messages above")

    def _infer(self, feed: dict) -> dict:
        if self._closed:
            raise UsageError(f"{self.name}: the runner was closed")
        ctx, stream = self.context, self._stream
        for spec in self.inputs:
            array = np.ascontiguousarray(feed[spec.name])
            self._check_profile(spec.name, array.shape)
            if spec.name in self._profiles and not ctx.set_input_shape(spec.name, array.shape):
                raise UsageError(f"{self.name}: TensorRT rejected the shape {array.shape} for {spec.name!r}")
            buf = self._buffer(spec.name, array.nbytes)
            np.copyto(buf.host_view(array.shape, array.dtype), array)
            buf.to_device(array.nbytes, stream)
            self._bind(spec.name, buf.device_ptr)
        sizes = {}
        for spec in self.outputs:
            shape = _dims(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.name}: output {spec.name!r} has a data-dependent shape {shape}, which this "
                                  "runner does not support; re-export with a fixed top-K")
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[spec.name].itemsize
            buf = self._buffer(spec.name, nbytes)
            self._bind(spec.name, buf.device_ptr)
            sizes[spec.name] = nbytes
        if not ctx.execute_async_v3(stream.handle):
            raise EngineError(f"{self.name}: TensorRT failed to enqueue the inference (execute_async_v3 returned "
                              "False); see the TensorRT messages above")
        shapes = {}
        for spec in self.outputs:
            shapes[spec.name] = _dims(ctx.get_tensor_shape(spec.name))  # read after enqueue
            self._buffers[spec.name].to_host(sizes[spec.name], stream)
        stream.synchronize()
        return {spec.name: self._buffers[spec.name].host_view(shapes[spec.name], self._dtypes[spec.name]).copy()
                for spec in self.outputs}

    # ------------------------------------------------------------------ lifetime
    def close(self):
        """Free the buffers and the stream; safe to call twice and after a failed __init__."""
        self._closed = True
        stream, self._stream = getattr(self, "_stream", None), None
        if stream is not None:
            try:
                stream.synchronize()  # no copy may still target the buffers we free
            except EngineError:
                pass
        buffers, self._buffers = getattr(self, "_buffers", {}), {}
        for buf in buffers.values():
            buf.free()
        if stream is not None:
            stream.free()
        self.context = self.engine = self.runtime = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 -- interpreter shutdown: CUDA may already be gone
            pass

    def __repr__(self):
        return (f"TensorRTRunner({str(self.path)!r}, device={getattr(self, 'device', '?')}, "
                f"max_batch={getattr(self, 'max_batch', None)})")
