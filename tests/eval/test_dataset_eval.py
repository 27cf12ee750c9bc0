"""evaluate_pipeline plumbing: an oracle "pipeline" returning the ground truth scores AP 1.0;
perturbed oracles score less, by the amount the COCO metrics predict."""
import hashlib
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("pycocotools")

from edgepose.data.synthetic import generate_dataset  # noqa: E402
from edgepose.eval.dataset_eval import evaluate_pipeline, format_metrics, load_person_coco  # noqa: E402
from edgepose.pipeline.pipeline import PoseResult  # noqa: E402

# pycocotools kpt_oks_sigmas (as in the official COCO keypoints evaluation)
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    ann = generate_dataset(root, 14, seed=77, image_size=(128, 128), max_people=3, progress=False)
    return ann, root / "images"


class Oracle:
    """Looks the frame up by its bytes and returns its ground truth, optionally perturbed."""

    def __init__(self, ann, images, box_shift=0.0, kp_shift=0.0, drop_every=0):
        doc = json.loads(ann.read_text())
        by_image = {}
        for a in doc["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        self.gt = {}
        for im in doc["images"]:
            frame = cv2.imread(str(images / im["file_name"]))
            self.gt[hashlib.md5(frame.tobytes()).hexdigest()] = by_image.get(im["id"], [])
        self.box_shift, self.kp_shift, self.drop_every = box_shift, kp_shift, drop_every
        self.calls = 0

    def __call__(self, frame):
        self.calls += 1
        anns = self.gt[hashlib.md5(frame.tobytes()).hexdigest()]
        if self.drop_every:
            anns = [a for a in anns if a["id"] % self.drop_every]
        if not anns:
            return PoseResult.empty(17, {"detector": 1.0})
        boxes, kps, kscore, scores = [], [], [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            x += self.box_shift * w
            boxes.append([x, y, x + w, y + h])
            kp = np.array(a["keypoints"], np.float64).reshape(17, 3)
            d = self.kp_shift * np.sqrt(a["area"])
            kps.append(kp[:, :2] + d)
            kscore.append(np.ones(17))
            scores.append(expected_oks(a, d) if self.kp_shift else 1.0)
        n = len(anns)
        return PoseResult(np.array(boxes, np.float32), np.array(scores, np.float32),
                          np.array(kps, np.float32), np.array(kscore, np.float32),
                          np.array(scores, np.float32), {"detector": 1.0, "pose": 0.5 * n})


def expected_oks(a, shift):
    """OKS of a prediction moved by (shift, shift) px: mean over labelled joints of
    exp(-d^2 / (2 sigma)^2 / area / 2) (reference README)."""
    v = np.array(a["keypoints"][2::3])
    if (v > 0).sum() == 0:
        return 1.0
    d2 = 2 * shift ** 2
    e = d2 / (2 * SIGMAS) ** 2 / (a["area"] + np.spacing(1)) / 2
    return float(np.exp(-e)[v > 0].mean())


def test_oracle_scores_one(val):
    ann, images = val
    oracle = Oracle(ann, images)
    metrics, results, stats = evaluate_pipeline(oracle, ann, images, progress=False)
    assert oracle.calls == 14 and metrics["images"] == 14
    assert metrics["bbox_AP"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["keypoints_AP"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["bbox_AP50"] == pytest.approx(1.0, abs=1e-6)
    assert len(results) == len(json.loads(ann.read_text())["annotations"])
    assert stats["detector"].count == 14 and "total" in stats
    table = format_metrics(metrics)
    assert "100.0" in table and "keypoints" in table


def test_shifted_boxes_lose_the_strict_thresholds(val):
    """A box moved by 0.1628 of its width has IoU (1-d)/(1+d) = 0.72: it passes the IoU
    thresholds .50..70 (5 of 10) and fails .75..95, so box AP is 0.5 and AP75 is 0."""
    ann, images = val
    metrics, _, _ = evaluate_pipeline(Oracle(ann, images, box_shift=0.1628), ann, images, progress=False)
    assert metrics["bbox_AP"] == pytest.approx(0.5, abs=0.01)
    assert metrics["bbox_AP50"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["bbox_AP75"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["keypoints_AP"] == pytest.approx(1.0, abs=1e-6)  # keypoints untouched


def test_shifted_keypoints_lower_ap_by_the_expected_amount(val):
    """Moving every keypoint by 0.08*sqrt(area) gives each person a known OKS; with the
    score equal to that OKS, AP at threshold t is the fraction of people with OKS >= t."""
    ann, images = val
    shift = 0.08
    metrics, _, _ = evaluate_pipeline(Oracle(ann, images, kp_shift=shift), ann, images, progress=False)
    doc = json.loads(ann.read_text())
    oks = np.array([expected_oks(a, shift * np.sqrt(a["area"])) for a in doc["annotations"]
                    if a["num_keypoints"] > 0])
    thresholds = np.linspace(0.5, 0.95, 10)
    expected = float(np.mean([(oks >= t - 1e-9).mean() for t in thresholds]))
    assert 0.05 < expected < 0.95  # the case is not degenerate
    assert metrics["keypoints_AP"] == pytest.approx(expected, abs=0.03)
    assert metrics["keypoints_AP"] < 0.97
    assert metrics["bbox_AP"] == pytest.approx(1.0, abs=1e-6)


def test_missed_people_lower_recall(val):
    ann, images = val
    metrics, _, _ = evaluate_pipeline(Oracle(ann, images, drop_every=3), ann, images, progress=False)
    doc = json.loads(ann.read_text())
    kept = sum(1 for a in doc["annotations"] if a["id"] % 3) / len(doc["annotations"])
    assert metrics["bbox_AP"] == pytest.approx(kept, abs=0.02)
    assert metrics["bbox_AP"] < 0.95


def test_limit_and_person_only(val, tmp_path):
    ann, images = val
    doc = json.loads(ann.read_text())
    doc["categories"].append({"id": 2, "name": "bicycle"})
    doc["annotations"].append({"id": 99999, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5],
                               "area": 25, "iscrowd": 0})
    other = tmp_path / "with_bikes.json"
    other.write_text(json.dumps(doc))
    coco = load_person_coco(other, limit=5)
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4, 5]
    assert coco.getCatIds() == [1]
    assert all(a["category_id"] == 1 for a in coco.dataset["annotations"])
    oracle = Oracle(ann, images)
    metrics, _, _ = evaluate_pipeline(oracle, other, images, limit=5, progress=False)
    assert oracle.calls == 5 and metrics["images"] == 5
    assert metrics["bbox_AP"] == pytest.approx(1.0, abs=1e-6)


def test_missing_image_folder_says_what_to_do(val, tmp_path):
    from edgepose.errors import SourceError

    ann, _ = val
    with pytest.raises(SourceError, match="--images"):
        evaluate_pipeline(lambda f: None, ann, tmp_path, progress=False)
