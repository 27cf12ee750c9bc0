"""Decode inside the exported graph (``edgepose export --decode``).

:func:`wrap_with_decode` puts the official post-processing behind a model so that the ONNX
(and the TensorRT engine built from it) outputs final numbers instead of raw heads:

``ctdet`` (CenterNet)
    ``dets`` [N, K, 6] float, rows ``(x1, y1, x2, y2, score, class)``, score-descending, boxes
    in **network-input pixels** (output-map units x the head stride), class 0-based.  This is
    the official ``ctdet_decode`` (sigmoid, 3x3 max-pool peaks, global top-K, reg/wh gathers)
    via :func:`edgepose.ops.heatmap_topk.heatmap_topk`; it exports as the ``HeatmapTopK``
    plugin node inside ``edgepose.ops.plugin_export(True)``, else as standard ops (TopK,
    so K <= 3840 for TensorRT).  The inverse affine to image pixels stays on the host: with
    input-pixel boxes it is ``x_img = (x_in - in_w/2) * s_w/in_w + cx`` (same for y with the
    same factor), i.e. the official post-process with the input size instead of the output map.

``sppe`` (AlphaPose)
    ``coords`` [N, J, 2] float in **heatmap pixels** and ``scores`` [N, J, 1] (the maxima):
    the grid part of the official ``heatmap_to_coord_simple``: argmax over the flattened map
    (first occurrence), ``x = idx % W``, ``y = idx // W``; ``x = y = 0`` where the max <= 0;
    ``+-0.25 * sign`` of the neighbour differences only where ``1 < x < W-1`` and
    ``1 < y < H-1`` (strict).  Standard ONNX ops only (ArgMax, ReduceMax, GatherElements, Sign,
    Where ...).  Back-projection with the crop box stays on the host
    (``X = (x - W/2) * bw/W + bcx``, ``Y = (y - H/2) * bw/W + bcy``).
    TensorRT implements ArgMax with TopK; on exact ties between two maxima it may pick another
    of the tied positions than ONNX Runtime (first occurrence).

Usage (the export step)::

    wrapped, output_names, updates = wrap_with_decode(model, meta, K=100)
    torch.onnx.export(wrapped, x, path, output_names=output_names, dynamo=False, ...)
    meta = meta.replace(**updates)
"""
from __future__ import annotations

from edgepose.errors import UsageError
from edgepose.tasks import TASK_SPECS, task_spec

CTDET_DECODE = TASK_SPECS["ctdet"].graph_decoder
SPPE_DECODE = TASK_SPECS["sppe"].graph_decoder


def _heads_dict(out, names):
    """Model output -> dict of named heads (dict, list of dicts -> last, tuple in ``names`` order)."""
    import torch

    if isinstance(out, (list, tuple)) and out and isinstance(out[-1], dict):
        out = out[-1]  # CenterNet returns a list of dicts (one per hourglass stack)
    if isinstance(out, dict):
        return out
    if isinstance(out, torch.Tensor):
        out = (out,)
    if isinstance(out, (list, tuple)) and names and len(out) == len(names):
        return dict(zip(names, out))
    raise UsageError(
        f"cannot match the model's outputs ({type(out).__name__}) to the heads {list(names)}; "
        "make forward return a dict of heads or a tuple in the metadata's output_names order")


def sppe_argmax_decode(heatmaps):
    """Torch ops (exportable as standard ONNX) -> (coords [N,J,2] heatmap pixels, scores [N,J,1])."""
    import torch

    import warnings

    with warnings.catch_warnings():  # H, W are fixed per model: bake them in as constants
        warnings.simplefilter("ignore")
        h, w = int(heatmaps.shape[2]), int(heatmaps.shape[3])
    flat = heatmaps.flatten(2)
    maxval, idx = torch.max(flat, dim=2, keepdim=True)  # first occurrence
    idx = idx.to(torch.int32)
    wi = torch.full_like(idx, w)
    xs = torch.remainder(idx, wi)
    ys = torch.div(idx, wi, rounding_mode="trunc")  # idx >= 0: trunc == floor
    positive = maxval > 0
    zero = torch.zeros_like(xs)
    xs = torch.where(positive, xs, zero)
    ys = torch.where(positive, ys, zero)
    # neighbours, with indices clamped into the map (their values are used only in the interior)
    # (Max/Min rather than Clip: TensorRT's Clip is float-only)
    one = torch.ones_like(xs)
    xl = torch.maximum(xs - one, zero)
    xr = torch.minimum(xs + one, torch.full_like(xs, w - 1))
    yu = torch.maximum(ys - one, zero)
    yd = torch.minimum(ys + one, torch.full_like(ys, h - 1))

    def at(yy, xx):
        return torch.gather(flat, 2, (yy * wi + xx).to(torch.int64))

    interior = (xs > 1) & (xs < w - 1) & (ys > 1) & (ys < h - 1)
    quarter = torch.where(interior, torch.full_like(maxval, 0.25), torch.zeros_like(maxval))
    dx = torch.sign(at(ys, xr) - at(ys, xl)) * quarter
    dy = torch.sign(at(yd, xs) - at(yu, xs)) * quarter
    coords = torch.cat([xs.to(heatmaps.dtype) + dx, ys.to(heatmaps.dtype) + dy], dim=2)
    return coords, maxval


