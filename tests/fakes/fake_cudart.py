"""cuda-python's runtime module for one real release, made from its snapshot (see fakes/api.py).

Only functions the real module has, with its parameter names; ``cudaError_t`` and
``cudaMemcpyKind`` are IntEnums with the real members and values (as in cuda-python).  Memory
is ctypes host memory, so copies really happen.  Driver situations:

* ``devices = 0``: cudaGetDeviceCount reports no device;
* ``no_driver = True``: what each release really does without ``libcuda.so.1`` -- cuda-python
  <= 12.6 raises RuntimeError, 12.9+/13.x return ``cudaErrorInsufficientDriver``.
"""
from __future__ import annotations

import ctypes
import enum
import types

from packaging.version import Version

from fakes.api import CUDA_VERSIONS, FakeMismatch, Recorder, _fake_params, _matches, cuda_runtime_snapshot

STREAM = 7  # the address our fake stream converts to


class _Stream:
    """``cudaStream_t``: ``int()`` gives its address (every release)."""

    def __init__(self, address):
        self._address = address

    def __int__(self):
        return self._address


class _Functions:
    """The fake functions; each must match the real one's parameters (checked in FakeCudart)."""

    def __init__(self, world):
        self.w = world

    def _ok(self, *values):
        return (self.w.raw.cudaError_t.cudaSuccess, *values)

    def _alloc(self, size):
        buf = ctypes.create_string_buffer(int(size))
        self.w.live[ctypes.addressof(buf)] = buf
        return self._ok(ctypes.addressof(buf))

    def cudaMalloc(self, size):
        self.w.mallocs += 1
        return self._alloc(size)

    def cudaMallocHost(self, size):
        return self._alloc(size)

    def cudaFree(self, devPtr):  # noqa: N803 -- the real parameter name
        del self.w.live[devPtr]
        return self._ok()

    def cudaFreeHost(self, ptr):
        del self.w.live[ptr]
        return self._ok()

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert dst in self.w.live and src in self.w.live and int(stream) == STREAM
        assert isinstance(kind, self.w.raw.cudaMemcpyKind)
        ctypes.memmove(dst, src, count)
        return self._ok()

    def cudaStreamCreate(self):
        self.w.streams += 1
        return self._ok(_Stream(STREAM))

    def cudaStreamSynchronize(self, stream):
        return self._ok()

    def cudaStreamDestroy(self, stream):
        self.w.streams -= 1
        return self._ok()

    def cudaGetDeviceCount(self):
        if self.w.no_driver:
            if Version(self.w.version) < Version("12.9"):
                raise RuntimeError("Failed to dlopen libcuda.so.1")
            return (self.w.raw.cudaError_t.cudaErrorInsufficientDriver, None)
        return self._ok(self.w.devices)

    def cudaGetDeviceProperties(self, device):
        prop = types.SimpleNamespace(name=b"Fake GPU\0\0", major=self.w.cc[0], minor=self.w.cc[1],
                                     totalGlobalMem=1 << 30)
        return self._ok(prop)

    def cudaRuntimeGetVersion(self):
        return self._ok(12060)

    def cudaDriverGetVersion(self):
        return self._ok(12080)

    def cudaSetDevice(self, device):
        return self._ok()

    def cudaGetErrorName(self, error):
        return self._ok(b"cudaErrorFake")

    def cudaGetErrorString(self, error):
        return self._ok(b"fake")


class FakeCudart:
    """``module``: the fake runtime module; the rest is state (live allocations, streams, knobs)."""

    PROP_FIELDS = ("name", "major", "minor", "totalGlobalMem")

    def __init__(self, version: str = CUDA_VERSIONS[-1]):
        self.version = version
        snap = cuda_runtime_snapshot(version)
        self.recorder = Recorder(f"cuda-python {version}")
        self.live, self.mallocs, self.streams, self.devices, self.cc, self.no_driver = {}, 0, 0, 1, (8, 7), False
        missing = [f for f in self.PROP_FIELDS if f not in snap["classes"]["cudaDeviceProp"]["attributes"]]
        if missing:
            raise FakeMismatch(f"cudaDeviceProp in cuda-python {version} has no {missing}")
        module = types.ModuleType("cuda.bindings.runtime")
        for name in ("cudaError_t", "cudaMemcpyKind"):
            setattr(module, name, enum.IntEnum(name, snap["classes"][name]["members"]))
        functions = _Functions(self)
        for name in dir(_Functions):
            if not name.startswith("cuda"):
                continue
            real = snap["functions"].get(name)
            fn = getattr(functions, name)
            if real is None or not _matches(_fake_params(getattr(_Functions, name)), real["signatures"]):
                raise FakeMismatch(f"fake {name}{fn.__doc__ or ''} does not match cuda-python {version}: {real}")
            setattr(module, name, self._recording(name, fn))
        self.raw = module
        self.module = _RecordingModule(module, self.recorder, snap)

    def _recording(self, name, fn):
        def call(*args, **kwargs):
            self.recorder.add(name)
            return fn(*args, **kwargs)

        call.__name__ = name
        return call


class _RecordingModule:
    """Attribute access on the fake module: recorded; names the real module lacks raise AttributeError."""

    def __init__(self, module, recorder, snap):
        self._module, self._recorder, self._snap = module, recorder, snap

    def __getattr__(self, name):
        if name in self._snap["classes"] and self._snap["classes"][name]["kind"] == "enum":
            return _EnumProxy(getattr(self._module, name), name, self._recorder)
        try:
            return getattr(self._module, name)
        except AttributeError:
            real = name in self._snap["functions"] or name in self._snap["classes"]
            raise AttributeError(f"fake cudart lacks {name!r}" if real else
                                 f"module has no attribute {name!r} (not in {self._recorder.api})") from None


class _EnumProxy:
    def __init__(self, enum_cls, qual, recorder):
        self._enum, self._qual, self._recorder = enum_cls, qual, recorder

    def __getattr__(self, name):
        self._recorder.add(f"{self._qual}.{name}")
        return getattr(self._enum, name)

    def __instancecheck__(self, obj):
        return isinstance(obj, self._enum)
