"""Corner pooling (CornerNet): exact cumulative max along H or W of an NCHW tensor.

Directions (checked against the official CornerNet-Lite C++ ops, reference README):

=========  ============================================  =========================
mode       output[n, c, y, x] = max of the input over    scan
=========  ============================================  =========================
top    0   rows y..H-1 of column x (itself and below)    reverse cummax along H
bottom 1   rows 0..y (itself and above)                  forward cummax along H
left   2   columns x..W-1 of row y (itself and right)    reverse cummax along W
right  3   columns 0..x (itself and left)                forward cummax along W
=========  ============================================  =========================

Four faces: :func:`corner_pool` (PyTorch, fp32/fp16, used by the models),
:func:`corner_pool_numpy` (NumPy reference), the ONNX plugin node and the ONNX
standard-op decomposition. Which ONNX face ``torch.onnx.export(..., dynamo=False)`` emits
is chosen by :func:`edgepose.ops.plugin_export`.

Plugin node contract (what ``plugins/cornerPool`` implements)
-------------------------------------------------------------
- op_type ``CornerPool``, domain ``edgepose`` (TensorRT's parser ignores the domain and
  looks the plugin up by op_type + ``plugin_version`` + ``plugin_namespace``).
- input 0 ``X``: float32 or float16, shape [N, C, H, W] (any N, C, H, W >= 1), linear NCHW.
- output 0 ``Y``: same dtype and shape as X.
- attributes:
    ``mode`` (int): 0 = top, 1 = bottom, 2 = left, 3 = right (table above);
    ``plugin_version`` (string): ``"1"``;
    ``plugin_namespace`` (string): ``"edgepose"``.
- Result must be bit-exact to the NumPy reference (max is exact in any precision).

Decomposition
-------------
``ceil(log2(n))`` doubling steps over the pooled extent n:
``y = Max(y, Slice(Pad(y, s, mode="edge")))`` with s = 1, 2, 4, ...  The shifted-in values
are copies of the edge element, which every window already contains once it reaches the
edge, so the result is exact (no -inf constants, fp16-safe).  Ops: Pad(edge), Slice, Max,
Constant -- all supported by TensorRT's ONNX parser.  When the extent is dynamic at export
time, ``DYNAMIC_STEPS`` steps are emitted (exact for extents up to 2**DYNAMIC_STEPS; extra
steps are no-ops).
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError
from edgepose.ops import PLUGIN_DOMAIN, PLUGIN_NAMESPACE, plugins_enabled

PLUGIN_OP_TYPE = "CornerPool"
PLUGIN_VERSION = "1"
MODES = {"top": 0, "bottom": 1, "left": 2, "right": 3}
# mode -> (axis in NCHW, reverse scan)
_AXIS_REVERSE = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}
DYNAMIC_STEPS = 12  # exact for dynamic extents up to 4096
_INT64_MAX = np.iinfo(np.int64).max


def _check_mode(mode) -> str:
    if isinstance(mode, str) and mode.lower() in MODES:
        return mode.lower()
    raise UsageError(f"unknown corner-pool mode {mode!r}; use one of {', '.join(MODES)}")


def _check_rank(ndim: int) -> None:
    if ndim != 4:
        raise UsageError(f"corner pooling needs an NCHW tensor (rank 4), got rank {ndim}; "
                         "reshape the input to [N, C, H, W]")


# ----------------------------------------------------------------------------- NumPy face
def corner_pool_numpy(x: np.ndarray, mode: str) -> np.ndarray:
    """NumPy reference: exact cumulative max (same dtype as ``x``)."""
    mode = _check_mode(mode)
    x = np.asarray(x)
    _check_rank(x.ndim)
    axis, reverse = _AXIS_REVERSE[mode]
    if reverse:
        return np.flip(np.maximum.accumulate(np.flip(x, axis), axis=axis), axis).copy()
    return np.maximum.accumulate(x, axis=axis)


# ----------------------------------------------------------------------------- decomposition plan
def decomposition_steps(extent: int | None) -> int:
    """Number of doubling steps needed for a pooled extent (None = dynamic)."""
    if extent is None:
        return DYNAMIC_STEPS
    return max(0, (int(extent) - 1).bit_length())


def decomposition_plan(mode: str, extent: int | None):
    """Per step: (pads[8], slice_start, slice_end, axis) for ``Max(y, Slice(Pad(y)))``."""
    mode = _check_mode(mode)
    axis, reverse = _AXIS_REVERSE[mode]
    plan = []
    for k in range(decomposition_steps(extent)):
        s = 1 << k
        pads = [0] * 8
        if reverse:  # y[i] <- max(y[i], y[i+s]); pad at the end, drop the first s
            pads[4 + axis] = s
            plan.append((pads, s, int(_INT64_MAX), axis))
        else:  # y[i] <- max(y[i], y[i-s]); pad at the start, drop the last s
            pads[axis] = s
            plan.append((pads, 0, -s, axis))
    return plan


def corner_pool_onnx_decomposition(input_name: str, output_name: str, mode: str,
                                   extent: int | None, prefix: str = "cornerpool"):
    """ONNX (nodes, initializers) computing ``output = corner_pool(input, mode)`` with
    standard ops (opset >= 13).  ``extent`` = H for top/bottom, W for left/right."""
    from onnx import helper, numpy_helper

    nodes, inits = [], []
    y = input_name
    plan = decomposition_plan(mode, extent)
    if not plan:
        return [helper.make_node("Identity", [input_name], [output_name], name=f"{prefix}_id")], []
    for k, (pads, start, end, axis) in enumerate(plan):
        p = f"{prefix}_s{k}"
        inits += [numpy_helper.from_array(np.array(pads, np.int64), f"{p}_pads"),
                  numpy_helper.from_array(np.array([start], np.int64), f"{p}_starts"),
                  numpy_helper.from_array(np.array([end], np.int64), f"{p}_ends"),
                  numpy_helper.from_array(np.array([axis], np.int64), f"{p}_axes")]
        out = output_name if k == len(plan) - 1 else f"{p}_max"
        nodes += [helper.make_node("Pad", [y, f"{p}_pads"], [f"{p}_pad"], mode="edge", name=f"{p}_pad"),
                  helper.make_node("Slice", [f"{p}_pad", f"{p}_starts", f"{p}_ends", f"{p}_axes"],
                                   [f"{p}_shift"], name=f"{p}_slice"),
                  helper.make_node("Max", [y, f"{p}_shift"], [out], name=f"{p}_max")]
        y = out
    return nodes, inits


def corner_pool_onnx_model(mode: str, shape, dtype: str = "float32", plugin: bool = False,
                           opset: int = 19):
    """A one-op ONNX model ``Y = CornerPool(X)`` (plugin node or decomposition) for tests of
    the op on its own.  ``shape`` = [N, C, H, W]; entries may be None (dynamic)."""
    from onnx import TensorProto, helper

    mode = _check_mode(mode)
    _check_rank(len(shape))
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}.get(str(dtype))
    if elem is None:
        raise UsageError(f"corner pooling supports float32 and float16, not {dtype!r}")
    dims = [d if d is not None else f"d{i}" for i, d in enumerate(shape)]
    x = helper.make_tensor_value_info("X", elem, dims)
    y = helper.make_tensor_value_info("Y", elem, dims)
    opsets = [helper.make_opsetid("", opset)]
    if plugin:
        nodes = [helper.make_node(PLUGIN_OP_TYPE, ["X"], ["Y"], domain=PLUGIN_DOMAIN, name="cornerpool",
                                  mode=MODES[mode], plugin_version=PLUGIN_VERSION,
                                  plugin_namespace=PLUGIN_NAMESPACE)]
        inits = []
        opsets.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    else:
        nodes, inits = corner_pool_onnx_decomposition("X", "Y", mode, shape[_AXIS_REVERSE[mode][0]])
    graph = helper.make_graph(nodes, f"corner_pool_{mode}", [x], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=opsets, producer_name="edgepose")


# ----------------------------------------------------------------------------- PyTorch face
def _torch_corner_pool(x, mode: str):
    import torch

    axis, reverse = _AXIS_REVERSE[mode]
    if reverse:
        return torch.cummax(x.flip(axis), axis)[0].flip(axis)
    return torch.cummax(x, axis)[0]


def _static_dim(value, axis: int):
    """Size of ``axis`` of a TorchScript value, or None when unknown/dynamic."""
    try:
        sizes = value.type().varyingSizes()
        return int(sizes[axis]) if sizes and sizes[axis] is not None else None
    except (AttributeError, RuntimeError, IndexError, TypeError):
        return None


def _symbolic_decomposition(g, x, mode: str):
    import torch

    axis = _AXIS_REVERSE[mode][0]
    plan = decomposition_plan(mode, _static_dim(x, axis))
    if not plan:
        return g.op("Identity", x)
    y = x
    for pads, start, end, ax in plan:
        padded = g.op("Pad", y, g.op("Constant", value_t=torch.tensor(pads, dtype=torch.int64)), mode_s="edge")
        shifted = g.op("Slice", padded,
                       g.op("Constant", value_t=torch.tensor([start], dtype=torch.int64)),
                       g.op("Constant", value_t=torch.tensor([end], dtype=torch.int64)),
                       g.op("Constant", value_t=torch.tensor([ax], dtype=torch.int64)))
        y = g.op("Max", y, shifted)
    return y


def _function_class():
    import torch

    class CornerPoolFunction(torch.autograd.Function):
        """Export wrapper: eager forward = torch cummax; ``symbolic`` = plugin or decomposition."""

        @staticmethod
        def forward(ctx, x, mode):
            return _torch_corner_pool(x, mode)

        @staticmethod
        def symbolic(g, x, mode):
            if plugins_enabled():
                out = g.op(f"{PLUGIN_DOMAIN}::{PLUGIN_OP_TYPE}", x, mode_i=MODES[mode],
                           plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
                out.setType(x.type())
                return out
            return _symbolic_decomposition(g, x, mode)

    return CornerPoolFunction


_FUNCTION = None


def corner_pool(x, mode: str):
    """Corner pooling of a torch tensor [N, C, H, W] (fp32 or fp16); exact.

    In eager mode this is ``torch.cummax`` (differentiable); under ``torch.onnx.export``
    (TorchScript exporter, ``dynamo=False``) it goes through an autograd Function whose
    ``symbolic`` emits the plugin node or the decomposition."""
    global _FUNCTION
    import torch

    mode = _check_mode(mode)
    _check_rank(x.dim())
    if torch.onnx.is_in_onnx_export():
        if _FUNCTION is None:
            _FUNCTION = _function_class()
        return _FUNCTION.apply(x, mode)
    return _torch_corner_pool(x, mode)

