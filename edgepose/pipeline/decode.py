"""Official-exact decoders in NumPy: CenterNet ctdet, AlphaPose heatmaps, CornerNet corners.

Facts followed: shared/reference/README.md ("Decode", "Post-processing", "Flip test",
"Heatmap to coordinates", "CornerNet-Squeeze / Decode, Post-processing").  No torch.
Layouts are NCHW like the network outputs.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError
from edgepose.ops.heatmap_topk import decode_peaks, gather_at, topk_flat
from edgepose.ops.heatmap_topk import peak_nms as heatmap_nms
from edgepose.pipeline.nms import pose_nms, soft_nms  # noqa: F401  (re-exported)

__all__ = [
    "sigmoid", "heatmap_nms", "ctdet_decode", "ctdet_flip_merge", "ctdet_merge_outputs",
    "heatmap_to_coords", "backproject_keypoints", "flip_heatmap_back", "cornernet_decode", "cornernet_postprocess",
    "pose_scores", "soft_nms", "pose_nms", "CORNERNET_SQUEEZE_TEST",
]

#: CornerNet-Squeeze test configuration (configs/CornerNet_Squeeze.json).
CORNERNET_SQUEEZE_TEST = {"K": 20, "kernel": 3, "ae_threshold": 0.5, "num_dets": 100}


def sigmoid(x):
    """Numerically stable logistic function; keeps float32 as float32."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _as_nchw(a, name):
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise UsageError(f"{name} must be NCHW (or CHW), got shape {a.shape}")
    return a


# ----------------------------------------------------------------------------- CenterNet


def ctdet_decode(heat, wh, reg=None, K=100):
    """CenterNet ``ctdet_decode``: ``[B, K, 6]`` rows ``(x1, y1, x2, y2, score, class)``.

    ``heat`` is the ``hm`` head **after** sigmoid (as the official function takes it),
    ``wh``/``reg`` the raw heads, all NCHW.  3x3 max-pool peaks, global top-K, ``x += reg[0]``,
    ``y += reg[1]`` (``reg=None`` adds 0.5), box ``(x - w/2, y - h/2, x + w/2, y + h/2)`` in
    output-map pixels; class 0-based; no score threshold (always K rows).
    """
    heat = _as_nchw(heat, "heat").astype(np.float32, copy=False)
    wh = _as_nchw(wh, "wh").astype(np.float32, copy=False)
    b, _, h, w = heat.shape
    if wh.shape[0] != b or wh.shape[1] != 2 or wh.shape[2:] != (h, w):
        raise UsageError(f"wh must be [B, 2, H, W] matching heat {heat.shape}, got {wh.shape}")
    if reg is not None:
        reg = _as_nchw(reg, "reg").astype(np.float32, copy=False)
        if reg.shape != wh.shape:
            raise UsageError(f"reg must be [B, 2, H, W] like wh {wh.shape}, got {reg.shape}")
    boxes, scores, clses = decode_peaks(heat, wh, reg, K)
    return np.concatenate([boxes, scores[..., None], clses[..., None].astype(np.float32)], axis=2).astype(np.float32)


def ctdet_flip_merge(hm0, hm1_flipped, wh0, wh1_flipped, hm_is_logits=False):
    """CenterNet ``--flip_test`` merge of the pass on the image and on its mirror.

    ``hm = (hm0 + flipW(hm1)) / 2`` with both **after** sigmoid (pass ``hm_is_logits=True``
    to apply it here); ``wh = (wh0 + flipW(wh1)) / 2`` with no channel swap and no sign
    change.  ``reg`` comes only from the unflipped pass, so it is not an argument.
    Returns ``(hm, wh)`` for :func:`ctdet_decode`.
    """
    hm0, hm1 = np.asarray(hm0, np.float32), np.asarray(hm1_flipped, np.float32)
    wh0, wh1 = np.asarray(wh0, np.float32), np.asarray(wh1_flipped, np.float32)
    if hm0.shape != hm1.shape or wh0.shape != wh1.shape:
        raise UsageError(f"flip merge needs equal shapes: hm {hm0.shape} vs {hm1.shape}, wh {wh0.shape} vs {wh1.shape}")
    if hm_is_logits:
        hm0, hm1 = sigmoid(hm0), sigmoid(hm1)
    return (hm0 + hm1[..., ::-1]) / 2, (wh0 + wh1[..., ::-1]) / 2


