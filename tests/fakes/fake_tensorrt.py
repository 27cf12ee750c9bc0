"""A ``tensorrt`` module for one real release, made from its snapshot (see fakes/api.py).

    fake = FakeTensorRT("10.3.0")          # a version with a snapshot, or any supported version
    sys.modules["tensorrt"] = fake.module   # (monkeypatch.setitem in tests)

Enums carry the real members and values of that release; the classes the build and run paths
use are fakes bound to the real classes (names, arity, property writability).  Behaviour:
the builder records what edgepose configured and serializes a JSON description of the parsed
network; the runtime/engine read it back; ``execute_async_v3`` computes ``out = 2 * input``
from the memory bound with ``set_tensor_address``.  ``fake.*`` holds the state tests inspect.
"""
from __future__ import annotations

import ctypes
import json
import types

import numpy as np

from fakes.api import TRT_VERSIONS, FakeEnum, FakeGap, Recorder, Strict, bind, load_snapshot

_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
          "BOOL": np.bool_, "UINT8": np.uint8}  # what the real trt.nptype maps; the rest raise TypeError


def snapshot_version(version: str) -> str:
    """The snapshot that stands for ``version``: the newest one of the same major not newer than it,
    else the oldest of that major (11.1 -> 11.4), else the oldest snapshot."""
    from packaging.version import Version

    want = Version(version.split("+")[0])
    same_major = [v for v in TRT_VERSIONS if Version(v).major == want.major]
    older = [v for v in same_major if Version(v) <= want]
    if older:
        return max(older, key=Version)
    return min(same_major, key=Version) if same_major else TRT_VERSIONS[0]


# ====================================================================== bound behaviour classes
class ILogger(Strict):
    def _setup(self):
        pass


class IProgressMonitor(Strict):
    def _setup(self):
        pass


class ITensor(Strict):
    def _setup(self, name, shape, dtype):
        self._name, self._shape, self._dtype = name, tuple(shape), dtype

    name = property(lambda self: self._name)
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)


class INetworkDefinition(Strict):
    def _setup(self, flags):
        self._flags, self._inputs, self._outputs = flags, [], []

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]


class ParserError(Strict):
    def _setup(self, index, node):
        self._index, self._node = index, node

    def node(self):
        return self._index

    def node_name(self):
        return self._node.name

    def node_operator(self):
        return self._node.op_type

    def desc(self):
        return f"No importer registered for op: {self._node.op_type}"


class OnnxParser(Strict):
    def _setup(self, network, logger):
        self._network, self._errors, self._flags = network, [], set()
        self._fake.parsers.append(self)

    def set_flag(self, flag):
        self._flags.add(flag)

    def parse_from_file(self, model):
        import onnx

        graph = onnx.load(model).graph
        self._errors = [self._fake.cls("ParserError")._make(i, n) for i, n in enumerate(graph.node)
                        if n.op_type != "Mul"]
        dtype = self._fake.enum("DataType", self._fake.io_dtype)

        def tensor(value):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            return self._fake.cls("ITensor")._make(value.name, dims, dtype)

        self._network._inputs = [tensor(v) for v in graph.input]
        self._network._outputs = [tensor(v) for v in graph.output]
        return not self._errors

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index):
        return self._errors[index]


class IOptimizationProfile(Strict):
    def _setup(self):
        self._shapes = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 -- the real parameter names
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))


class IHostMemory(Strict, bytes):
    """Serialized bytes (the buffer protocol, as the real one offers)."""

    def __new__(cls, data=b""):
        return bytes.__new__(cls, data)

    def _setup(self, data=b""):
        pass

    nbytes = property(lambda self: len(self))


class ITimingCache(Strict):
    def _setup(self, data):
        self._data = bytes(data)

    def serialize(self):
        return self._fake.host_memory(self._data or b"timing:")


