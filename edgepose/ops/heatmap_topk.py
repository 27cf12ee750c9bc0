"""HeatmapTopK: CenterNet-style heatmap peak decode (official ``ctdet_decode`` semantics).

Given ``hm`` [N,C,H,W] (logits or probabilities), ``wh`` [N,2,H,W] and ``reg`` [N,2,H,W]
(all on the output map, stride ``stride`` relative to the network input):

1. ``heat = sigmoid(hm)`` when ``apply_sigmoid`` (else ``hm`` as is);
2. peak test: ``heat = heat * (maxpool3x3_s1_p1(heat) == heat)``; equal neighbouring maxima
   all survive (non-peaks become 0, as in the official code);
3. top-K over C*H*W together, scores descending:
   ``class = idx // (H*W)``, ``y = (idx % (H*W)) // W``, ``x = idx % W``;
4. ``x += reg[0]``, ``y += reg[1]`` at the peak (``reg=None``: +0.5 as the official code does);
5. ``box = (x - w/2, y - h/2, x + w/2, y + h/2) * stride`` -- **input pixels**
   (the official decoder returns output-map units; multiply by ``stride`` = 4 to compare).

Outputs: ``boxes`` [N,K,4] (dtype of hm), ``scores`` [N,K] (dtype of hm),
``classes`` [N,K] int32.  ``K`` must not exceed C*H*W.  Ties: rows with equal scores may come
out in any order (the official code has the same freedom); the NumPy reference orders them
by flat index.

Four faces: :func:`heatmap_topk` (PyTorch, used by :mod:`edgepose.export.graph_decode`),
:func:`heatmap_topk_numpy` (NumPy reference), the ONNX plugin node and the ONNX standard-op
decomposition.  ``torch.onnx.export(..., dynamo=False)`` emits the plugin node while
:func:`edgepose.ops.plugin_export` is on, else the decomposition.

Plugin node contract (what ``plugins/heatmapTopK`` implements)
-------------------------------------------------------------
- op_type ``HeatmapTopK``, domain ``edgepose``; attributes ``K`` (int, 1..4096),
  ``apply_sigmoid`` (int 0/1), ``stride`` (int >= 1), ``plugin_version`` ``"1"``,
  ``plugin_namespace`` ``"edgepose"``.
- inputs: ``hm`` [N,C,H,W], ``wh`` [N,2,H,W], ``reg`` [N,2,H,W]; float32 or float16 (all the
  same), linear NCHW.
- outputs: ``boxes`` [N,K,4] and ``scores`` [N,K] (input dtype), ``classes`` [N,K] int32.

Decomposition
-------------
Sigmoid, MaxPool(3x3, s1, p1), Equal, Cast, Mul, Reshape, TopK (K <= 3840, TensorRT's
limit), Shape/Gather, int32 Div/Mod, Unsqueeze/Expand, GatherElements, Add/Sub, Concat.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError
from edgepose.ops import PLUGIN_DOMAIN, PLUGIN_NAMESPACE, plugins_enabled

PLUGIN_OP_TYPE = "HeatmapTopK"
PLUGIN_VERSION = "1"
TRT_TOPK_LIMIT = 3840  # TensorRT's ITopKLayer (and so the decomposition) allows K <= 3840
PLUGIN_K_LIMIT = 4096  # plugins/heatmapTopK sorts the K candidates in shared memory


def _check_args(K, stride, shape_hm=None, shape_wh=None, shape_reg=None):
    K = int(K)
    if K < 1:
        raise UsageError(f"HeatmapTopK needs K >= 1, got K={K}")
    if int(stride) < 1:
        raise UsageError(f"HeatmapTopK needs an integer stride >= 1, got {stride}")
    if shape_hm is not None:
        if len(shape_hm) != 4:
            raise UsageError(f"HeatmapTopK needs hm as [N,C,H,W], got shape {tuple(shape_hm)}")
        n, c, h, w = shape_hm
        for name, shp in (("wh", shape_wh), ("reg", shape_reg)):
            if shp is not None and tuple(shp) != (n, 2, h, w):
                raise UsageError(f"HeatmapTopK needs {name} as [N,2,H,W] = {(n, 2, h, w)}, "
                                 f"got {tuple(shp)}; pass the head of the same model")
        if K > c * h * w:
            raise UsageError(f"HeatmapTopK K={K} exceeds C*H*W={c * h * w}; pass a smaller K")
    return K


def check_decomposition_k(K: int) -> None:
    """Raise when K is beyond TensorRT's TopK limit (the decomposition would not build)."""
    if int(K) > TRT_TOPK_LIMIT:
        raise UsageError(
            f"HeatmapTopK K={K} is above {TRT_TOPK_LIMIT}, the largest K TensorRT's TopK accepts, "
            f"so the standard-op decomposition cannot be built; pass K <= {TRT_TOPK_LIMIT}, or "
            f"export with plugin nodes (--plugins on, K <= {PLUGIN_K_LIMIT}) and build "
            "libedgepose_plugins.so")


