"""The synthetic people generator: determinism and annotations that agree with the pixels."""
import json

import numpy as np
import pytest

from edgepose.data.synthetic import (LIMITS, NUM_KP, generate_clip, generate_dataset, render_scene,
                                     sample_person)
from edgepose.metadata import COCO_KEYPOINTS


def _scenes(n=24, people=5, size=(160, 192)):
    for i in range(n):
        yield render_scene(np.random.default_rng([11, i]), size, num_people=people)


def test_same_seed_same_bytes_and_annotations():
    a_img, a_ann = render_scene(np.random.default_rng(5), (128, 160), num_people=3)
    b_img, b_ann = render_scene(np.random.default_rng(5), (128, 160), num_people=3)
    assert a_img.shape == (128, 160, 3) and a_img.dtype == np.uint8
    assert a_img.tobytes() == b_img.tobytes()
    assert len(a_ann) == len(b_ann)
    for x, y in zip(a_ann, b_ann):
        assert x["bbox"] == y["bbox"]
        np.testing.assert_array_equal(x["keypoints"], y["keypoints"])
        np.testing.assert_array_equal(x["mask"], y["mask"])


def test_different_seed_differs():
    a_img, a_ann = render_scene(np.random.default_rng(5), (128, 160), num_people=3)
    c_img, c_ann = render_scene(np.random.default_rng(6), (128, 160), num_people=3)
    assert a_img.tobytes() != c_img.tobytes()
    assert [p["bbox"] for p in a_ann] != [p["bbox"] for p in c_ann]


def test_dataset_files_deterministic(tmp_path):
    a = generate_dataset(tmp_path / "a", 4, seed=3, image_size=(96, 128), progress=False)
    b = generate_dataset(tmp_path / "b", 4, seed=3, image_size=(96, 128), progress=False)
    c = generate_dataset(tmp_path / "c", 4, seed=4, image_size=(96, 128), progress=False)
    assert a.read_bytes() == b.read_bytes()
    for name in sorted(p.name for p in (tmp_path / "a" / "images").iterdir()):
        assert (tmp_path / "a" / "images" / name).read_bytes() == (tmp_path / "b" / "images" / name).read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_keypoints_inside_box_and_image():
    checked = 0
    for img, people in _scenes():
        H, W = img.shape[:2]
        for p in people:
            x, y, w, h = p["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H
            kp = p["keypoints"]
            assert kp.shape == (NUM_KP, 3)
            lab = kp[:, 2] > 0
            assert p["num_keypoints"] == int(lab.sum())
            for kx, ky, v in kp[lab]:
                assert x <= kx <= x + w and y <= ky <= y + h
                assert -0.5 <= kx < W - 0.5 and -0.5 <= ky < H - 0.5
                checked += 1
            assert np.all(kp[~lab] == 0)
    assert checked > 200


def test_visibility_follows_drawing_order():
    n_hidden = n_visible = 0
    for img, people in _scenes():
        for i, p in enumerate(people):
            later = np.zeros(img.shape[:2], bool)
            for q in people[i + 1:]:
                later |= q["mask"]
            for kx, ky, v in p["keypoints"]:
                if v == 0:
                    continue
                xi, yi = int(round(kx)), int(round(ky))
                if v == 1:
                    assert later[yi, xi], "v=1 keypoint is not under a later-drawn person"
                    n_hidden += 1
                else:
                    assert not later[yi, xi], "v=2 keypoint is covered by a later-drawn person"
                    assert p["visible_mask"][yi, xi]
                    n_visible += 1
    assert n_hidden > 5 and n_visible > 200  # both cases really occur


def test_box_and_area_match_mask():
    for img, people in _scenes(8):
        for p in people:
            ys, xs = np.nonzero(p["mask"])
            x, y, w, h = p["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert p["area"] == p["mask"].sum()
            assert not (p["visible_mask"] & ~p["mask"]).any()


def test_person_pixels_differ_from_background():
    """A drawn person changes the pixels under its visible mask (it is really drawn)."""
    rng = np.random.default_rng(2)
    img, people = render_scene(rng, (128, 128), num_people=1, degrade_image=False)
    bg, none = render_scene(np.random.default_rng(2), (128, 128), num_people=0, degrade_image=False)
    assert none == []
    vis = people[0]["visible_mask"]
    assert np.abs(img[vis].astype(int) - bg[vis].astype(int)).sum(-1).mean() > 5


def test_pose_within_joint_limits():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = sample_person(rng, (256, 256))
        for key, value in p.items():
            base = key.split("_")[0]
            if base in LIMITS and isinstance(value, float):
                lo, hi = LIMITS[base]
                assert lo <= value <= hi, key


def test_left_is_on_image_right_for_upright_people():
    """People face the camera: COCO left_* joints sit to the image right of right_* joints."""
    rng = np.random.default_rng(1)
    ok = total = 0
    for _ in range(100):
        p = sample_person(rng, (256, 256))
        from edgepose.data.synthetic import pose_points

        kp, _ = pose_points(p)
        total += 3
        ok += int(kp[1, 0] > kp[2, 0]) + int(kp[5, 0] > kp[6, 0]) + int(kp[11, 0] > kp[12, 0])
    assert ok == total


def test_coco_file_loads_in_pycocotools(tmp_path):
    COCO = pytest.importorskip("pycocotools.coco").COCO
    ann = generate_dataset(tmp_path, 6, seed=9, image_size=(96, 96), max_people=3, progress=False)
    coco = COCO(str(ann))
    cat = coco.loadCats(1)[0]
    assert cat["name"] == "person" and cat["keypoints"] == list(COCO_KEYPOINTS)
    assert all(1 <= a <= 17 and 1 <= b <= 17 for a, b in cat["skeleton"])
    assert len(coco.getImgIds()) == 6
    for a in coco.loadAnns(coco.getAnnIds()):
        assert a["iscrowd"] == 0 and a["category_id"] == 1 and len(a["keypoints"]) == 51
        assert a["num_keypoints"] == sum(1 for v in a["keypoints"][2::3] if v > 0)
        img = coco.loadImgs(a["image_id"])[0]
        assert (tmp_path / "images" / img["file_name"]).exists()


def test_clip_fixed_count_and_smooth_motion(tmp_path):
    cv2 = pytest.importorskip("cv2")
    video, ann = generate_clip(tmp_path / "c.mp4", num_frames=6, num_people=2, seed=4, image_size=(96, 128))
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 6
    doc = json.loads(ann.read_text())
    assert len(doc["images"]) == 6
    per_frame = {}
    for a in doc["annotations"]:
        per_frame.setdefault(a["image_id"], []).append(a)
    assert all(len(v) == 2 for v in per_frame.values()) and len(per_frame) == 6
    # consecutive frames: box centres move by a few pixels, not jumps
    for k in range(2):
        cs = [np.array(per_frame[f][k]["bbox"][:2]) + np.array(per_frame[f][k]["bbox"][2:]) / 2 for f in range(1, 7)]
        assert max(np.abs(np.diff(cs, axis=0)).max(0)) < 20
