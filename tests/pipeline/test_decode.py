"""Decoders, flip helpers and NMS against the official golden vectors and NumPy references.

Golden cases (tests/data/reference/golden_vectors.json): ``centernet_ctdet_decode``,
``cornernet_decode``, ``alphapose_heatmap_to_coord_simple``,
``alphapose_flip_heatmap_cpu_torch2.13``, ``soft_nms_gaussian``.  Golden values are
rounded to 6 decimals: tolerance 1e-5.
"""
import math

import numpy as np
import pytest

from edgepose.errors import UsageError
from edgepose.metadata import COCO_FLIP_PAIRS
from edgepose.pipeline import (
    cornernet_decode,
    cornernet_postprocess,
    ctdet_decode,
    ctdet_flip_merge,
    ctdet_merge_outputs,
    ctdet_postprocess,
    flip_heatmap_back,
    heatmap_to_coords,
    pose_nms,
    pose_scores,
    sigmoid,
    soft_nms,
)

ATOL = 1e-5
CORNER_KEYS = ["tl_heat_logits", "br_heat_logits", "tl_tag", "br_tag", "tl_off", "br_off"]


def _arr(x):
    return np.asarray(x, dtype=np.float32)


# ----------------------------------------------------------------------------- references


def ref_peaks(heat):
    """Brute-force 3x3 local maxima (ties survive) of one [C,H,W] map: list of (score, c, y, x)."""
    c, h, w = heat.shape
    out = []
    for k in range(c):
        for y in range(h):
            for x in range(w):
                win = heat[k, max(0, y - 1):y + 2, max(0, x - 1):x + 2]
                out.append((float(heat[k, y, x]) if heat[k, y, x] == win.max() else 0.0, k, y, x))
    return out


def ref_soft_nms(boxes, sigma=0.5, Nt=0.5, threshold=0.001, method=2):
    """Line-by-line transcription of the Cython soft_nms (in place, float32); returns (boxes, N)."""
    b = np.array(boxes, dtype=np.float32)
    N = b.shape[0]
    f = np.float32
    for i in range(b.shape[0]):  # Cython evaluates range(N) once
        maxscore, maxpos = b[i, 4], i
        t = b[i, :5].copy()
        pos = i + 1
        while pos < N:
            if maxscore < b[pos, 4]:
                maxscore, maxpos = b[pos, 4], pos
            pos += 1
        b[i, :5] = b[maxpos, :5]
        b[maxpos, :5] = t
        tx1, ty1, tx2, ty2 = b[i, 0], b[i, 1], b[i, 2], b[i, 3]
        pos = i + 1
        while pos < N:
            x1, y1, x2, y2 = b[pos, 0], b[pos, 1], b[pos, 2], b[pos, 3]
            area = (x2 - x1 + f(1)) * (y2 - y1 + f(1))
            iw = min(tx2, x2) - max(tx1, x1) + f(1)
            if iw > 0:
                ih = min(ty2, y2) - max(ty1, y1) + f(1)
                if ih > 0:
                    ua = f((tx2 - tx1 + f(1)) * (ty2 - ty1 + f(1)) + area - iw * ih)
                    ov = f(iw * ih / ua)
                    if method == 1:
                        weight = f(1 - ov) if ov > Nt else f(1)
                    elif method == 2:
                        weight = f(math.exp(float(-(ov * ov) / f(sigma))))
                    else:
                        weight = f(0) if ov > Nt else f(1)
                    b[pos, 4] = weight * b[pos, 4]
                    if b[pos, 4] < f(threshold):
                        b[pos, :5] = b[N - 1, :5]
                        N -= 1
                        pos -= 1
            pos += 1
    return b, N


# ----------------------------------------------------------------------------- CenterNet


def test_ctdet_decode_golden(golden):
    """golden case: centernet_ctdet_decode (detections and ctdet_post_process)."""
    case = golden["centernet_ctdet_decode"]
    heat = sigmoid(_arr(case["hm_logits"])[None])
    dets = ctdet_decode(heat, _arr(case["wh"])[None], _arr(case["reg"])[None], K=case["K"])
    assert dets.shape == (1, case["K"], 6) and dets.dtype == np.float32
    np.testing.assert_allclose(dets[0], case["detections"], atol=ATOL)
    pp = case["post_process"]
    info = {"c": np.array(pp["c"]), "s": pp["s"], "out_h": pp["out_hw"][0], "out_w": pp["out_hw"][1]}
    img = ctdet_postprocess(dets[0], info)
    for cls, rows in pp["per_class_1based"].items():
        got = img[img[:, 5] == int(cls) - 1][:, :5]
        np.testing.assert_allclose(got, rows, atol=ATOL)