def _wrapper_class():
    import torch
    from torch import nn

    from edgepose.ops.heatmap_topk import heatmap_topk

    class DecodeWrapper(nn.Module):
        """``model`` followed by the in-graph decoder of its task."""

        def __init__(self, model, decoder, names, K=100, apply_sigmoid=True, stride=4):
            super().__init__()
            self.model = model
            self.decoder = decoder
            self.names = list(names)
            self.K = int(K)
            self.apply_sigmoid = bool(apply_sigmoid)
            self.stride = int(stride)

        def forward(self, x):
            heads = _heads_dict(self.model(x), self.names)
            if self.decoder == CTDET_DECODE:
                missing = [k for k in ("hm", "wh") if k not in heads]
                if missing:
                    raise UsageError(f"ctdet decode needs the heads hm, wh (and reg); missing {missing}")
                boxes, scores, classes = heatmap_topk(
                    heads["hm"], heads["wh"], heads.get("reg"), K=self.K,
                    apply_sigmoid=self.apply_sigmoid, stride=self.stride)
                return torch.cat([boxes, scores.unsqueeze(-1), classes.to(boxes.dtype).unsqueeze(-1)], dim=-1)
            hm = heads.get("heatmaps")
            if hm is None:
                if len(heads) != 1:
                    raise UsageError(f"sppe decode needs one heatmap output ('heatmaps'), got {list(heads)}")
                hm = next(iter(heads.values()))
            return sppe_argmax_decode(hm)

    return DecodeWrapper


def wrap_with_decode(model, meta, K: int = 100):
    """Return ``(wrapped nn.Module, output_names, meta_updates)``; see the module docstring.

    ``meta_updates`` goes into ``meta.replace(**meta_updates)``: ``decode``, ``decode_k``,
    ``output_names`` and ``extra["decode_units"]``."""
    task = meta.task
    decoder = task_spec(task).graph_decoder
    names = list(meta.output_names or meta.heads or [])
    cls = _wrapper_class()
    if decoder == CTDET_DECODE:
        from edgepose.ops.heatmap_topk import PLUGIN_K_LIMIT

        K = int(K)
        if not 1 <= K <= PLUGIN_K_LIMIT:
            raise UsageError(f"--decode needs 1 <= K <= {PLUGIN_K_LIMIT} (3840 without plugins), got K={K}")
        hm_head = (meta.heads or {}).get("hm", {})
        stride = int(hm_head.get("stride") or 4)
        apply_sigmoid = hm_head.get("activation", "sigmoid") == "sigmoid"
        wrapped = cls(model, decoder, names, K=K, apply_sigmoid=apply_sigmoid, stride=stride)
        updates = {"decode": CTDET_DECODE, "decode_k": K, "output_names": ["dets"],
                   "extra": {**(meta.extra or {}), "decode_units": "input_pixels",
                             "dets_layout": "x1,y1,x2,y2,score,class"}}
        return wrapped, list(task_spec(task).graph_outputs), updates
    if decoder == SPPE_DECODE:
        wrapped = cls(model, decoder, names)
        updates = {"decode": SPPE_DECODE, "decode_k": None, "output_names": ["coords", "scores"],
                   "extra": {**(meta.extra or {}), "decode_units": "heatmap_pixels"}}
        return wrapped, list(task_spec(task).graph_outputs), updates
    raise UsageError(f"in-graph decode exists for the tasks ctdet and sppe, not {task!r}; "
                     "export without --decode and decode on the host")