def _max_per_image_cut(groups, max_per_image):
    """Keep rows whose score >= the ``max_per_image``-th largest score over all classes (ties keep more)."""
    scores = np.concatenate([g[:, 4] for g in groups]) if groups else np.zeros(0, np.float32)
    if len(scores) > max_per_image:
        kth = len(scores) - max_per_image
        thresh = np.partition(scores, kth)[kth]
        groups = [g[g[:, 4] >= thresh] for g in groups]
    return groups


def ctdet_merge_outputs(dets_per_scale, nms=None, max_per_image=100, official_quirk=False):
    """CenterNet ``merge_outputs``: per-class concat over test scales, optional soft-NMS, max-100 cut.

    ``dets_per_scale``: list of ``[K, 6]`` rows already in image pixels
    (:func:`~edgepose.pipeline.preprocess.ctdet_postprocess`).  ``nms=None`` runs Gaussian
    soft-NMS (Nt 0.5) only when there is more than one scale, like the official code
    (``--nms`` forces it).  ``official_quirk`` keeps soft-NMS's stale rows (see
    :func:`soft_nms`).  Returns ``[M, 6]`` grouped by class ascending, official order within
    a class.
    """
    if isinstance(dets_per_scale, np.ndarray) and dets_per_scale.ndim == 2:
        dets_per_scale = [dets_per_scale]
    parts = [np.asarray(d, np.float32).reshape(-1, 6) for d in dets_per_scale]
    if nms is None:
        nms = len(parts) > 1
    allrows = np.concatenate(parts) if parts else np.zeros((0, 6), np.float32)
    groups = []
    for cls in np.unique(allrows[:, 5]):
        rows = allrows[allrows[:, 5] == cls]
        if nms:
            kept = soft_nms(rows[:, :5], Nt=0.5, method=2, official_quirk=official_quirk)
            rows = np.concatenate([kept, np.full((len(kept), 1), cls, np.float32)], axis=1)
        groups.append(rows)
    groups = _max_per_image_cut(groups, max_per_image)
    return np.concatenate(groups).astype(np.float32) if groups else np.zeros((0, 6), np.float32)


# ----------------------------------------------------------------------------- AlphaPose