def test_ctdet_decode_matches_bruteforce():
    rng = np.random.default_rng(0)
    heat = rng.random((1, 3, 7, 9)).astype(np.float32)
    heat[0, 1, 3, 3:5] = 2.0  # two equal neighbouring maxima: both survive
    wh = rng.random((1, 2, 7, 9)).astype(np.float32) * 5
    K = 12
    dets = ctdet_decode(heat, wh, None, K=K)[0]
    ref = sorted(ref_peaks(heat[0]), key=lambda t: (-t[0], t[1], t[2], t[3]))[:K]
    for row, (s, c, y, x) in zip(dets, ref):
        w, h = wh[0, 0, y, x], wh[0, 1, y, x]
        exp = [x + 0.5 - w / 2, y + 0.5 - h / 2, x + 0.5 + w / 2, y + 0.5 + h / 2, s, c]
        np.testing.assert_allclose(row, exp, atol=1e-6)
    assert dets[0, 4] == dets[1, 4] == 2.0
    assert np.all(np.diff(dets[:, 4]) <= 0)
    # more rows than peaks: the rest are zero-score rows (ties ordered by class, y, x here)
    n_peaks = sum(1 for t in ref_peaks(heat[0]) if t[0] > 0)
    K = n_peaks + 3
    dets = ctdet_decode(heat, wh, None, K=K)[0]
    ref = sorted(ref_peaks(heat[0]), key=lambda t: (-t[0], t[1], t[2], t[3]))[:K]
    np.testing.assert_allclose(dets[:, 4], [t[0] for t in ref], atol=0)
    np.testing.assert_allclose(dets[:, 5], [t[1] for t in ref], atol=0)
    np.testing.assert_allclose(dets[:, 0], [t[3] + 0.5 - wh[0, 0, t[2], t[3]] / 2 for t in ref], atol=1e-6)
    with pytest.raises(UsageError, match="lower K"):
        ctdet_decode(heat, wh, None, K=3 * 7 * 9 + 1)


def test_ctdet_flip_merge():
    rng = np.random.default_rng(1)
    hm0, hm1 = rng.random((2, 1, 2, 4, 5)).astype(np.float32)
    wh0, wh1 = rng.random((2, 1, 2, 4, 5)).astype(np.float32)
    hm, wh = ctdet_flip_merge(hm0, hm1, wh0, wh1)
    # column x of the merge takes column W-1-x of the flipped pass
    for x in range(5):
        np.testing.assert_allclose(hm[..., x], (hm0[..., x] + hm1[..., 4 - x]) / 2, atol=1e-7)
        np.testing.assert_allclose(wh[..., x], (wh0[..., x] + wh1[..., 4 - x]) / 2, atol=1e-7)
    logit = np.log(hm0 / (1 - hm0))
    hm_l, _ = ctdet_flip_merge(logit, np.log(hm1 / (1 - hm1)), wh0, wh1, hm_is_logits=True)
    np.testing.assert_allclose(hm_l, hm, atol=1e-6)


def test_ctdet_merge_outputs_max_cut_and_nms():
    # 3 classes, 4 rows each, scores 0.1..1.2; max_per_image=5 keeps scores >= 5th largest
    rows = np.array([[0, 0, 10, 10, 0.1 * (i + 1), i % 3] for i in range(12)], np.float32)
    out = ctdet_merge_outputs([rows], max_per_image=5)
    np.testing.assert_allclose(np.sort(out[:, 4]), [0.8, 0.9, 1.0, 1.1, 1.2], atol=1e-6)
    assert np.all(np.diff(out[:, 5]) >= 0)  # grouped by class ascending
    # soft-NMS on: identical boxes of one class decay by exp(-1/0.5) after the first
    same = np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]], np.float32)
    out = ctdet_merge_outputs([same], nms=True)
    np.testing.assert_allclose(out[:, 4], [0.9, 0.8 * math.exp(-2)], atol=1e-6)


# ----------------------------------------------------------------------------- CornerNet