class IBuilderConfig(Strict):
    def _setup(self):
        self._pools, self._profiles, self._flags, self._cache, self._loaded = {}, [], 0, None, None
        self._values.update(default_device_type=self._fake.enum("DeviceType", "GPU"), DLA_core=-1,
                            progress_monitor=None, builder_optimization_level=3)

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools[pool] = pool_size

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        self._loaded = bytes(serialized_timing_cache) or self._loaded
        return self._fake.cls("ITimingCache")._make(serialized_timing_cache)

    def set_timing_cache(self, cache, ignore_mismatch):
        if self._fake.reject_timing_cache and cache._data:  # another TensorRT/GPU's cache
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache

    def set_flag(self, flag):
        self._flags |= 1 << int(flag)

    def get_flag(self, flag):
        return bool(self._flags >> int(flag) & 1)

    def _get_flags(self):
        return self._flags

    def _set_flags(self, value):
        self._flags = int(value)

    flags = property(_get_flags, _set_flags)  # the real one is an int bitmask


class Builder(Strict):
    def _setup(self, logger):
        self._logger, self._network_flags, self._config = logger, None, None
        self._fake.builders.append(self)

    num_DLA_cores = property(lambda self: self._fake.dla_cores)

    def create_network(self, flags=0):
        self._network_flags = flags
        return self._fake.cls("INetworkDefinition")._make(flags)

    def create_builder_config(self):
        self._config = self._fake.cls("IBuilderConfig")._make()
        return self._config

    def create_optimization_profile(self):
        return self._fake.cls("IOptimizationProfile")._make()

    def build_serialized_network(self, network, config):
        fake = self._fake
        if fake.fail_build:
            self._logger.log(fake.enum("ILogger.Severity", "ERROR"), "out of memory")
            return None
        fake.builds += 1
        monitor = config._values.get("progress_monitor")  # fake-side reads stay out of the recorder
        if monitor is not None:
            monitor.phase_start("Building", None, 1)
            monitor.step_complete("Building", 0)
            monitor.phase_finish("Building")
        if config._cache is not None:
            config._cache._data = bytes(memoryview(config._cache.serialize())) + b"|built"
        io = [{"name": t._name, "shape": list(t._shape), "mode": mode}
              for mode, ts in ((1, network._inputs), (2, network._outputs)) for t in ts]
        profiles = {k: [list(s) for s in v] for p in config._profiles for k, v in p._shapes.items()}
        return fake.host_memory(json.dumps({"io": io, "profiles": profiles}).encode())


