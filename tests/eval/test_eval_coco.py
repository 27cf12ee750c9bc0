"""COCO evaluation on hand-built ground truth with independently computed expected AP.

OKS follows pycocotools COCOeval:
e_i = d_i^2 / (2 sigma_i)^2 / (area + eps) / 2, OKS = mean exp(-e_i); AP averages the
thresholds 0.50:0.05:0.95, each with 101-point interpolated precision.
"""
import json

import numpy as np
import pytest

from edgepose.errors import SourceError, UsageError
from edgepose.eval import evaluate, format_table, results_to_coco

SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
THRESHOLDS = np.linspace(0.5, 0.95, 10)
W, H = 100.0, 200.0  # every person box; area W*H = 20000 (COCO "large")

# (image_id, x, y): two people far apart in image 1, one each in images 2 and 3
PEOPLE = [(1, 10.0, 20.0), (1, 400.0, 30.0), (2, 50.0, 60.0), (3, 200.0, 100.0)]


def _gt_keypoints(k):
    rng = np.random.default_rng(100 + k)
    _, x, y = PEOPLE[k]
    return np.stack([rng.uniform(x + 10, x + W - 10, 17), rng.uniform(y + 10, y + H - 10, 17)], axis=1)


@pytest.fixture(scope="module")
def gt():
    anns = []
    for k, (img, x, y) in enumerate(PEOPLE):
        kp = _gt_keypoints(k)
        flat = np.concatenate([kp, np.full((17, 1), 2.0)], axis=1).reshape(-1)
        anns.append({"id": k + 1, "image_id": img, "category_id": 1, "bbox": [x, y, W, H], "area": W * H,
                     "iscrowd": 0, "num_keypoints": 17, "keypoints": flat.tolist()})
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in (1, 2, 3)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}],
    }


def _results(kp_shift=0.0, box_shift=0.0, scores=None, shift_for=None):
    out = []
    for k, (img, x, y) in enumerate(PEOPLE):
        d = kp_shift if shift_for is None else shift_for[k]
        kp = _gt_keypoints(k) + np.array([d, 0.0])
        score = 0.9 if scores is None else scores[k]
        box = np.array([[x + box_shift, y, x + box_shift + W, y + H]])
        out += results_to_coco(img, box, [score], kp[None], np.ones((1, 17, 1)), [score])
    return out


def oks(d, area=W * H):
    """README formula for a uniform shift of d pixels on all 17 labelled joints."""
    return float(np.mean(np.exp(-(d ** 2) / (2 * SIGMAS) ** 2 / (area + np.spacing(1)) / 2)))


def test_perfect_predictions_score_one(gt):
    m = evaluate(gt, _results())
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APl", "keypoints_AP", "keypoints_AP50",
                "keypoints_AP75", "keypoints_APl"):
        assert m[key] == pytest.approx(1.0, abs=1e-9), key
    assert m["bbox_APs"] == -1 and m["bbox_APm"] == -1 and m["keypoints_APm"] == -1  # no GT in those ranges
    assert set(m) >= {"bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl",
                      "keypoints_AP", "keypoints_AP50", "keypoints_AP75", "keypoints_APm", "keypoints_APl"}


@pytest.mark.parametrize("d", [5.0, 10.0, 12.0])
def test_uniform_keypoint_shift_matches_oks(gt, d):
    o = oks(d)
    assert np.min(np.abs(THRESHOLDS - o)) > 1e-3  # not ambiguous at a threshold
    expected = float(np.mean(THRESHOLDS <= o))  # each threshold: every person matched (AP 1) or none (AP 0)
    m = evaluate(gt, _results(kp_shift=d), iou_types=("keypoints",))
    assert m["keypoints_AP"] == pytest.approx(expected, abs=1e-9)
    assert m["keypoints_AP50"] == pytest.approx(1.0 if o >= 0.5 else 0.0)
    assert "bbox_AP" not in m