def test_cornernet_decode_golden(golden):
    """golden case: cornernet_decode (valid rows only; -1 ties are unordered officially)."""
    case = golden["cornernet_decode"]
    args = [_arr(case[k])[None] for k in CORNER_KEYS]
    dets = cornernet_decode(*args, K=5, kernel=3, ae_threshold=0.5, num_dets=12)
    assert dets.shape == (1, 12, 8)
    valid = dets[0][dets[0][:, 4] > -1]
    np.testing.assert_allclose(valid, case["valid_detections"], atol=ATOL)
    np.testing.assert_array_equal(dets[0][len(valid):, 4], -1)


def test_cornernet_decode_matches_pair_loop():
    rng = np.random.default_rng(2)
    C, H, W, K = 2, 6, 7, 6
    tl, br = rng.normal(size=(2, 1, C, H, W)).astype(np.float32)
    tl_tag, br_tag = (rng.normal(size=(2, 1, 1, H, W)) * 0.3).astype(np.float32)
    tl_off, br_off = rng.random((2, 1, 2, H, W)).astype(np.float32)
    dets = cornernet_decode(tl, br, tl_tag, br_tag, tl_off, br_off, K=K, kernel=3, ae_threshold=0.5, num_dets=K * K)[0]

    def corners(logit, off):
        peaks = sorted(ref_peaks(sigmoid(logit[0])), key=lambda t: (-t[0], t[1], t[2], t[3]))[:K]
        return [(s, c, y, x, x + off[0, 0, y, x], y + off[0, 1, y, x]) for s, c, y, x in peaks]

    expected = []
    for s1, c1, y1, x1, fx1, fy1 in corners(tl, tl_off):
        for s2, c2, y2, x2, fx2, fy2 in corners(br, br_off):
            ok = c1 == c2 and abs(tl_tag[0, 0, y1, x1] - br_tag[0, 0, y2, x2]) <= 0.5 and fx2 >= fx1 and fy2 >= fy1
            if ok:
                expected.append([fx1, fy1, fx2, fy2, (s1 + s2) / 2, s1, s2, c1])
    expected = sorted(expected, key=lambda r: -r[4])
    valid = dets[dets[:, 4] > -1]
    assert len(valid) == len(expected) > 0
    np.testing.assert_allclose(valid, expected, atol=1e-6)


def _golden_rows_as_dets(golden):
    boxes = np.array(golden["soft_nms_gaussian"]["boxes_in_[x1,y1,x2,y2,score]"], np.float32)
    dets = np.zeros((len(boxes) + 1, 8), np.float32)
    dets[:-1, :5] = boxes
    dets[-1, 4] = -1  # rejected pair
    return dets


def test_cornernet_postprocess_geometry(golden):
    """golden case: cornernet_preprocess (ratios, border) drives the back-mapping."""
    case = golden["cornernet_preprocess"]
    info = {"ratios": tuple(case["ratios_hw"]), "border": case["border_[top,bottom,left,right]"],
            "sizes": tuple(case["image_hw"]), "scale": 1.0}
    rh, rw = case["ratios_hw"]
    top, _, left, _ = case["border_[top,bottom,left,right]"]
    dets = np.array([[10, 8, 40, 50, 0.9, 0.9, 0.9, 3],
                     [1, 1, 95, 63, 0.8, 0.8, 0.8, 0],  # corners clip to the image
                     [5, 5, 6, 6, -1, 0, 0, 0]], np.float32)
    out = cornernet_postprocess(dets, info)
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[0], [max(0, 1 / rw - left), max(0, 1 / rh - top), min(640, 95 / rw - left),
                                        min(427, 63 / rh - top), 0.8, 0], atol=1e-3)
    np.testing.assert_allclose(out[1], [10 / rw - left, 8 / rh - top, 40 / rw - left, 50 / rh - top, 0.9, 3],
                               atol=1e-3)