def heatmap_to_coords(heatmaps, crop_boxes):
    """AlphaPose ``heatmap_to_coord_simple`` for a batch.

    ``heatmaps[N, J, h, w]``, ``crop_boxes[N, 4]`` xyxy (the enlarged crop boxes returned by
    ``crop_people``).  Per joint: first argmax; ``maxval <= 0`` forces ``(0, 0)``; a
    ``0.25 * sign`` step towards the larger neighbour on each axis, only strictly inside
    (``1 < x < w-1`` and ``1 < y < h-1``); back-projection ``X = (x - w/2) * bw/w + bcx``,
    ``Y = (y - h/2) * bw/w + bcy`` -- the box **width** sets the factor for both axes.
    Returns ``(coords[N, J, 2] float32, scores[N, J, 1])`` with ``scores = maxval``.
    """
    hms = np.asarray(heatmaps, dtype=np.float32)
    if hms.ndim == 3:
        hms = hms[None]
    if hms.ndim != 4:
        raise UsageError(f"heatmaps must be [N, J, h, w], got shape {hms.shape}")
    n, j, h, w = hms.shape
    boxes = np.asarray(crop_boxes, dtype=np.float64).reshape(-1, 4) if np.size(crop_boxes) else np.zeros((0, 4))
    if len(boxes) != n:
        raise UsageError(f"{n} heatmap sets but {len(boxes)} crop boxes; pass one crop box per person")
    if n == 0:
        return np.zeros((0, j, 2), np.float32), np.zeros((0, j, 1), np.float32)
    flat = hms.reshape(n * j, h * w)  # one row per (person, joint): flat indices, no meshgrid
    idx = flat.argmax(axis=1)
    rows = np.arange(n * j)
    maxvals = flat[rows, idx].reshape(n, j, 1)
    positive = maxvals.reshape(-1) > 0
    px = np.where(positive, idx % w, 0)
    py = np.where(positive, idx // w, 0)
    coords = np.stack([px, py], axis=1).astype(np.float32)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    at = np.clip(py, 1, h - 2) * w + np.clip(px, 1, w - 2)
    dx = flat[rows, at + 1] - flat[rows, at - 1]
    dy = flat[rows, at + w] - flat[rows, at - w]
    step = np.stack([np.sign(dx), np.sign(dy)], axis=1).astype(np.float32) * np.float32(0.25)
    coords = (coords + step * inside[:, None]).reshape(n, j, 2)
    return backproject_keypoints(coords, boxes, (h, w)), maxvals.astype(np.float32)


def backproject_keypoints(coords, crop_boxes, heatmap_hw):
    """Heatmap-pixel keypoints ``[N, J, 2]`` -> image pixels, AlphaPose's inverse affine:
    ``X = (x - w/2) * bw/w + bcx``, ``Y = (y - h/2) * bw/w + bcy`` around the centre of each
    crop box ``[N, 4]`` (xyxy) -- the box **width** sets the factor for both axes.
    ``heatmap_hw``: ``(h, w)`` of the heatmaps.  Float64 math, float32 result."""
    hm_h, hm_w = (float(v) for v in heatmap_hw)
    boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 4)
    bw = boxes[:, 2] - boxes[:, 0]
    center = np.stack([boxes[:, 0] + bw * 0.5, boxes[:, 1] + (boxes[:, 3] - boxes[:, 1]) * 0.5], axis=1)
    factor = (bw / hm_w)[:, None, None]
    half = np.array([hm_w / 2.0, hm_h / 2.0])
    preds = (np.asarray(coords, np.float64) - half) * factor + center[:, None, :]
    return preds.astype(np.float32)


def flip_heatmap_back(heatmaps_of_flipped_input, flip_pairs, shift=True, official_cpu_quirk=False):
    """Undo a horizontal input flip on SPPE heatmaps (AlphaPose ``flip_heatmap``).

    Flip back along width, swap the channels of each joint pair, and with ``shift=True``
    move everything **one column to the right** (column j takes column j-1; column 0 keeps
    its own value) -- the intended behaviour, as in SimpleBaseline.  Average the result with
    the unflipped heatmaps yourself.

    Official quirk: AlphaPose shifts in place on overlapping slices without a clone; on CPU
    with torch 2.13 that smears column 0 across the whole row (golden case
    ``alphapose_flip_heatmap_cpu_torch2.13``).  ``official_cpu_quirk=True`` reproduces that.
    Accepts ``[N, J, H, W]`` or ``[J, H, W]``.
    """
    hm = np.asarray(heatmaps_of_flipped_input)
    if hm.ndim not in (3, 4):
        raise UsageError(f"heatmaps must be [N, J, H, W] or [J, H, W], got shape {hm.shape}")
    out = hm[..., ::-1].copy()
    nj = out.shape[-3]
    for pair in flip_pairs:
        a, b = (int(v) for v in pair)
        if not (0 <= a < nj and 0 <= b < nj):
            raise UsageError(f"flip pair {pair} is out of range for {nj} joints; check meta.flip_pairs")
        out[..., [a, b], :, :] = out[..., [b, a], :, :]
    if shift:
        if official_cpu_quirk:
            out[...] = out[..., 0:1]
        else:
            out[..., 1:] = out[..., :-1].copy()
    return out


