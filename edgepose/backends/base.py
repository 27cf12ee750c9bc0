"""The Runner contract shared by every backend (after Polygraphy's BaseRunner).

``infer(feed)`` checks input names, dtypes and shapes against the runner's declared
inputs *before* calling the backend, so runners are interchangeable and their outputs can
be compared name by name.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from edgepose.errors import UsageError


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints; ``None`` for a dynamic axis) and numpy dtype of one tensor."""

    name: str
    shape: tuple
    dtype: np.dtype

    def check(self, array: np.ndarray, runner: str = "runner"):
        if not isinstance(array, np.ndarray):
            raise UsageError(f"{runner}: input {self.name!r} must be a numpy array, got {type(array).__name__}")
        if array.dtype != self.dtype:
            raise UsageError(f"{runner}: input {self.name!r} has dtype {array.dtype}, expected {np.dtype(self.dtype)}; "
                             f"convert with .astype(np.{np.dtype(self.dtype).name})")
        if len(array.shape) != len(self.shape) or any(
                want is not None and want != got for want, got in zip(self.shape, array.shape)):
            want = "x".join("?" if d is None else str(d) for d in self.shape)
            raise UsageError(f"{runner}: input {self.name!r} has shape {tuple(array.shape)}, expected {want}")


class Runner(abc.ABC):
    """Base class.  Subclasses set ``inputs``/``outputs`` (lists of TensorSpec), ``meta``
    (:class:`edgepose.metadata.ModelMeta` or None) and ``name``, and implement ``_infer``."""

    name = "runner"
    backend = "?"
    inputs: list = []
    outputs: list = []
    meta = None
    max_batch: int | None = None  # None = unlimited

    def infer(self, feed: dict) -> dict:
        expected = {spec.name: spec for spec in self.inputs}
        missing = sorted(set(expected) - set(feed))
        extra = sorted(set(feed) - set(expected))
        if missing or extra:
            raise UsageError(f"{self.name}: feed names {sorted(feed)} do not match the model inputs "
                             f"{sorted(expected)} (missing {missing}, unexpected {extra})")
        for key, array in feed.items():
            expected[key].check(array, self.name)
        return self._infer(feed)

    @abc.abstractmethod
    def _infer(self, feed: dict) -> dict:
        ...

    @property
    def input_spec(self) -> TensorSpec:
        return self.inputs[0]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
