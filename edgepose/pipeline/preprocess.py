"""Network inputs exactly as the official test code builds them (NumPy + OpenCV, no torch).

Frames are BGR ``uint8`` ``HxWx3`` arrays as ``cv2.imread`` returns them.  The facts followed
here are in shared/reference/README.md ("CenterNet ctdet / Network input, Test geometry",
"AlphaPose SPPE / Crop", "CornerNet-Squeeze / Input").
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError
from edgepose.pipeline.affine import affine_points, get_affine_transform

__all__ = [
    "normalize_to_chw",
    "ctdet_geometry",
    "ctdet_preprocess",
    "normalize_into",
    "ctdet_postprocess",
    "box_to_center_scale",
    "crop_people",
    "cornernet_preprocess",
]


def check_image(image, what="image"):
    """``image`` itself when it is a non-empty HxWx3 NumPy array; UsageError naming the fix otherwise."""
    return _check_image(image, what)


def _check_image(image, what="image"):
    if not isinstance(image, np.ndarray):
        raise UsageError(f"{what} must be a NumPy array (HxWx3 BGR as read by cv2), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"{what} must be HxWx3 (BGR), got shape {image.shape}; "
                         "convert grey/BGRA frames with cv2.cvtColor first")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise UsageError(f"{what} is empty (shape {image.shape}); check the source")
    return image


def _stride(meta, head, default):
    try:
        return int(meta.heads[head]["stride"])
    except (KeyError, TypeError, ValueError):
        return default


def normalize_to_chw(image, meta):
    """HxWx3 frame (BGR, uint8 or float) -> float32 ``[3, H, W]`` in ``meta.channel_order``.

    Computes ``(pixel * meta.scale - mean) / std`` per channel, ``mean``/``std`` given in the
    order of ``meta.channel_order``.
    """
    _check_image(image)
    order = str(meta.channel_order).upper()
    if order == "RGB":
        image = image[:, :, ::-1]
    elif order != "BGR":
        raise UsageError(f"unsupported channel_order {meta.channel_order!r}; use 'BGR' or 'RGB'")
    mean = np.asarray(meta.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(meta.std, dtype=np.float32).reshape(3, 1, 1)
    if np.any(std == 0):
        raise UsageError(f"meta.std contains 0 ({meta.std}); fix the model metadata")
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    chw *= np.float32(meta.scale)
    chw -= mean
    chw /= std
    return chw


def _scaled_size(image_bgr, test_scale):
    """Checked ``(h, w, int(h * t), int(w * t))`` of a frame at test scale ``t`` (official rule)."""
    _check_image(image_bgr)
    if test_scale is None or not np.isfinite(test_scale) or test_scale <= 0:
        raise UsageError(f"test_scale must be a positive number, got {test_scale!r}")
    height, width = image_bgr.shape[:2]
    new_h, new_w = int(height * test_scale), int(width * test_scale)
    if new_h < 1 or new_w < 1:
        raise UsageError(f"test_scale {test_scale} shrinks the {width}x{height} image to nothing; use a larger scale")
    return height, width, new_h, new_w


# ----------------------------------------------------------------------------- CenterNet


def ctdet_geometry(image_bgr, meta, mode="fix_res", test_scale=1.0, pad=None):
    """CenterNet test geometry of a frame: ``(resized frame, info)``.

    ``info`` holds ``c``, ``s``, ``out_h``, ``out_w``, ``inp_h``, ``inp_w``, ``scale`` and
    ``trans_input`` (frame -> network input); see :func:`ctdet_preprocess` for the rules.
    """
    import cv2

    height, width, new_h, new_w = _scaled_size(image_bgr, test_scale)
    if mode == "fix_res":
        inp_h, inp_w = (int(v) for v in meta.input_size)
        c = np.array([new_w / 2.0, new_h / 2.0], dtype=np.float32)
        s = float(max(height, width))
    elif mode == "keep_res":
        if pad is None:
            pad = int((meta.extra or {}).get("pad", 31))
        inp_h, inp_w = (new_h | pad) + 1, (new_w | pad) + 1
        c = np.array([new_w // 2, new_h // 2], dtype=np.float32)
        s = np.array([inp_w, inp_h], dtype=np.float32)
    else:
        raise UsageError(f"unknown CenterNet input mode {mode!r}; use 'fix_res' or 'keep_res'")
    down = _stride(meta, "hm", 4)
    trans = get_affine_transform(c, s, 0, (inp_w, inp_h))
    resized = image_bgr if (new_h, new_w) == (height, width) else cv2.resize(image_bgr, (new_w, new_h))
    info = {
        "c": c, "s": s, "out_h": inp_h // down, "out_w": inp_w // down,
        "inp_h": inp_h, "inp_w": inp_w, "scale": float(test_scale), "trans_input": trans,
    }
    return resized, info


def ctdet_preprocess(image_bgr, meta, mode="fix_res", test_scale=1.0, pad=None, flip=False):
    """CenterNet ``pre_process``: resize by ``test_scale``, warp, normalise.

    ``mode="fix_res"``: input ``meta.input_size`` (H, W); ``c = (new_w/2, new_h/2)`` floats and
    ``s = max(h, w)`` of the **original** image (official).
    ``mode="keep_res"``: input ``((new_h | pad) + 1, (new_w | pad) + 1)`` -- the smallest
    multiple of 32 strictly above the size (pad 31; 127 for hourglass); ``c`` integer halves,
    ``s = [inp_w, inp_h]``: a pure translation.  Only usable with models exported with dynamic
    H/W.  ``pad`` defaults to ``meta.extra.get("pad", 31)``.

    Returns ``(tensor float32 [1,3,H,W], info)`` (``[2,3,H,W]`` with the mirrored copy when
    ``flip=True``); ``info`` has ``c``, ``s``, ``out_h``, ``out_w``, ``inp_h``, ``inp_w``,
    ``scale`` and ``trans_input``.
    """
    import cv2

    resized, info = ctdet_geometry(image_bgr, meta, mode=mode, test_scale=test_scale, pad=pad)
    warped = cv2.warpAffine(resized, info["trans_input"], (info["inp_w"], info["inp_h"]), flags=cv2.INTER_LINEAR)
    tensor = normalize_to_chw(warped, meta)[None]
    if flip:
        tensor = np.concatenate([tensor, tensor[:, :, :, ::-1]], axis=0)
    return np.ascontiguousarray(tensor), info


def normalize_into(images_hwc, out, meta, skip_scale=None):
    """``[N,H,W,3]`` BGR pixels -> ``out[N,3,H,W]`` (float32/16) in ``meta.channel_order``, one
    fused multiply-add per channel: ``pixel * (scale / std) - mean / std`` (equal to
    :func:`normalize_to_chw` up to float32 rounding, ~1e-6).  The channel swap is done by
    reading the source channel, so no RGB copy of the frame is made.  ``skip_scale [N]`` bool:
    crops normalised without ``meta.scale`` (AlphaPose's ``im_to_torch`` quirk)."""
    order = str(meta.channel_order).upper()
    if order not in ("RGB", "BGR"):
        raise UsageError(f"unsupported channel_order {meta.channel_order!r}; use 'BGR' or 'RGB'")
    std = np.asarray(meta.std, dtype=np.float32)
    if np.any(std == 0):
        raise UsageError(f"meta.std contains 0 ({meta.std}); fix the model metadata")
    mult = np.float32(meta.scale) / std
    shift = -np.asarray(meta.mean, dtype=np.float32) / std
    for ch in range(3):
        src = images_hwc[..., 2 - ch if order == "RGB" else ch]
        factor = mult[ch]
        if skip_scale is not None and np.any(skip_scale):
            factor = np.where(skip_scale, np.float32(1.0) / std[ch], mult[ch]).astype(np.float32)[:, None, None]
        np.multiply(src, factor, out=out[:, ch], casting="unsafe")
        out[:, ch] += shift[ch].astype(out.dtype)
    return out


def ctdet_output_inverse(info):
    """The output-map -> image transform :func:`ctdet_postprocess` applies for ``info``
    (cache it as ``info["trans_output_inv"]`` when many frames share one geometry)."""
    return get_affine_transform(info["c"], info["s"], 0, (info["out_w"], info["out_h"]), inv=True)


def ctdet_postprocess(dets, info, test_scale=1.0):
    """Map decoded rows ``(x1, y1, x2, y2, score, cls)`` from output-map to image pixels.

    Official ``ctdet_post_process``: the inverse of ``get_affine_transform(c, s, 0,
    (out_w, out_h))`` on both corners, then division by the test scale.  Rows keep their
    order; score and class columns are untouched.  Accepts ``[K, 6]`` or ``[1, K, 6]``.
    """
    dets = np.asarray(dets, dtype=np.float32)
    if dets.ndim == 3 and dets.shape[0] == 1:
        dets = dets[0]
    if dets.ndim != 2 or dets.shape[1] < 4:
        raise UsageError(f"dets must be [K, 6] rows (x1, y1, x2, y2, score, cls); got shape {dets.shape}")
    try:
        c, s, out_w, out_h = info["c"], info["s"], info["out_w"], info["out_h"]
    except (KeyError, TypeError):
        raise UsageError("info must be the dict returned by ctdet_preprocess (keys c, s, out_h, out_w)") from None
    if test_scale is None or test_scale <= 0:
        raise UsageError(f"test_scale must be a positive number, got {test_scale!r}")
    inv = info.get("trans_output_inv")
    if inv is None:
        inv = get_affine_transform(c, s, 0, (out_w, out_h), inv=True)
    out = dets.copy()
    out[:, 0:2] = affine_points(dets[:, 0:2], inv)
    out[:, 2:4] = affine_points(dets[:, 2:4], inv)
    out[:, :4] /= np.float32(test_scale)
    return out


# ----------------------------------------------------------------------------- AlphaPose


def box_to_center_scale(boxes_xyxy, aspect_ratio=0.75, scale_mult=1.25):
    """AlphaPose ``_box_to_center_scale`` for ``boxes[N, 4]`` xyxy -> ``(centers[N,2], scales[N,2])``.

    Centre of the box; the side that is too short for ``aspect_ratio = W/H`` of the pose
    input is **enlarged** to match; both sides times ``scale_mult``.  (Official quirk, not
    reproduced: the multiplier is skipped when the centre x is exactly -1.)
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4) if np.size(boxes_xyxy) else np.zeros((0, 4), np.float32)
    if not np.all(np.isfinite(boxes)):
        raise UsageError("boxes contain NaN or inf; filter the detector output first")
    x1, y1, x2, y2 = boxes.T
    w = x2 - x1
    h = y2 - y1
    centers = np.stack([x1 + w * 0.5, y1 + h * 0.5], axis=1).astype(np.float32)
    ar = np.float32(aspect_ratio)
    w_new = np.where(w < ar * h, h * ar, w)
    h_new = np.where(w > ar * h, w / ar, h)
    scales = (np.stack([w_new, h_new], axis=1) * np.float32(scale_mult)).astype(np.float32)
    return centers, scales


def crop_people(image_bgr, boxes_xyxy, meta, official_max_quirk=False, out=None, pixels=None):
    """AlphaPose ``test_transform`` for every box: ``(batch [N,3,H,W], crop_boxes [N,4])``.

    Each box is turned into a centre/scale (``box_to_center_scale`` with aspect ``W/H`` of
    ``meta.input_size``) and the frame warped with ``get_affine_transform(center, scale, 0,
    (W, H))`` (bilinear, black border) straight into one ``[N,H,W,3]`` pixel buffer; the whole
    batch is then normalised at once by :func:`normalize_into` (``meta.channel_order``, RGB for
    AlphaPose).  ``crop_boxes`` are the enlarged boxes ``[cx - sw/2, cy - sh/2, cx + sw/2,
    cy + sh/2]`` used for back-projection.

    ``out``: a preallocated ``[M>=N,3,H,W]`` float32/float16 array to write into (the result
    is ``out[:N]``); float32 is allocated otherwise.  ``official_max_quirk=True`` reproduces
    AlphaPose's ``im_to_torch``, which divides by 255 only when the crop's maximum is above 1;
    the default always scales.  ``pixels``: a reusable ``[M>=N,H,W,3]`` uint8 scratch buffer for
    the warped crops (allocated when None or too small).
    """
    import cv2

    _check_image(image_bgr)
    inp_h, inp_w = (int(v) for v in meta.input_size)
    boxes = np.asarray(boxes_xyxy, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 3, inp_h, inp_w), np.float32), np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] < 4:
        raise UsageError(f"boxes must be [N, 4] (x1, y1, x2, y2), got shape {boxes.shape}")
    boxes = boxes[:, :4]
    n = len(boxes)
    centers, scales = box_to_center_scale(boxes, aspect_ratio=inp_w / inp_h)
    if np.any(scales[:, 0] <= 0):
        bad = int(np.argmax(scales[:, 0] <= 0))
        raise UsageError(f"box {bad} {boxes[bad].tolist()} has zero or negative size; drop empty boxes before cropping")
    if out is None:
        out = np.empty((n, 3, inp_h, inp_w), dtype=np.float32)
    elif out.shape[0] < n or tuple(out.shape[1:]) != (3, inp_h, inp_w):
        raise UsageError(f"crop buffer {out.shape} cannot hold {n} crops of 3x{inp_h}x{inp_w}")
    if pixels is None or pixels.shape[0] < n or pixels.shape[1:] != (inp_h, inp_w, 3) \
            or pixels.dtype != image_bgr.dtype:
        pixels = np.empty((n, inp_h, inp_w, 3), dtype=image_bgr.dtype)
    pixels = pixels[:n]
    for i in range(n):  # one OpenCV call per crop; everything else is batched
        trans = get_affine_transform(centers[i], scales[i], 0, (inp_w, inp_h))
        cv2.warpAffine(image_bgr, trans, (inp_w, inp_h), dst=pixels[i], flags=cv2.INTER_LINEAR)
    skip = pixels.reshape(n, -1).max(axis=1) <= 1 if official_max_quirk else None
    batch = normalize_into(pixels, out[:n], meta, skip_scale=skip)
    half = scales * 0.5
    crop_boxes = np.concatenate([centers - half, centers + half], axis=1).astype(np.float32)
    return batch, crop_boxes


# ----------------------------------------------------------------------------- CornerNet


def cornernet_preprocess(image_bgr, meta, test_scale=1.0, pad=127, canvas=None):
    """CornerNet-Lite test input: the frame centred on a zero canvas of ``(h|127, w|127)``
    (``canvas=(H, W)``: of that size instead, e.g. calibration feeds of one size).

    No +1 (427x640 -> 511x767).  The image is copied into the canvas (``crop_image``) before
    normalisation, so padding becomes ``-mean/std``.  Output size ``(inp + 1) // stride``
    (stride 8); ``ratios = out / inp`` (e.g. 64/511, not exactly 1/8).

    Returns ``(tensor float32 [1,3,inp_h,inp_w], info)``; ``info`` has ``inp_h``, ``inp_w``,
    ``out_h``, ``out_w``, ``ratios`` (h, w), ``border`` [top, bottom, left, right],
    ``offset`` [y, x], ``sizes`` (h, w) of the resized image and ``scale``.
    """
    import cv2

    height, width, new_h, new_w = _scaled_size(image_bgr, test_scale)
    inp_h, inp_w = (new_h | pad, new_w | pad) if canvas is None else (int(canvas[0]), int(canvas[1]))
    stride = _stride(meta, "tl_heat", 8)
    out_h, out_w = (inp_h + 1) // stride, (inp_w + 1) // stride
    resized = image_bgr if (new_h, new_w) == (height, width) else cv2.resize(image_bgr, (new_w, new_h))

    # official crop_image(resized, center=(new_h//2, new_w//2), size=(inp_h, inp_w))
    cty, ctx = new_h // 2, new_w // 2
    x0, x1 = max(0, ctx - inp_w // 2), min(ctx + inp_w // 2, new_w)
    y0, y1 = max(0, cty - inp_h // 2), min(cty + inp_h // 2, new_h)
    left, right, top, bottom = ctx - x0, x1 - ctx, cty - y0, y1 - cty
    ccy, ccx = inp_h // 2, inp_w // 2
    canvas = np.zeros((inp_h, inp_w, 3), dtype=resized.dtype)
    canvas[ccy - top:ccy + bottom, ccx - left:ccx + right] = resized[y0:y1, x0:x1]
    border = np.array([ccy - top, ccy + bottom, ccx - left, ccx + right], dtype=np.float32)
    offset = np.array([cty - inp_h // 2, ctx - inp_w // 2])

    tensor = np.ascontiguousarray(normalize_to_chw(canvas, meta)[None])
    info = {
        "inp_h": inp_h, "inp_w": inp_w, "out_h": out_h, "out_w": out_w,
        "ratios": (out_h / inp_h, out_w / inp_w), "border": border, "offset": offset,
        "sizes": (new_h, new_w), "scale": float(test_scale),
    }
    return tensor, info