def test_mixed_oks_groups_interpolated_ap(gt):
    """Persons 0,1 shifted 4 px (high OKS, higher score), persons 2,3 shifted 12 px (low OKS)."""
    shifts, scores = [4.0, 4.0, 12.0, 12.0], [0.9, 0.8, 0.5, 0.4]
    o_hi, o_lo = oks(4.0), oks(12.0)
    rec_thrs = np.linspace(0, 1, 101)
    per_t = []
    for t in THRESHOLDS:
        if t <= o_lo:
            per_t.append(1.0)
        elif t <= o_hi:  # half the people found at precision 1, the rest are false positives
            per_t.append(np.sum(rec_thrs <= 0.5) / 101)
        else:
            per_t.append(0.0)
    m = evaluate(gt, _results(shift_for=shifts, scores=scores), iou_types="keypoints")
    assert m["keypoints_AP"] == pytest.approx(np.mean(per_t), abs=1e-9)


def test_box_shift_iou(gt):
    dx = 20.0
    iou = (W - dx) / (W + dx)  # 0.667: thresholds 0.50..0.65 pass
    m = evaluate(gt, _results(box_shift=dx), iou_types=("bbox",))
    assert m["bbox_AP"] == pytest.approx(float(np.mean(THRESHOLDS <= iou)), abs=1e-9)
    assert m["bbox_AP75"] == 0.0 and m["bbox_AP50"] == pytest.approx(1.0)


def test_empty_results_and_paths(gt, tmp_path):
    m = evaluate(gt, [])
    assert m["bbox_AP"] == 0.0 and m["keypoints_AP"] == 0.0
    ann, res = tmp_path / "gt.json", tmp_path / "res.json"
    ann.write_text(json.dumps(gt))
    res.write_text(json.dumps(_results()))
    m = evaluate(str(ann), res)
    assert m["bbox_AP"] == pytest.approx(1.0) and m["keypoints_AP"] == pytest.approx(1.0)


def test_only_person_category_is_scored(gt):
    extra = dict(gt, categories=gt["categories"] + [{"id": 2, "name": "bicycle"}])
    res = _results() + [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 1.0,
                         "keypoints": [0.0] * 51}]
    m = evaluate(extra, res)
    assert m["bbox_AP"] == pytest.approx(1.0) and m["keypoints_AP"] == pytest.approx(1.0)


def test_results_to_coco_loads_in_pycocotools(gt):
    from pycocotools.coco import COCO

    boxes = np.array([[10, 20, 110, 220], [400, 30, 500, 230]], np.float32)
    kps = np.stack([_gt_keypoints(0), _gt_keypoints(1)]).astype(np.float32)
    kps_scores = np.linspace(0.1, 0.9, 34).reshape(2, 17, 1)
    recs = results_to_coco(1, boxes, [0.8, 0.7], kps, kps_scores, [2.0, 1.5])
    assert recs[0]["bbox"] == pytest.approx([10, 20, 100, 200])
    assert recs[1]["score"] == pytest.approx(1.5) and recs[0]["category_id"] == 1
    trip = np.array(recs[1]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(trip[:, :2], kps[1], atol=1e-5)
    np.testing.assert_allclose(trip[:, 2], kps_scores[1, :, 0], atol=1e-7)
    json.dumps(recs)  # JSON-serialisable
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    loaded = coco.loadRes(recs)
    assert len(loaded.getAnnIds()) == 2
    assert results_to_coco(1, np.zeros((0, 4)), []) == []
    assert "keypoints" not in results_to_coco(1, boxes, [0.8, 0.7])[0]


def test_bad_inputs(gt, tmp_path):
    with pytest.raises(UsageError, match="not in the annotations"):
        evaluate(gt, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}], iou_types=("bbox",))
    with pytest.raises(UsageError, match="no 'keypoints'"):
        evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(SourceError, match="no such annotation file"):
        evaluate(tmp_path / "missing.json", [])
    with pytest.raises(UsageError, match="box scores"):
        results_to_coco(1, np.zeros((2, 4)), [0.5])


def test_format_table(gt):
    text = format_table(evaluate(gt, _results()))
    lines = text.splitlines()
    assert lines[2].split()[:2] == ["box", "100.0"] and lines[3].split()[:2] == ["keypoints", "100.0"]
    assert "-" in lines[3].split()  # keypoints have no APs


def test_results_to_coco_with_no_people_gives_no_records():
    import numpy as np

    from edgepose.eval.coco import results_to_coco

    empty = results_to_coco(7, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros(0))
    assert empty == []
