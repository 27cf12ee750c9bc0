"""ONNX Runtime runner (CPU; the CUDA execution provider when onnxruntime-gpu offers it).

Imports no torch.  The edgepose metadata is read from the file when present
(``runner.meta``), otherwise ``meta`` is None and the caller must supply one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepose.backends.base import Runner, TensorSpec
from edgepose.errors import MetadataError, UsageError
from edgepose.ort_session import create_session, default_providers

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _spec(node) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node.shape)
    if node.type not in _ORT_DTYPES:
        raise UsageError(f"tensor {node.name!r} has type {node.type}, which edgepose runners do not feed; "
                         "re-export the model with float32/float16 inputs")
    return TensorSpec(node.name, shape, np.dtype(_ORT_DTYPES[node.type]))


def _is_int8(path) -> bool:
    """True when the file's edgepose metadata says INT8 (reads metadata only, not weights)."""
    from edgepose.metadata import read_metadata

    try:
        return read_metadata(path).precision == "int8"
    except MetadataError:
        return False


class ORTRunner(Runner):
    """Run an ONNX file with ONNX Runtime.

    ``providers``: list of execution providers (default: CUDA when present, then CPU).
    ``threads``: intra-op threads (default: ONNX Runtime's choice).
    ``disable_cse``: turn off CommonSubexpressionElimination -- INT8 Q/DQ graphs need it, or
    ORT merges the dedicated Q/DQ pairs at residual forks and fuses only about half the convs
    into QLinearConv.  Passed as ONNX Runtime's ``disabled_optimizers`` session argument.
    ``None`` (default): on for graphs whose metadata says INT8, off otherwise.
    ``meta``: a :class:`ModelMeta` to use instead of (or when there is no) embedded metadata.
    """

    backend = "onnxruntime"

    def __init__(self, path, providers=None, threads=None, disable_cse=None, meta=None):
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such ONNX file; check the path or export it with `edgepose export`")
        if disable_cse is None:
            disable_cse = _is_int8(self.path)
        self.providers = list(providers) if providers else default_providers()
        # The pipeline alternates two sessions (detector, pose). Spinning worker threads of the
        # idle one steal the cores the busy one needs: on 2 cores this tripled detector latency.
        self.session = create_session(self.path, self.providers, threads=threads, disable_cse=bool(disable_cse),
                                      spinning=False)
        self.inputs = [_spec(n) for n in self.session.get_inputs()]
        self.outputs = [_spec(n) for n in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        batch = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.max_batch = batch if isinstance(batch, int) else None
        self.static_batch = self.max_batch
        if meta is not None:
            self.meta = meta
        else:
            self.meta = self._embedded_meta()

    def _embedded_meta(self):
        from edgepose.metadata import META_KEY, ModelMeta

        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            return None
        try:
            return ModelMeta.from_json(props[META_KEY])
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{self.path}: the edgepose metadata cannot be parsed ({exc}); re-export it") from None

    @property
    def active_providers(self) -> list:
        return self.session.get_providers()

    def _infer(self, feed: dict) -> dict:
        values = self.session.run(self._output_names, feed)
        return dict(zip(self._output_names, values))

    def __repr__(self):
        return f"ORTRunner({str(self.path)!r}, providers={self.active_providers})"