def test_cornernet_postprocess_stale_quirk(golden):
    """golden case: soft_nms_gaussian, through the CornerNet post-processing."""
    info = {"ratios": (1.0, 1.0), "border": [0, 0, 0, 0], "sizes": (100, 100)}
    dets = _golden_rows_as_dets(golden)
    after = np.array(golden["soft_nms_gaussian"]["boxes_after_in_place"], np.float32)
    clean = cornernet_postprocess(dets, info)
    np.testing.assert_allclose(clean[:, :5], after[:4], atol=ATOL)
    quirk = cornernet_postprocess(dets, info, official_stale_boxes=True)
    np.testing.assert_allclose(quirk[:, :5], after, atol=ATOL)
    # max-3 cut: the stale 0.3 duplicate beats its live copy (0.297 and 0.067 are cut)
    quirk3 = cornernet_postprocess(dets, info, official_stale_boxes=True, max_per_image=3)
    np.testing.assert_allclose(quirk3[:, 4], [0.9, 0.7, 0.3], atol=ATOL)


# ----------------------------------------------------------------------------- soft-NMS


def test_soft_nms_golden(golden):
    """golden case: soft_nms_gaussian (quirk = all rows in place; default = keep list applied)."""
    case = golden["soft_nms_gaussian"]
    boxes = np.array(case["boxes_in_[x1,y1,x2,y2,score]"], np.float32)
    before = boxes.copy()
    quirk = soft_nms(boxes, Nt=0.5, method=2, official_quirk=True)
    np.testing.assert_allclose(quirk, case["boxes_after_in_place"], atol=ATOL)
    clean = soft_nms(boxes, Nt=0.5, method=2)
    np.testing.assert_allclose(clean, np.array(case["boxes_after_in_place"])[case["returned_keep"]], atol=ATOL)
    np.testing.assert_array_equal(boxes, before)  # input untouched


@pytest.mark.parametrize("method", [0, 1, 2])
def test_soft_nms_matches_cython_transcription(method):
    rng = np.random.default_rng(10 + method)
    for _ in range(20):
        n = int(rng.integers(1, 14))
        xy = rng.integers(0, 20, size=(n, 2)).astype(np.float32)
        wh = rng.integers(1, 12, size=(n, 2)).astype(np.float32)
        score = rng.choice([0.0004, 0.002, 0.05, 0.3, 0.6, 0.9], size=n) * rng.uniform(0.5, 1, n)
        boxes = np.concatenate([xy, xy + wh, score[:, None]], axis=1).astype(np.float32)
        ref, live = ref_soft_nms(boxes, Nt=0.3, method=method, threshold=0.01)
        got = soft_nms(boxes, Nt=0.3, method=method, threshold=0.01, official_quirk=True)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(soft_nms(boxes, Nt=0.3, method=method, threshold=0.01), ref[:live],
                                   rtol=1e-6, atol=1e-7)


def test_soft_nms_bad_input():
    with pytest.raises(UsageError, match="x1, y1, x2, y2, score"):
        soft_nms(np.zeros((3, 4)))
    assert soft_nms(np.zeros((0, 5))).shape == (0, 5)


# ----------------------------------------------------------------------------- AlphaPose


def test_heatmap_to_coords_golden(golden):
    """golden case: alphapose_heatmap_to_coord_simple (interior, x=1 edge, all-negative, ties)."""
    case = golden["alphapose_heatmap_to_coord_simple"]
    coords, scores = heatmap_to_coords(_arr(case["heatmaps_JxHxW"])[None], _arr(case["bbox_xyxy"])[None])
    assert coords.dtype == np.float32 and coords.shape == (1, 5, 2) and scores.shape == (1, 5, 1)
    np.testing.assert_allclose(coords[0], case["coords"], atol=ATOL)
    np.testing.assert_allclose(scores[0], case["maxvals"], atol=ATOL)


def test_heatmap_to_coords_matches_loop_reference():
    rng = np.random.default_rng(3)
    hms = rng.normal(size=(3, 17, 16, 12)).astype(np.float32)
    hms[0, 0] = -1  # all negative
    hms[1, 2, 0, 5] = 9  # peak on the top row: no refinement
    boxes = np.array([[10, 20, 58, 84], [-5, 0, 43, 64], [100, 50, 124, 82]], np.float32)
    coords, scores = heatmap_to_coords(hms, boxes)
    for n in range(3):
        bw = boxes[n, 2] - boxes[n, 0]
        cx, cy = boxes[n, 0] + bw / 2, (boxes[n, 1] + boxes[n, 3]) / 2
        for j in range(17):
            hm = hms[n, j]
            y, x = divmod(int(np.argmax(hm)), 12)
            if hm.max() <= 0:
                x = y = 0
            fx, fy = float(x), float(y)
            if 1 < x < 11 and 1 < y < 15:
                fx += 0.25 * np.sign(hm[y, x + 1] - hm[y, x - 1])
                fy += 0.25 * np.sign(hm[y + 1, x] - hm[y - 1, x])
            exp = [(fx - 6) * bw / 12 + cx, (fy - 8) * bw / 12 + cy]
            np.testing.assert_allclose(coords[n, j], exp, atol=1e-4)
            assert scores[n, j, 0] == hm.max()
    c0, s0 = heatmap_to_coords(np.zeros((0, 17, 16, 12)), np.zeros((0, 4)))
    assert c0.shape == (0, 17, 2) and s0.shape == (0, 17, 1)
    with pytest.raises(UsageError, match="one crop box per person"):
        heatmap_to_coords(hms, boxes[:2])


