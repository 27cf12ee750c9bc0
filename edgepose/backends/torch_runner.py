"""PyTorch reference runner: wraps a zoo ``nn.Module`` whose forward returns a dict of heads.

torch is imported only when a TorchRunner is built (never by the runtime pipeline).
"""
from __future__ import annotations

import numpy as np

from edgepose._deps import require
from edgepose.backends.base import Runner, TensorSpec
from edgepose.errors import MetadataError, UsageError


def _load_weights(model, weights, spec_name=None):
    """Load an official checkpoint strictly (edgepose.models.checkpoint handles the wrappers)."""
    from edgepose.models.checkpoint import load_checkpoint

    return load_checkpoint(model, str(weights), strict=True)


class TorchRunner(Runner):
    """``TorchRunner(model_or_name, weights=None, meta=None)``.

    ``model_or_name``: an ``nn.Module`` (forward returns ``{head: tensor}``) or a zoo name.
    ``meta``: :class:`ModelMeta`; defaults to the zoo spec's meta.  Inputs are float32 NCHW
    with dynamic batch and spatial size (torch accepts any).
    """

    backend = "torch"

    def __init__(self, model_or_name, weights=None, meta=None, device="cpu"):
        torch = require("torch")
        self._torch = torch
        if isinstance(model_or_name, str):
            from edgepose import models

            from edgepose.models.pruned import create_with_weights

            spec = models.get_spec(model_or_name)
            model = create_with_weights(model_or_name, weights)  # pruned files rebuild their widths
            weights = None
            if meta is None:
                meta = spec.meta()
            self.name = model_or_name
        else:
            model = model_or_name
            if not isinstance(model, torch.nn.Module):
                raise UsageError(f"TorchRunner needs a zoo name or a torch.nn.Module, got {type(model).__name__}")
            spec = getattr(model, "edgepose_spec", None)
            if meta is None and spec is not None:
                meta = spec.meta()
            self.name = getattr(spec, "name", type(model).__name__)
        if meta is None:
            raise MetadataError(f"{self.name}: no metadata; pass meta=ModelMeta(...) to TorchRunner")
        if weights is not None:
            _load_weights(model, weights, self.name)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta
        self.inputs = [TensorSpec(meta.input_name, (None, 3, None, None), np.dtype(np.float32))]
        names = list(meta.output_names) or list(meta.heads)
        self.outputs = [TensorSpec(n, (None, None, None, None), np.dtype(np.float32)) for n in names]
        self.max_batch = None
        self.static_batch = None

    def _infer(self, feed: dict) -> dict:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(feed[self.inputs[0].name])).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        if isinstance(out, (list, tuple)):  # official stacked nets return a list; use the last
            out = out[-1]
        if not isinstance(out, dict):
            if len(self.outputs) != 1:
                raise UsageError(f"{self.name}: forward returned a {type(out).__name__}, expected a dict of heads")
            out = {self.outputs[0].name: out}
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}
