"""Snapshots of the real TensorRT / cuda-python APIs and the strict base the fakes are built on.

The snapshots (tests/data/trt_api/*.json.gz, written by tools/trt_api_snapshot.py from the real
binding wheels) say, per release, which classes, methods (parameter names, which have
defaults), properties (writable or not), enum members (and values) and module functions exist.
A fake class is bound to one snapshot class when a fake module is made for a version:

* every public method the fake defines must exist there with the same parameter names and
  defaults as one real overload, every property must be a real property, and a setter only
  where the real one is writable -- else :class:`FakeMismatch` when the fake module is made;
* at run time, reading or writing a public name the real class lacks raises AttributeError
  (as pybind11 does), writing a read-only property raises AttributeError, and a real name the
  fake does not implement raises :class:`FakeGap` (not an AttributeError, so ``getattr(x, n,
  default)`` cannot hide it);
* classes without a real constructor cannot be constructed by the code under test;
* every public name the code reads or writes is recorded in ``Recorder.used`` (the contract
  test checks those names against every supported snapshot).
"""
from __future__ import annotations

import gzip
import inspect
import json
from functools import lru_cache

from helpers.paths import TEST_DATA

SNAPSHOT_DIR = TEST_DATA / "trt_api"
TRT_VERSIONS = ("10.3.0", "10.16.0.72", "11.4.0.106")           # the supported span, oldest to newest
CUDA_VERSIONS = ("12.2.1", "12.6.2.post1", "12.9.0", "13.0.0")  # cuda-python / cuda-bindings releases


class FakeMismatch(AssertionError):
    """The fake defines something the real API does not have (or with another signature)."""


class FakeGap(AssertionError):
    """The code used a real API name that the fake does not implement: extend the fake."""


@lru_cache(maxsize=None)
def load_snapshot(kind: str, version: str) -> dict:
    """``kind`` "tensorrt" or "cuda"; the parsed snapshot JSON."""
    path = SNAPSHOT_DIR / f"{kind}-{version}.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def cuda_runtime_snapshot(version: str) -> dict:
    """The runtime module of a cuda-python snapshot (``cuda.bindings.runtime`` where it exists)."""
    modules = load_snapshot("cuda", version)["modules"]
    return modules.get("cuda.bindings.runtime") or modules["cuda.cudart"]


def _param_name(text: str) -> str:
    return text.split()[-1]  # cython signatures read "size_t size"


def _fake_params(fn) -> list:
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    return [[p.name, p.default is not p.empty] for p in params]


def _matches(fake: list, overloads: list) -> bool:
    real = [[[_param_name(n), d] for n, d in sig["params"]] for sig in overloads]
    return any(fake == r for r in real)


class Recorder:
    """The set of API names the code touched, e.g. ``"IBuilderConfig.set_flag"``,
    ``"IBuilderConfig.DLA_core="`` (a write), ``"BuilderFlag.GPU_FALLBACK"``, ``"tensorrt.Builder"``."""

    def __init__(self, api: str):
        self.api = api
        self.used = set()

    def add(self, name: str):
        self.used.add(name)


class FakeEnum:
    """A real enum's members and values for one version; unknown members raise AttributeError."""

    def __init__(self, qual: str, members: dict, recorder: Recorder):
        self._qual, self._recorder = qual, recorder
        self.__members__ = {name: FakeEnumValue(self, name, value) for name, value in members.items()}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        self._recorder.add(f"{self._qual}.{name}")
        try:
            return self.__members__[name]
        except KeyError:
            raise AttributeError(f"type object '{self._qual}' has no attribute '{name}' "
                                 f"(not in {self._recorder.api})") from None

    def __call__(self, value):
        for member in self.__members__.values():
            if member.value == int(value):
                return member
        raise ValueError(f"{value} is not a valid {self._qual}")

    def __repr__(self):
        return f"<fake enum {self._qual}>"


class FakeEnumValue:
    """A member: ``int()``-able, equal only to members of its own enum (as pybind11 enums)."""

    def __init__(self, enum: FakeEnum, name: str, value: int):
        self._enum, self.name, self.value = enum, name, int(value)

    def __int__(self):
        return self.value

    __index__ = __int__

    def __eq__(self, other):
        return isinstance(other, FakeEnumValue) and other._enum is self._enum and other.value == self.value

    def __hash__(self):
        return hash((self._enum._qual, self.value))

    def __repr__(self):
        return f"<{self._enum._qual}.{self.name}: {self.value}>"

    def __str__(self):
        return f"{self._enum._qual}.{self.name}"