def pose_scores(joint_scores, box_scores):
    """AlphaPose proposal score per person: ``mean(joint) + box_score + 1.25 * max(joint)``."""
    js = np.asarray(joint_scores, dtype=np.float32)
    if js.ndim == 3:
        js = js[..., 0]
    bs = np.asarray(box_scores, dtype=np.float32).reshape(-1)
    if js.ndim != 2 or js.shape[0] != bs.shape[0]:
        raise UsageError(f"joint_scores [N, J, 1] and box_scores [N] disagree: {np.shape(joint_scores)} vs {bs.shape}")
    if js.shape[0] == 0:
        return np.zeros(0, np.float32)
    return (js.mean(axis=1) + bs + np.float32(1.25) * js.max(axis=1)).astype(np.float32)


# ----------------------------------------------------------------------------- CornerNet


def cornernet_decode(tl_heat, br_heat, tl_tag, br_tag, tl_regr, br_regr, K=100, kernel=3,
                     ae_threshold=0.5, num_dets=1000, apply_sigmoid=True):
    """CornerNet-Lite ``_decode``: ``[B, num_dets, 8]`` rows
    ``(x1, y1, x2, y2, score, tl_score, br_score, class)`` in output-map pixels.

    Heats are raw logits (the official function applies the sigmoid; pass
    ``apply_sigmoid=False`` if your graph already did).  Max-pool NMS (``kernel``), top-K
    corners per heatmap, offsets added (channel 0 = x), all K x K pairs scored
    ``(tl + br) / 2``; a pair scores **-1** when the classes differ, ``|tl_tag - br_tag| >
    ae_threshold``, ``br_x < tl_x`` or ``br_y < tl_y``; then the top ``num_dets`` pairs
    (clamped to K*K).  The order of rows tied at -1 is unspecified officially.
    CornerNet-Squeeze's test config is :data:`CORNERNET_SQUEEZE_TEST` (K=20, num_dets=100).
    """
    tl_heat = _as_nchw(tl_heat, "tl_heat").astype(np.float32, copy=False)
    br_heat = _as_nchw(br_heat, "br_heat").astype(np.float32, copy=False)
    if tl_heat.shape != br_heat.shape:
        raise UsageError(f"tl_heat {tl_heat.shape} and br_heat {br_heat.shape} must have the same shape")
    b = tl_heat.shape[0]
    if apply_sigmoid:
        tl_heat, br_heat = sigmoid(tl_heat), sigmoid(br_heat)
    tl_heat, br_heat = heatmap_nms(tl_heat, kernel), heatmap_nms(br_heat, kernel)
    tl_scores, tl_pos, tl_cls, tl_ys, tl_xs = topk_flat(tl_heat, K)
    br_scores, br_pos, br_cls, br_ys, br_xs = topk_flat(br_heat, K)
    if tl_regr is not None and br_regr is not None:
        tr = gather_at(_as_nchw(tl_regr, "tl_regr").astype(np.float32, copy=False), tl_pos)
        brr = gather_at(_as_nchw(br_regr, "br_regr").astype(np.float32, copy=False), br_pos)
        tl_xs, tl_ys = tl_xs + tr[..., 0], tl_ys + tr[..., 1]
        br_xs, br_ys = br_xs + brr[..., 0], br_ys + brr[..., 1]
    tl_t = gather_at(_as_nchw(tl_tag, "tl_tag").astype(np.float32, copy=False), tl_pos)[..., 0]
    br_t = gather_at(_as_nchw(br_tag, "br_tag").astype(np.float32, copy=False), br_pos)[..., 0]

    shape = (b, K, K)
    TX1, TY1 = np.broadcast_to(tl_xs[:, :, None], shape), np.broadcast_to(tl_ys[:, :, None], shape)
    BX2, BY2 = np.broadcast_to(br_xs[:, None, :], shape), np.broadcast_to(br_ys[:, None, :], shape)
    TS, BS = np.broadcast_to(tl_scores[:, :, None], shape), np.broadcast_to(br_scores[:, None, :], shape)
    TC, BC = np.broadcast_to(tl_cls[:, :, None], shape), np.broadcast_to(br_cls[:, None, :], shape)
    scores = (TS + BS) / np.float32(2)
    dists = np.abs(tl_t[:, :, None] - br_t[:, None, :])
    invalid = (TC != BC) | (dists > ae_threshold) | (BX2 < TX1) | (BY2 < TY1)
    scores = np.where(invalid, np.float32(-1), scores).astype(np.float32)

    flat = scores.reshape(b, -1)
    nd = min(int(num_dets), K * K)
    out = np.empty((b, nd, 8), np.float32)
    for i in range(b):
        order = np.argsort(-flat[i], kind="stable")[:nd]
        out[i] = np.stack([
            TX1[i].reshape(-1)[order], TY1[i].reshape(-1)[order], BX2[i].reshape(-1)[order],
            BY2[i].reshape(-1)[order], flat[i, order], TS[i].reshape(-1)[order], BS[i].reshape(-1)[order],
            TC[i].reshape(-1)[order].astype(np.float32),
        ], axis=1)
    return out