def test_flip_heatmap_official_cpu_quirk(golden):
    """golden case: alphapose_flip_heatmap_cpu_torch2.13 (smeared column 0)."""
    case = golden["alphapose_flip_heatmap_cpu_torch2.13"]
    out = flip_heatmap_back(_arr(case["input_NxJxHxW"]), [[1, 2], [3, 4]], shift=True, official_cpu_quirk=True)
    np.testing.assert_allclose(out, case["output"], atol=ATOL)


def test_flip_heatmap_default_is_one_column_shift(golden):
    """Same input as golden case alphapose_flip_heatmap_cpu_torch2.13; the intended result, by hand."""
    hm = _arr(golden["alphapose_flip_heatmap_cpu_torch2.13"]["input_NxJxHxW"])
    n, j, h, w = hm.shape
    swap = {0: 0, 1: 2, 2: 1, 3: 4, 4: 3}
    expected = np.empty_like(hm)
    for a in range(n):
        for k in range(j):
            src = hm[a, swap[k]]
            for x in range(w):
                # flipped-back column x is src column w-1-x; the shift moves column x-1 into x
                expected[a, k, :, x] = src[:, w - 1 - max(x - 1, 0)]
    np.testing.assert_allclose(flip_heatmap_back(hm, [[1, 2], [3, 4]]), expected, atol=0)
    # without the shift it is a plain flip with swapped pairs; flipping twice is the identity
    once = flip_heatmap_back(hm, [[1, 2], [3, 4]], shift=False)
    np.testing.assert_array_equal(flip_heatmap_back(once, [[1, 2], [3, 4]], shift=False), hm)
    three = flip_heatmap_back(hm[0], COCO_FLIP_PAIRS[:2], shift=False)  # [J,H,W] input works too
    np.testing.assert_array_equal(three, once[0])


def test_pose_scores_formula():
    js = np.array([[[0.2], [0.8], [0.5]], [[0.0], [0.1], [0.9]]], np.float32)
    got = pose_scores(js, [0.7, 0.4])
    np.testing.assert_allclose(got, [0.5 + 0.7 + 1.25 * 0.8, 1.0 / 3 + 0.4 + 1.25 * 0.9], atol=1e-6)


def test_pose_nms_merges_duplicates():
    rng = np.random.default_rng(4)
    base = rng.uniform(100, 200, size=(17, 2)).astype(np.float32)
    coords = np.stack([base, base + 0.5, base + 300])  # person 1 duplicates person 0
    scores = np.stack([np.full((17, 1), 0.9), np.full((17, 1), 0.6), np.full((17, 1), 0.8)]).astype(np.float32)
    boxes = np.array([[90, 90, 210, 210], [90, 90, 210, 210], [390, 390, 510, 510]], np.float32)
    keep, merged, mscores = pose_nms(boxes, [0.9, 0.8, 0.7], coords, scores)
    assert keep.tolist() == [0, 2]
    # score-weighted merge of the pair: weights 0.9/1.5 and 0.6/1.5; merged score sum s^2/sum s
    np.testing.assert_allclose(merged[0], base + 0.5 * 0.6 / 1.5, atol=1e-4)
    np.testing.assert_allclose(mscores[0, :, 0], (0.81 + 0.36) / 1.5, atol=1e-6)
    np.testing.assert_allclose(merged[1], base + 300, atol=1e-4)
    # a person whose best joint is below 0.3 is dropped
    keep, _, _ = pose_nms(boxes[2:], [0.7], coords[2:], np.full((1, 17, 1), 0.2, np.float32))
    assert keep.size == 0
