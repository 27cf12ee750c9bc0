"""Affine helper and network inputs against the official golden vectors.

Golden cases (tests/data/reference/golden_vectors.json): ``centernet_preprocess`` (fix_res,
keep_res), ``cornernet_preprocess``, ``alphapose_crop``.  Golden values are rounded to 5-6
decimals, hence the ~1e-5 tolerances.
"""
import json

import numpy as np
import pytest

from edgepose.errors import EdgeposeError, UsageError
from edgepose.models import get_spec
from edgepose.pipeline import (
    affine_points,
    box_to_center_scale,
    cornernet_preprocess,
    crop_people,
    ctdet_postprocess,
    ctdet_preprocess,
    get_affine_transform,
    normalize_to_chw,
)

ATOL = 1e-5


def synthetic_image(h=427, w=640):
    """The golden image: pixel[y,x] = ((3x+7y)%256, (5x+2y+80)%256, (x+11y+160)%256)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(3 * x + 7 * y) % 256, (5 * x + 2 * y + 80) % 256, (x + 11 * y + 160) % 256],
                    axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def image():
    return synthetic_image()


def _sample(tensor, key):
    c, y, x = (int(v) for v in key.split(","))
    return tensor[c, y, x]


# ----------------------------------------------------------------------------- affine


@pytest.mark.parametrize("scale", [37.5, [37.5, 999.0]])
def test_affine_closed_form_uses_width_only(scale):
    """README: k = W/sw, [[k,0,W/2-k*cx],[0,k,H/2-k*cy]]; sh ignored; inv is the inverse."""
    cx, cy, W, H = 13.0, -4.5, 48, 64
    k = W / 37.5
    M = get_affine_transform((cx, cy), scale, 0, (W, H))
    np.testing.assert_allclose(M, [[k, 0, W / 2 - k * cx], [0, k, H / 2 - k * cy]], atol=1e-5)
    Minv = get_affine_transform((cx, cy), scale, 0, (W, H), inv=True)
    np.testing.assert_allclose(Minv, [[1 / k, 0, cx - W / 2 / k], [0, 1 / k, cy - H / 2 / k]], atol=1e-5)
    pts = np.array([[0.0, 0.0], [3.0, 7.0], [-2.0, 100.0]])
    np.testing.assert_allclose(affine_points(affine_points(pts, M), Minv), pts, atol=1e-4)


def test_affine_rotation_is_scaled_rotation():
    k, rot = 2.0, 30.0
    M = get_affine_transform((10.0, 20.0), 24.0, rot, (48, 64))
    cs, sn = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    np.testing.assert_allclose(M[:, :2], k * np.array([[cs, sn], [-sn, cs]]), atol=1e-5)
    np.testing.assert_allclose(affine_points([10.0, 20.0], M), [24.0, 32.0], atol=1e-4)


def test_affine_bad_input():
    with pytest.raises(UsageError, match="scale"):
        get_affine_transform((0, 0), 0.0, 0, (4, 4))
    with pytest.raises(UsageError, match="2x3"):
        affine_points([[1, 2]], np.eye(3))


# ----------------------------------------------------------------------------- CenterNet


@pytest.mark.parametrize("mode", ["fix_res", "keep_res"])
def test_centernet_preprocess_golden(golden, image, mode):
    """golden case: centernet_preprocess[fix_res|keep_res]."""
    case = golden["centernet_preprocess"][mode]
    meta = get_spec("centernet_res18").meta()
    tensor, info = ctdet_preprocess(image, meta, mode=mode)
    assert list(tensor.shape) == case["input_tensor_shape"]
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(info["c"], case["meta_c"], atol=ATOL)
    np.testing.assert_allclose(info["s"], case["meta_s"], atol=ATOL)
    assert [info["out_h"], info["out_w"]] == case["meta_out_hw"]
    np.testing.assert_allclose(info["trans_input"], case["input_affine_2x3"], atol=ATOL)
    inv = get_affine_transform(info["c"], info["s"], 0, (info["out_w"], info["out_h"]), inv=True)
    np.testing.assert_allclose(inv, case["output_to_image_affine_2x3"], atol=ATOL)
    for key, value in case["input_tensor_samples_chw"].items():
        assert _sample(tensor[0], key) == pytest.approx(value, abs=ATOL), key
    # back-projection through ctdet_postprocess (both corners of a row)
    pts = {k: v for k, v in case["output_points_to_image"].items()}
    keys = list(pts)
    rows = np.array([[*json.loads(a), *json.loads(b), 0.5, 0] for a, b in zip(keys, keys[1:] + keys[:1])])
    out = ctdet_postprocess(rows, info)
    for r, (a, b) in enumerate(zip(keys, keys[1:] + keys[:1])):
        np.testing.assert_allclose(out[r, 0:2], pts[a], atol=1e-4)
        np.testing.assert_allclose(out[r, 2:4], pts[b], atol=1e-4)
    np.testing.assert_array_equal(out[:, 4:], rows[:, 4:])


def test_centernet_preprocess_matches_numpy_reference(image):
    """fix_res tensor == (warp(img)/255 - mean)/std computed independently in float64."""
    import cv2

    meta = get_spec("centernet_res18").meta()
    tensor, info = ctdet_preprocess(image, meta, mode="fix_res")
    M = np.array([[0.8, 0, 0], [0, 0.8, 85.2]])  # k = 512/640, ty = 256 - 0.8*213.5
    warped = cv2.warpAffine(image, M, (512, 512), flags=cv2.INTER_LINEAR).astype(np.float64)
    ref = ((warped / 255.0 - np.array(meta.mean)) / np.array(meta.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(tensor[0], ref, atol=1e-5)


def test_centernet_test_scale_and_flip(image):
    meta = get_spec("centernet_res18").meta()
    tensor, info = ctdet_preprocess(image, meta, mode="keep_res", test_scale=0.5, flip=True)
    # 320x213 -> (213|31)+1 = 224, (320|31)+1 = 352
    assert tensor.shape == (2, 3, 224, 352)
    assert (info["out_h"], info["out_w"]) == (56, 88)
    np.testing.assert_array_equal(tensor[1], tensor[0][:, :, ::-1])
    # a point in output-map pixels maps back to the original image after / test_scale
    det = np.array([[0.0, 0.0, 88.0, 56.0, 1.0, 0.0]])
    out = ctdet_postprocess(det, info, test_scale=0.5)
    # c = (160, 106), s = (352, 224): pure translation (176-160, 112-106) = (16, 6), factor 4
    np.testing.assert_allclose(out[0, :4], [(0 - 16) / 0.5, (0 - 6) / 0.5, (352 - 16) / 0.5, (224 - 6) / 0.5],
                               atol=1e-4)


def test_preprocess_rejects_bad_input(image):
    meta = get_spec("centernet_res18").meta()
    with pytest.raises(UsageError, match="HxWx3"):
        ctdet_preprocess(image[:, :, 0], meta)
    with pytest.raises(UsageError, match="keep_res"):
        ctdet_preprocess(image, meta, mode="nope")
    with pytest.raises(EdgeposeError, match="ctdet_preprocess"):
        ctdet_postprocess(np.zeros((2, 6)), {})


def test_normalize_to_chw_rgb_order():
    meta = get_spec("fastpose_res50").meta()
    img = synthetic_image(5, 7)
    chw = normalize_to_chw(img, meta)
    ref = (img[:, :, ::-1].astype(np.float64) / 255.0 - np.array(meta.mean)).transpose(2, 0, 1)
    np.testing.assert_allclose(chw, ref, atol=1e-6)


# ----------------------------------------------------------------------------- CornerNet


def test_cornernet_preprocess_golden(golden, image):
    """golden case: cornernet_preprocess."""
    case = golden["cornernet_preprocess"]
    meta = get_spec("cornernet_squeeze").meta()
    tensor, info = cornernet_preprocess(image, meta)
    assert [info["inp_h"], info["inp_w"]] == case["inp_hw"]
    assert tensor.shape == (1, 3, *case["inp_hw"])
    assert [info["out_h"], info["out_w"]] == case["out_hw"]
    np.testing.assert_allclose(info["ratios"], case["ratios_hw"], rtol=1e-12)
    np.testing.assert_allclose(info["border"], case["border_[top,bottom,left,right]"])
    np.testing.assert_allclose(info["offset"], case["offset_[y,x]"])
    # canvas: image copied at (top, left) before normalisation, zeros elsewhere -> -mean/std
    top, left = 42, 63
    mean, std = np.array(meta.mean), np.array(meta.std)
    ref_img = (image.astype(np.float64) / 255.0 - mean) / std
    np.testing.assert_allclose(tensor[0][:, top:top + 427, left:left + 640], ref_img.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(tensor[0][:, 0, 0], -mean / std, atol=1e-6)
    np.testing.assert_allclose(tensor[0][:, -1, -1], -mean / std, atol=1e-6)


# ----------------------------------------------------------------------------- AlphaPose


def test_alphapose_crop_golden(golden, image):
    """golden case: alphapose_crop (the synthetic array is the RGB frame AlphaPose crops)."""
    cases = golden["alphapose_crop"]["cases"]
    meta = get_spec("fastpose_res50").meta()
    boxes = np.array([json.loads(k) for k in cases])
    frame_bgr = np.ascontiguousarray(image[:, :, ::-1])  # so that BGR->RGB gives the golden array
    batch, crop_boxes = crop_people(frame_bgr, boxes, meta)
    centers, scales = box_to_center_scale(boxes, aspect_ratio=192 / 256)
    assert batch.shape == (len(boxes), 3, 256, 192) and batch.dtype == np.float32
    for i, case in enumerate(cases.values()):
        assert list(batch[i].shape) == case["input_tensor_shape"]
        np.testing.assert_allclose(centers[i], case["center"], atol=ATOL)
        np.testing.assert_allclose(scales[i], case["scale_wh"], atol=ATOL)
        np.testing.assert_allclose(crop_boxes[i], case["cropped_box_xyxy"], atol=ATOL)
        M = get_affine_transform(centers[i], scales[i], 0, (192, 256))
        np.testing.assert_allclose(M, case["crop_affine_2x3"], atol=ATOL)
        for key, value in case["input_samples_chw"].items():
            assert _sample(batch[i], key) == pytest.approx(value, abs=ATOL), key


def test_box_to_center_scale_enlarges_short_side():
    boxes = np.array([[0, 0, 30, 100], [0, 0, 300, 100], [10, 10, 85, 110]], dtype=np.float64)
    c, s = box_to_center_scale(boxes)
    np.testing.assert_allclose(c, [[15, 50], [150, 50], [47.5, 60]])
    # tall: w = 0.75*h; wide: h = w/0.75; exact ratio: unchanged; then x1.25
    np.testing.assert_allclose(s, [[75 * 1.25, 125], [375, 400 * 1.25], [75 * 1.25, 125]], rtol=1e-6)


def test_crop_people_empty_and_quirk():
    meta = get_spec("fastpose_res50").meta()
    img = np.ones((40, 30, 3), np.uint8)  # max pixel 1: AlphaPose's im_to_torch skips /255
    batch, crop_boxes = crop_people(img, np.zeros((0, 4)), meta)
    assert batch.shape == (0, 3, 256, 192) and crop_boxes.shape == (0, 4)
    box = [[5, 5, 20, 30]]
    clean, _ = crop_people(img, box, meta)
    quirk, _ = crop_people(img, box, meta, official_max_quirk=True)
    mean = np.array(meta.mean)
    np.testing.assert_allclose(clean[0][:, 128, 96], 1 / 255 - mean, atol=1e-6)
    np.testing.assert_allclose(quirk[0][:, 128, 96], 1 - mean, atol=1e-6)
    with pytest.raises(UsageError, match="zero or negative size"):
        crop_people(img, [[5, 5, 5, 5]], meta)