class IExecutionContext(Strict):
    def _setup(self, engine):
        self._engine, self._input_shapes, self._addresses = engine, {}, {}
        self._fake.contexts.append(self)

    def set_input_shape(self, name, shape):
        lo, _, hi = self._engine._profiles[name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self._input_shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        spec = self._engine._io[name]
        if spec["mode"] == 2:  # output of the elementwise network: the input's batch and dynamic dims
            if not self._input_shapes:
                return tuple(spec["shape"])
            given = next(iter(self._input_shapes.values()))
            return tuple(g if axis == 0 or int(d) < 0 else int(d) for axis, (g, d) in enumerate(zip(given, spec["shape"])))
        return self._input_shapes.get(name, tuple(spec["shape"]))

    def set_tensor_address(self, name, memory):
        if name in self._fake.refuse_address:
            return False
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        assert stream_handle == self._fake.stream_handle, "execute_async_v3 got another stream than the runner's"
        (iname,) = [n for n, s in self._engine._io.items() if s["mode"] == 1]
        (oname,) = [n for n, s in self._engine._io.items() if s["mode"] == 2]
        count = int(np.prod(self.get_tensor_shape(iname)))
        src = np.frombuffer((ctypes.c_float * count).from_address(self._addresses[iname]), np.float32)
        dst = np.frombuffer((ctypes.c_float * count).from_address(self._addresses[oname]), np.float32)
        dst[:] = 2 * src
        return True


class ICudaEngine(Strict):
    def _setup(self, blob):
        data = json.loads(bytes(blob))
        self._io = {t["name"]: t for t in data["io"]}
        self._names, self._profiles = list(self._io), data["profiles"]

    num_io_tensors = property(lambda self: len(self._names))

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return self._fake.enums["TensorIOMode"](self._io[name]["mode"])

    def get_tensor_dtype(self, name):
        return self._fake.enum("DataType", self._fake.io_dtype)

    def get_tensor_shape(self, name):
        return tuple(self._io[name]["shape"])

    def get_tensor_profile_shape(self, name, profile_index):
        return [tuple(s) for s in self._profiles[name]]

    def create_execution_context(self, strategy=None):
        return self._fake.cls("IExecutionContext")._make(self)


class Runtime(Strict):
    def _setup(self, logger):
        self._logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        return self._fake.cls("ICudaEngine")._make(serialized_engine)


BEHAVIOUR = (ILogger, IProgressMonitor, ITensor, INetworkDefinition, ParserError, OnnxParser, IOptimizationProfile,
             IHostMemory, ITimingCache, IBuilderConfig, Builder, IExecutionContext, ICudaEngine, Runtime)


# ====================================================================== the module
class _FakeModule(types.ModuleType):
    """Module attributes are the snapshot's: reads are recorded, unknown names raise AttributeError,
    real names the fake lacks raise FakeGap."""

    def __getattribute__(self, name):
        if not name.startswith("_"):
            types.ModuleType.__getattribute__(self, "_recorder").add(f"tensorrt.{name}")
        return types.ModuleType.__getattribute__(self, name)

    def __getattr__(self, name):
        snap = types.ModuleType.__getattribute__(self, "_snapshot")
        if name in snap["classes"] or name in snap["functions"]:
            raise FakeGap(f"the fake tensorrt does not implement {name!r}, which the real one has")
        raise AttributeError(f"module 'tensorrt' has no attribute '{name}' (not in TensorRT {snap['version']})")


class FakeTensorRT:
    """``module``: the fake ``tensorrt``; the rest is state for the tests (what was built, knobs)."""

    def __init__(self, version: str = "10.3.0", io_dtype: str = "FLOAT"):
        self.snapshot_version = snapshot_version(version)
        snap = load_snapshot("tensorrt", self.snapshot_version)
        self.recorder = Recorder(f"TensorRT {self.snapshot_version}")
        self.builders, self.parsers, self.contexts = [], [], []
        self.builds, self.fail_build, self.dla_cores, self.stream_handle = 0, False, 2, None
        self.io_dtype, self.refuse_address, self.reject_timing_cache = io_dtype, set(), False
        module = _FakeModule("tensorrt")
        module._recorder, module._snapshot = self.recorder, snap
        module.__version__ = version
        self.enums = {qual: FakeEnum(qual, api["members"], self.recorder) for qual, api in snap["classes"].items()
                      if api["kind"] == "enum"}
        for qual, fake_enum in self.enums.items():
            if "." not in qual:
                setattr(module, qual, fake_enum)
        self._classes = {}
        for behaviour in BEHAVIOUR:
            name = behaviour.__name__
            cls = bind(behaviour, name, snap["classes"][name], self.recorder)
            cls._fake = self
            self._classes[name] = cls
            setattr(module, name, cls)
        self._classes["ILogger"].Severity = self.enums["ILogger.Severity"]
        module.nptype = self._nptype
        self.module = module

    def enum(self, qual: str, member: str):
        """A member for the fake's own use (not recorded as used by the code)."""
        return self.enums[qual].__members__[member]

    def cls(self, name: str) -> type:
        return self._classes[name]

    def host_memory(self, data: bytes):
        cls = self._classes["IHostMemory"]
        obj = bytes.__new__(cls, data)
        object.__setattr__(obj, "_values", {})
        return obj

    def _nptype(self, trt_type):
        """The real ``trt.nptype``: NumPy type of a DataType; TypeError for BF16/FP8/INT4/FP4/E8M0."""
        self.recorder.add("tensorrt.nptype")
        try:
            return _NUMPY[trt_type.name]
        except KeyError:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.") from None

    # ------------------------------------------------------------------ what tests look at
    @property
    def last_builder(self):
        return self.builders[-1] if self.builders else None

    @property
    def last_config(self):
        return self.last_builder._config

    @property
    def last_context(self):
        return self.contexts[-1]