def cornernet_postprocess(dets, info, official_stale_boxes=False, max_per_image=100, nms_threshold=0.5):
    """CornerNet ``cornernet_inference`` after decode -> ``[M, 6]`` rows ``(x1, y1, x2, y2, score, cls)``.

    Map back (``x / ratio_w - border_left``, ``y / ratio_h - border_top``, clipped to the
    resized image, divided by the test scale), drop rows with score <= -1, Gaussian
    soft-NMS per class (sigma 0.5, threshold 0.001), keep every row whose score is >= the
    ``max_per_image``-th score.  Output grouped by class ascending (0-based class).

    ``official_stale_boxes=False`` (default, clean): soft-NMS's keep list is applied.
    ``official_stale_boxes=True``: the official behaviour -- the keep list is ignored, so
    rows that soft-NMS discarded survive as stale copies with their older, higher scores
    (duplicates of live boxes) and compete in the max-100 cut.  ``info`` is the dict from
    :func:`~edgepose.pipeline.preprocess.cornernet_preprocess`.
    """
    d = np.array(dets, dtype=np.float32, copy=True)
    if d.ndim == 3:
        if d.shape[0] != 1:
            raise UsageError(f"cornernet_postprocess takes one image's detections, got batch {d.shape[0]}")
        d = d[0]
    if d.ndim != 2 or d.shape[1] != 8:
        raise UsageError(f"dets must be [num_dets, 8] from cornernet_decode, got shape {d.shape}")
    try:
        ratio_h, ratio_w = info["ratios"]
        border = np.asarray(info["border"], np.float32)
        size_h, size_w = info["sizes"]
        scale = float(info.get("scale", 1.0))
    except (KeyError, TypeError, ValueError):
        raise UsageError("info must be the dict returned by cornernet_preprocess (ratios, border, sizes)") from None
    xs, ys = d[:, 0:4:2], d[:, 1:4:2]
    xs /= np.float32(ratio_w)
    ys /= np.float32(ratio_h)
    xs -= border[2]
    ys -= border[0]
    np.clip(xs, 0, np.float32(size_w), out=xs)
    np.clip(ys, 0, np.float32(size_h), out=ys)
    d[:, 0:4] /= np.float32(scale)
    d = d[d[:, 4] > -1]
    groups = []
    for cls in np.unique(d[:, 7]):
        rows = soft_nms(d[d[:, 7] == cls][:, 0:7], Nt=nms_threshold, method=2, official_quirk=official_stale_boxes)
        groups.append(np.concatenate([rows[:, 0:5], np.full((len(rows), 1), cls, np.float32)], axis=1))
    groups = _max_per_image_cut(groups, max_per_image)
    return np.concatenate(groups).astype(np.float32) if groups else np.zeros((0, 6), np.float32)