# ----------------------------------------------------------------------------- NumPy face
def _sigmoid(x):
    x = np.asarray(x, np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def peak_nms(heat, kernel=3):
    """Keep values equal to their ``kernel x kernel`` max-pool (stride 1, -inf padding); zero the rest.

    Equal neighbouring maxima all survive (as with the official ``hmax == heat``).
    """
    heat = np.asarray(heat)
    if kernel <= 1:
        return heat.copy()
    pad = (kernel - 1) // 2
    # separable max-pool: along W, then along H (out-of-range neighbours are ignored, like -inf padding)
    hmax = heat.copy()
    for axis in (-1, -2):
        src = hmax.copy() if axis == -2 else heat
        n = heat.shape[axis]
        for off in range(1, pad + 1):
            if off >= n:
                break
            lo = [slice(None)] * heat.ndim
            hi = [slice(None)] * heat.ndim
            lo[axis], hi[axis] = slice(0, n - off), slice(off, n)
            lo, hi = tuple(lo), tuple(hi)
            np.maximum(hmax[lo], src[hi], out=hmax[lo])
            np.maximum(hmax[hi], src[lo], out=hmax[hi])
    return np.where(hmax == heat, heat, np.zeros((), heat.dtype))


def _top_indices(row, K):
    """Flat indices of the K largest entries of ``row``, score-descending, ties by index."""
    pool = np.flatnonzero(row > 0)  # after peak NMS most entries are 0: search the positives first
    if len(pool) < K:  # (tiny maps only) fewer peaks than K: full stable sort
        return np.argsort(-row, kind="stable")[:K]
    if K < len(pool):
        kth = np.partition(row[pool], len(pool) - K)[len(pool) - K]
        pool = pool[row[pool] >= kth]  # every tie of the K-th score, so the lowest indices win
    return pool[np.lexsort((pool, -row[pool]))][:K]


def topk_flat(scores, K):
    """Global top-K over classes and positions of ``[B, C, H, W]`` (score-descending, ties by
    flat index).  Returns ``(scores [B,K], flat positions in H*W [B,K], classes [B,K],
    ys [B,K] f32, xs [B,K] f32)``.

    The official code takes a per-class top-K first, then the top-K of those C*K, which
    selects the same set; the official order of ties is unspecified.
    """
    b, c, h, w = scores.shape
    flat = scores.reshape(b, -1)
    if K > flat.shape[1]:
        raise UsageError(f"K={K} exceeds the {c}x{h}x{w} heatmap ({flat.shape[1]} candidates); lower K")
    idx = np.stack([_top_indices(flat[i], K) for i in range(b)]) if b else np.zeros((0, K), np.int64)
    out_scores = np.take_along_axis(flat, idx, 1)
    pos = idx % (h * w)
    return out_scores, pos, idx // (h * w), (pos // w).astype(np.float32), (pos % w).astype(np.float32)


def gather_at(feat, pos):
    """``feat[B, C, H, W]`` at flat positions ``pos[B, K]`` -> ``[B, K, C]``."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return np.take_along_axis(flat, pos[:, None, :], axis=2).transpose(0, 2, 1)


def decode_peaks(heat, wh, reg, K):
    """The one NumPy CenterNet decode (official ``ctdet_decode``) on float32 NCHW maps, ``heat``
    after sigmoid: 3x3 peaks, top-K, ``+reg`` (``+0.5`` without), box ``(x -+ w/2, y -+ h/2)``.
    Returns ``(boxes [B,K,4] f32 in output-map pixels, scores [B,K], classes [B,K] int64)``."""
    peaks = peak_nms(heat, 3)
    scores, pos, classes, ys, xs = topk_flat(peaks, K)
    if reg is not None:
        offset = gather_at(reg, pos)
        xs, ys = xs + offset[..., 0], ys + offset[..., 1]
    else:
        xs, ys = xs + np.float32(0.5), ys + np.float32(0.5)
    size = gather_at(wh, pos)
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = np.stack([xs - half_w, ys - half_h, xs + half_w, ys + half_h], axis=-1)
    return boxes.astype(np.float32), scores, classes


def heatmap_topk_numpy(hm, wh, reg=None, K: int = 100, apply_sigmoid: bool = True, stride: int = 4):
    """NumPy reference (float32 math).  Returns (boxes [N,K,4] f32 in input pixels, scores
    [N,K] f32, classes [N,K] int32); equal scores are ordered by flat index (stable)."""
    hm = np.asarray(hm, np.float32)
    wh = np.asarray(wh, np.float32)
    reg = None if reg is None else np.asarray(reg, np.float32)
    K = _check_args(K, stride, hm.shape, wh.shape, None if reg is None else reg.shape)
    heat = _sigmoid(hm).astype(np.float32) if apply_sigmoid else hm.copy()
    boxes, scores, classes = decode_peaks(heat + np.float32(0.0), wh, reg, K)  # -0.0 -> +0.0
    return (boxes * np.float32(stride)).astype(np.float32), scores.astype(np.float32), classes.astype(np.int32)


# ----------------------------------------------------------------------------- PyTorch face
def _torch_heatmap_topk(hm, wh, reg, K: int, apply_sigmoid: bool, stride: int):
    import torch
    import torch.nn.functional as F

    n, c, h, w = hm.shape
    heat = torch.sigmoid(hm) if apply_sigmoid else hm
    hmax = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = heat * (hmax == heat).to(heat.dtype)
    scores, inds = torch.topk(heat.reshape(n, -1), K, dim=1)
    scores = scores + 0.0
    classes = torch.div(inds, h * w, rounding_mode="floor")
    sp = inds % (h * w)
    ys = torch.div(sp, w, rounding_mode="floor").to(hm.dtype)
    xs = (sp % w).to(hm.dtype)
    whf = wh.reshape(n, 2, h * w)
    idx = sp.unsqueeze(1).expand(n, 2, K)
    size = torch.gather(whf, 2, idx)
    off = torch.gather(reg.reshape(n, 2, h * w), 2, idx)
    xs = xs + off[:, 0]
    ys = ys + off[:, 1]
    bw, bh = size[:, 0], size[:, 1]
    boxes = torch.stack([xs - bw / 2, ys - bh / 2, xs + bw / 2, ys + bh / 2], dim=-1) * stride
    return boxes, scores, classes.to(torch.int32)


def _scalar_type(value):
    try:
        return value.type().scalarType()
    except (AttributeError, RuntimeError):
        return None


def _symbolic_decomposition(g, hm, wh, reg, K: int, apply_sigmoid: bool, stride: int):
    import torch

    check_decomposition_k(K)
    ftype = torch.float16 if _scalar_type(hm) == "Half" else torch.float32
    onnx_float = 10 if ftype == torch.float16 else 1  # TensorProto.FLOAT16 / FLOAT
    INT32 = 6

    def const(values, dtype):
        return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

    heat = g.op("Sigmoid", hm) if apply_sigmoid else hm
    hmax = g.op("MaxPool", heat, kernel_shape_i=[3, 3], strides_i=[1, 1], pads_i=[1, 1, 1, 1])
    keep = g.op("Cast", g.op("Equal", hmax, heat), to_i=onnx_float)
    heat = g.op("Mul", heat, keep)
    flat = g.op("Reshape", heat, const([0, -1], torch.int64))
    scores, inds = g.op("TopK", flat, const([K], torch.int64), axis_i=-1, largest_i=1, sorted_i=1,
                        outputs=2)
    inds = g.op("Cast", inds, to_i=INT32)
    shape = g.op("Cast", g.op("Shape", hm), to_i=INT32)
    hdim = g.op("Gather", shape, const(2, torch.int64), axis_i=0)
    wdim = g.op("Gather", shape, const(3, torch.int64), axis_i=0)
    hw = g.op("Mul", hdim, wdim)
    classes = g.op("Div", inds, hw)
    sp = g.op("Mod", inds, hw)
    ys = g.op("Cast", g.op("Div", sp, wdim), to_i=onnx_float)
    xs = g.op("Cast", g.op("Mod", sp, wdim), to_i=onnx_float)

    idx = g.op("Unsqueeze", sp, const([1], torch.int64))  # [N,1,K]
    size = g.op("GatherElements", g.op("Reshape", wh, const([0, 2, -1], torch.int64)),
                g.op("Concat", idx, idx, axis_i=1), axis_i=2)  # [N,2,K]
    bw = g.op("Gather", size, const(0, torch.int64), axis_i=1)
    bh = g.op("Gather", size, const(1, torch.int64), axis_i=1)
    if reg is None:
        half = const(0.5, ftype)
        xs = g.op("Add", xs, half)
        ys = g.op("Add", ys, half)
    else:
        off = g.op("GatherElements", g.op("Reshape", reg, const([0, 2, -1], torch.int64)),
                   g.op("Concat", idx, idx, axis_i=1), axis_i=2)
        xs = g.op("Add", xs, g.op("Gather", off, const(0, torch.int64), axis_i=1))
        ys = g.op("Add", ys, g.op("Gather", off, const(1, torch.int64), axis_i=1))
    half_w = g.op("Div", bw, const(2.0, ftype))
    half_h = g.op("Div", bh, const(2.0, ftype))
    corners = [g.op("Sub", xs, half_w), g.op("Sub", ys, half_h),
               g.op("Add", xs, half_w), g.op("Add", ys, half_h)]
    corners = [g.op("Unsqueeze", v, const([-1], torch.int64)) for v in corners]
    boxes = g.op("Mul", g.op("Concat", *corners, axis_i=-1), const(float(stride), ftype))
    return boxes, scores, classes


def _function_class():
    import torch

    class HeatmapTopKFunction(torch.autograd.Function):
        """Export wrapper: eager forward = torch ops; ``symbolic`` = plugin or decomposition."""

        @staticmethod
        def forward(ctx, hm, wh, reg, K, apply_sigmoid, stride):
            if reg is None:
                reg = torch.full_like(wh, 0.5)
            return _torch_heatmap_topk(hm, wh, reg, K, apply_sigmoid, stride)

        @staticmethod
        def symbolic(g, hm, wh, reg, K, apply_sigmoid, stride):
            if plugins_enabled():
                if K > PLUGIN_K_LIMIT:
                    raise UsageError(f"HeatmapTopK K={K} is above the plugin's limit {PLUGIN_K_LIMIT}; "
                                     "pass a smaller K")
                if reg is None:
                    reg = g.op("Expand", g.op("Constant", value_t=torch.tensor(0.5, dtype=torch.float32)),
                               g.op("Shape", wh))
                    reg = g.op("CastLike", reg, wh)
                boxes, scores, classes = g.op(
                    f"{PLUGIN_DOMAIN}::{PLUGIN_OP_TYPE}", hm, wh, reg, K_i=int(K),
                    apply_sigmoid_i=int(bool(apply_sigmoid)), stride_i=int(stride),
                    plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE, outputs=3)
                try:
                    sizes = hm.type().varyingSizes()
                    n = sizes[0] if sizes else None
                    boxes.setType(hm.type().with_sizes([n, K, 4]))
                    scores.setType(hm.type().with_sizes([n, K]))
                    classes.setType(hm.type().with_dtype(torch.int32).with_sizes([n, K]))
                except (AttributeError, RuntimeError, TypeError):
                    pass  # types unknown to the tracer; ONNX shape inference cannot see into plugins anyway
                return boxes, scores, classes
            return _symbolic_decomposition(g, hm, wh, reg, K, apply_sigmoid, stride)

    return HeatmapTopKFunction


_FUNCTION = None


def heatmap_topk(hm, wh, reg=None, K: int = 100, apply_sigmoid: bool = True, stride: int = 4):
    """Decode CenterNet heads into (boxes [N,K,4] in input pixels, scores [N,K], classes [N,K]
    int32).  Eager: torch ops.  Under ``torch.onnx.export(..., dynamo=False)``: an autograd
    Function whose ``symbolic`` emits the plugin node or the standard-op decomposition."""
    global _FUNCTION
    import torch

    apply_sigmoid = bool(apply_sigmoid)
    stride = int(stride)
    if torch.onnx.is_in_onnx_export():
        # shapes are traced values here: check only the static arguments
        K = _check_args(K, stride)
        if not plugins_enabled():
            check_decomposition_k(K)
        if _FUNCTION is None:
            _FUNCTION = _function_class()
        return _FUNCTION.apply(hm, wh, reg, K, apply_sigmoid, stride)
    K = _check_args(K, stride, tuple(hm.shape), tuple(wh.shape), None if reg is None else tuple(reg.shape))
    if reg is None:
        reg = torch.full_like(wh, 0.5)
    return _torch_heatmap_topk(hm, wh, reg, K, apply_sigmoid, stride)


def heatmap_topk_onnx_model(shape, K: int = 100, apply_sigmoid: bool = True, stride: int = 4,
                            plugin: bool = False, dynamic_batch: bool = False, opset: int = 17):
    """Export a one-op ONNX model (inputs hm, wh, reg; outputs boxes, scores, classes) for
    tests of the op on its own.  Returns the ``onnx.ModelProto``."""
    import io

    import onnx
    import torch

    from edgepose.ops import plugin_export

    class _One(torch.nn.Module):
        def forward(self, hm, wh, reg):
            return heatmap_topk(hm, wh, reg, K=K, apply_sigmoid=apply_sigmoid, stride=stride)

    n, c, h, w = shape
    args = (torch.zeros(n, c, h, w), torch.zeros(n, 2, h, w), torch.zeros(n, 2, h, w))
    dyn = None
    if dynamic_batch:
        dyn = {k: {0: "N"} for k in ("hm", "wh", "reg", "boxes", "scores", "classes")}
    buf = io.BytesIO()
    with plugin_export(plugin):
        torch.onnx.export(_One(), args, buf, input_names=["hm", "wh", "reg"],
                          output_names=["boxes", "scores", "classes"], opset_version=opset,
                          dynamic_axes=dyn, dynamo=False)
    return onnx.load_from_string(buf.getvalue())