class Strict:
    """Base of every fake class; ``bind`` makes the per-version subclass carrying ``_api``."""

    _api: dict = {"attributes": {}, "constructor": None}
    _qual = "?"
    _recorder: Recorder = None
    _bound = None  # the bound fake class itself (user subclasses inherit it and are not "exact")

    # -------------------------------------------------------------- construction
    def __init__(self, *args, **kwargs):
        if self._api["constructor"] is None:
            raise TypeError(f"tensorrt.{self._qual}: No constructor defined!")
        object.__setattr__(self, "_values", {})
        self._recorder.add(f"{self._qual}()")
        self._setup(*args, **kwargs)

    def _setup(self, *args, **kwargs):
        """Fake state; override (the real constructor's parameters)."""

    @classmethod
    def _make(cls, *args, **kwargs):
        """How the fakes create objects the real API returns (no public constructor needed)."""
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_values", {})
        obj._setup(*args, **kwargs)
        return obj

    # -------------------------------------------------------------- attribute access
    def _exact(self) -> bool:
        return type(self) is type(self)._bound

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        cls = type(self)
        if name in cls._api["attributes"]:
            cls._recorder.add(f"{cls._qual}.{name}")
        elif cls is cls._bound:
            raise AttributeError(f"'tensorrt.{cls._qual}' object has no attribute '{name}' "
                                 f"(not in {cls._recorder.api})")
        return object.__getattribute__(self, name)

    def __getattr__(self, name):  # normal lookup failed
        if name.startswith("_"):
            raise AttributeError(name)
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        if name in type(self)._api["attributes"]:
            raise FakeGap(f"the fake {type(self)._qual} does not implement {name!r}, which the real one has")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name, value):
        cls = type(self)
        real = cls._api["attributes"].get(name)
        if name.startswith("_") or (real is None and not self._exact()):
            object.__setattr__(self, name, value)  # fake state, or a user subclass's own attribute
            return
        if real is None:
            raise AttributeError(f"'tensorrt.{cls._qual}' object has no attribute '{name}' "
                                 f"(not in {cls._recorder.api})")
        if real["kind"] != "property" or not real.get("writable"):
            raise AttributeError(f"tensorrt.{cls._qual}.{name} is read-only in {cls._recorder.api}")
        cls._recorder.add(f"{cls._qual}.{name}=")
        descriptor = inspect.getattr_static(cls, name, None)
        if isinstance(descriptor, property):
            descriptor.__set__(self, value)
        else:
            object.__getattribute__(self, "_values")[name] = value


def bind(behaviour: type, qual: str, api: dict, recorder: Recorder) -> type:
    """The fake class for one version: ``behaviour`` checked against the snapshot class ``api``."""
    real = api["attributes"]
    for name, member in vars(behaviour).items():
        if name.startswith("_"):
            continue
        if name not in real:
            raise FakeMismatch(f"fake {qual}.{name}: the real {qual} in {recorder.api} has no such attribute")
        kind = real[name]["kind"]
        if isinstance(member, property):
            if kind != "property":
                raise FakeMismatch(f"fake {qual}.{name} is a property, the real one is a {kind}")
            if member.fset is not None and not real[name]["writable"]:
                raise FakeMismatch(f"fake {qual}.{name} is writable, the real one is read-only in {recorder.api}")
        elif callable(member):
            if kind != "method":
                raise FakeMismatch(f"fake {qual}.{name} is a method, the real one is a {kind}")
            if not _matches(_fake_params(member), real[name]["signatures"]):
                raise FakeMismatch(f"fake {qual}.{name}{inspect.signature(member)} matches no real signature "
                                   f"{real[name]['signatures']} in {recorder.api}")
    if api.get("constructor") and "_setup" in vars(behaviour):
        if not _matches(_fake_params(behaviour._setup), api["constructor"]):
            raise FakeMismatch(f"fake {qual}(...) matches no real constructor {api['constructor']}")
    cls = type(qual.rsplit(".", 1)[-1], (behaviour,), {"_api": api, "_qual": qual, "_recorder": recorder})
    cls._bound = cls
    return cls
