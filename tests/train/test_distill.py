"""`edgepose distill`: labels in both COCO formats, held-out split, FPD loss and heatmap warp,
agreement metrics, and one tiny end-to-end run (built-in pair as teacher, synthetic scene)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
cv2 = pytest.importorskip("cv2")

from edgepose.errors import SourceError, UsageError  # noqa: E402
from edgepose.train import distill_data as dd  # noqa: E402


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def synth_people(tmp_path_factory):
    """Four synthetic images with exact COCO keypoint labels (annotation format)."""
    from edgepose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("people")
    generate_dataset(root, num_images=4, seed=3, image_size=(160, 160), max_people=3, progress=False)
    return root


def _as_results(root, out_dir, low_joint=None):
    """The annotation file rewritten as COCO results, images renamed by id (000001.jpg)."""
    doc = json.loads((root / "annotations.json").read_text())
    out_dir.mkdir()
    for img in doc["images"]:
        shutil.copy(root / "images" / img["file_name"], out_dir / f"{img['id']:06d}.jpg")
    records = []
    for a in doc["annotations"]:
        kps = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        kps[:, 2] = (kps[:, 2] > 0).astype(np.float64)  # joint score 1 where labelled, else 0
        if low_joint is not None and kps[low_joint, 2] > 0:
            kps[low_joint, 2] = 0.1
        records.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                        "keypoints": kps.reshape(-1).tolist(), "score": 0.9})
    return doc, records


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A fixed scene: train and validation clips (different seeds, same background)."""
    from edgepose.data.synthetic import generate_clip

    root = tmp_path_factory.mktemp("scene")
    kw = dict(num_people=2, image_size=(160, 224), person_heights=(60, 110), background_seed=4)
    train, _ = generate_clip(root / "train.mp4", 16, seed=21, **kw)
    val, _ = generate_clip(root / "val.mp4", 6, seed=22, **kw)
    return train, val


# ----------------------------------------------------------------------------- labels
def test_annotation_and_results_formats_give_the_same_people(synth_people, tmp_path):
    ann_doc = dd.load_labels(synth_people / "annotations.json")
    truth, records = _as_results(synth_people, tmp_path / "frames")
    (tmp_path / "res.json").write_text(json.dumps(records))
    res_doc = dd.load_labels(tmp_path / "res.json", tmp_path / "frames", kp_threshold=0.5)
    assert len(ann_doc["annotations"]) == len(res_doc["annotations"]) == len(truth["annotations"]) > 0
    by_id = {i["id"]: cv2.imread(i["file_name"]) for i in res_doc["images"]}
    for img in ann_doc["images"]:  # the stem mapping found the very same pixels
        np.testing.assert_array_equal(cv2.imread(img["file_name"]), by_id[img["id"]])
    for a, r, t in zip(ann_doc["annotations"], res_doc["annotations"], truth["annotations"]):
        assert a["image_id"] == r["image_id"] == t["image_id"]
        np.testing.assert_allclose(r["bbox"], t["bbox"])
        ka, kr = np.reshape(a["keypoints"], (17, 3)), np.reshape(r["keypoints"], (17, 3))
        labelled = np.reshape(t["keypoints"], (17, 3))[:, 2] > 0
        np.testing.assert_array_equal(kr[:, 2] > 0, labelled)
        np.testing.assert_allclose(kr[labelled, :2], ka[labelled, :2])


def test_low_confidence_teacher_joints_get_weight_zero(synth_people, tmp_path):
    from edgepose.models import get_spec
    from edgepose.train.coco_data import CocoPeople, PoseDataset

    _, records = _as_results(synth_people, tmp_path / "frames", low_joint=0)
    (tmp_path / "res.json").write_text(json.dumps(records))
    doc = dd.load_labels(tmp_path / "res.json", tmp_path / "frames", kp_threshold=0.2)
    assert all(a["keypoints"][2] == 0 for a in doc["annotations"])  # nose scored 0.1 < 0.2
    (tmp_path / "labels.json").write_text(json.dumps(doc))
    ds = PoseDataset(CocoPeople(ann_file=tmp_path / "labels.json"), get_spec("default_pose").meta(), augment=False)
    for i in range(len(ds)):
        _, target, weight = ds[i]
        assert weight[0] == 0 and target[0].max() == 0


def test_bad_labels_are_clear_errors(synth_people, tmp_path):
    _, records = _as_results(synth_people, tmp_path / "frames")
    (tmp_path / "frames" / "000002.jpg").unlink()
    (tmp_path / "res.json").write_text(json.dumps(records))
    with pytest.raises(SourceError, match="no image named by that number"):
        dd.load_labels(tmp_path / "res.json", tmp_path / "frames")
    nobody = [dict(r, keypoints=[0.0] * 51) for r in records if r["image_id"] != 2]
    (tmp_path / "nobody.json").write_text(json.dumps(nobody))
    with pytest.raises(SourceError, match="no usable person"):
        dd.load_labels(tmp_path / "nobody.json", tmp_path / "frames")
    doc = json.loads((synth_people / "annotations.json").read_text())
    (tmp_path / "ann.json").write_text(json.dumps(doc))  # its images/ folder is not beside it
    with pytest.raises(SourceError, match="missing"):
        dd.load_labels(tmp_path / "ann.json", tmp_path / "elsewhere")


# ----------------------------------------------------------------------------- split
@pytest.mark.parametrize("n", [5, 8, 20, 37, 100, 501])
def test_held_out_tail_never_overlaps_and_keeps_a_gap(n):
    doc = dd.coco_doc([{"id": i + 1, "file_name": f"{i}.jpg"} for i in range(n)],
                      [{"id": i + 1, "image_id": i + 1, "bbox": [0, 0, 5, 5]} for i in range(n)])
    train, val = dd.split_tail(doc)
    t_ids, v_ids = [i["id"] for i in train["images"]], [i["id"] for i in val["images"]]
    assert not set(t_ids) & set(v_ids)
    assert len(v_ids) == int(np.ceil(0.25 * n)) and v_ids[-1] == n
    assert min(v_ids) - max(t_ids) - 1 >= np.ceil(0.05 * n)
    assert {a["image_id"] for a in train["annotations"]} == set(t_ids)


def test_overlapping_validation_frames_are_refused():
    frames = [np.full((4, 4, 3), v, np.uint8) for v in range(5)]
    hashes = [dd.frame_hash(f) for f in frames]
    dd.check_no_overlap(hashes[:3], hashes[3:])
    with pytest.raises(SourceError, match="1 validation frame"):
        dd.check_no_overlap(hashes[:3], [hashes[2], dd.frame_hash(frames[4] + 1)])


def test_student_sizes_follow_the_people():
    # 768x576 footage with people 60-150 px: more than 256x256, small people >= 32 px
    h, w = dd.choose_det_input((576, 768), np.linspace(60, 150, 50))
    assert (h, w) == (288, 384) and h % 32 == 0 and w % 32 == 0
    assert dd.choose_det_input((576, 768), [400, 500]) == (192, 256)  # big people: never below 256
    assert dd.choose_det_input((256, 256), [10]) == (256, 256)  # never upscaled
    assert dd.choose_pose_input(np.linspace(60, 150, 50)) == (128, 96)
    assert dd.choose_pose_input([400]) == (256, 192)


# ----------------------------------------------------------------------------- loss
def test_teacher_heatmap_is_warped_onto_the_student_grid():
    from edgepose.pipeline.affine import affine_points, get_affine_transform
    from edgepose.train.coco_data import joint_heatmaps
    from edgepose.train.distill_loss import heatmap_warp

    joint = np.array([[131.0, 87.0]])  # image px
    center, scale, rot = np.array([120.0, 100.0]), np.array([90.0, 120.0]), 25.0
    t_trans = get_affine_transform(center, scale, rot, (192, 256))
    s_trans = get_affine_transform(center, scale, rot, (96, 128))
    t_hm, _ = joint_heatmaps(affine_points(joint, t_trans) / 4, [True], (64, 48), 2.0)
    m = heatmap_warp(t_trans, 4, s_trans, 4)
    warped = cv2.warpAffine(t_hm[0], m, (24, 32), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    expect = affine_points(joint, s_trans)[0] / 4
    y, x = np.unravel_index(warped.argmax(), warped.shape)
    assert abs(x - expect[0]) <= 0.5 and abs(y - expect[1]) <= 0.5


def test_fpd_loss_is_the_weighted_sum_and_ignores_weight_zero_joints():
    from edgepose.train.distill_loss import fpd_loss

    rng = np.random.default_rng(0)
    pred, target, teacher = (rng.random((2, 17, 8, 6)).astype(np.float32) for _ in range(3))
    weight = np.ones((2, 17), np.float32)
    weight[:, 3] = 0
    ref = lambda a, b: 0.5 * np.mean(((a - b) * weight[..., None, None]) ** 2)  # noqa: E731
    got, parts = fpd_loss(*(torch.from_numpy(a) for a in (pred, target, weight, teacher)), alpha=0.5)
    np.testing.assert_allclose(float(got), 0.5 * ref(pred, target) + 0.5 * ref(pred, teacher), rtol=1e-5)
    teacher[:, 3] += 5.0  # a joint with weight 0 teaches nothing
    again, _ = fpd_loss(*(torch.from_numpy(a) for a in (pred, target, weight, teacher)), alpha=0.5)
    np.testing.assert_allclose(float(again), float(got), rtol=1e-6)


def test_distilled_pose_training_lowers_loss(synth_people, tmp_path):
    from edgepose.backends.factory import load_runner
    from edgepose.models.alphapose import simplepose
    from edgepose.models.defaults import default_model_paths
    from edgepose.train import fit
    from edgepose.train.coco_data import CocoPeople
    from edgepose.train.distill_loss import DistillPoseDataset, TeacherHeatmaps, make_fpd_step_loss
    from edgepose.models import get_spec

    teacher = TeacherHeatmaps(load_runner(str(default_model_paths()[1])))
    meta = get_spec("default_pose").meta(input_size=(64, 64))
    ds = DistillPoseDataset(CocoPeople(synth_people), meta, teacher=teacher, augment=False)
    first = ds[0]
    assert first[3].shape == first[1].shape and first[3].max() > 0.2  # the teacher sees the person
    torch.manual_seed(0)
    model = simplepose(18, 17, deconv_filters=(16, 16, 16), widths=(8, 8, 16, 16))
    fixed = [ds[i] for i in range(4)]  # the same four crops every step: the loss must fall
    result = fit(model, fixed, make_fpd_step_loss(0.5), epochs=30, batch_size=4, lr=1e-2, warmup=2,
                 progress=False, threads=1)
    first_loss, last_loss = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last_loss < 0.8 * first_loss, (first_loss, last_loss)  # measured: 0.67


# ----------------------------------------------------------------------------- agreement
def test_pck_counts_joints_within_a_tenth_of_the_box():
    from edgepose.eval.agreement import pck

    kps = np.zeros((17, 3))
    kps[:, 0], kps[:, 1], kps[:, 2] = np.arange(17) + 10, 50, 2
    kps[16, 2] = 0  # unlabelled: not counted
    gt = {"annotations": [{"image_id": 1, "bbox": [0, 0, 40, 100], "keypoints": kps.reshape(-1).tolist()},
                          {"image_id": 2, "bbox": [0, 0, 40, 100], "keypoints": kps.reshape(-1).tolist()}]}
    moved = kps.copy()
    moved[:8, 0] += 9.9   # within 0.1 * 100
    moved[8:, 1] += 10.5  # outside
    res = [{"image_id": 1, "bbox": [1, 0, 40, 100], "keypoints": moved.reshape(-1).tolist()}]
    out = pck(gt, res)  # image 2 has no student person: its 16 joints are missed
    assert out["joints"] == 32 and out["matched_people"] == 1
    assert out["pck"] == pytest.approx(8 / 32)


def test_torch_cost_counts_a_conv():
    from edgepose.eval.agreement import torch_cost

    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    cost = torch_cost(conv, (32, 16))
    assert cost["params"] == 8 * 3 * 9 + 8
    assert cost["gflops"] == pytest.approx(2 * 8 * 3 * 9 * 32 * 16 / 1e9, abs=1e-4)


# ----------------------------------------------------------------------------- end to end
def _cfg(out, scene, **kw):
    from edgepose.workflows.distill import DistillConfig

    train, val = scene
    base = dict(out=str(out), source=str(train), val_source=str(val), det_input="128x160", pose_input="64x64",
                det_epochs=1, pose_epochs=1, det_batch=4, pose_batch=8, max_steps=3, bench_frames=4,
                progress=False, threads=1)
    return DistillConfig(**{**base, **kw})


def test_distill_end_to_end_and_resume(scene, tmp_path, monkeypatch):
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.workflows import distill as flow
    from edgepose.workflows import distill_steps

    out = tmp_path / "student"
    real_export = distill_steps.export_student
    monkeypatch.setattr(distill_steps, "export_student", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        flow.distill(_cfg(out, scene))
    assert not out.exists() and (tmp_path / ".student.partial" / "labels.json").is_file()
    # resumed: the labels are reused (the teacher is not run over the footage again)
    monkeypatch.setattr(distill_steps, "export_student", real_export)
    monkeypatch.setattr(dd, "label_frames", lambda *a, **k: pytest.fail("labels were not reused"))
    result = flow.distill(_cfg(out, scene, resume=True))
    assert not (tmp_path / ".student.partial").exists()
    assert {p.name for p in out.iterdir()} == {"det.onnx", "pose.onnx", "det.pth", "pose.pth", "report.json",
                                               "labels_train.json", "labels_val.json"}
    first_val = json.loads((out / "labels_val.json").read_text())["images"][0]
    assert first_val["file_name"] == "val/000000.jpg" and first_val["frame_index"] == 0
    report = json.loads((out / "report.json").read_text())
    assert report["footage"]["validation"] == "separate footage" and report["footage"]["train_frames"] == 16
    assert report["student"]["det"]["input_size"] == [128, 160]
    assert report["student"]["pose"]["distill_alpha"] == 0.5
    assert 0 <= report["agreement"]["keypoints_AP"] <= 1 and "teacher" in report["latency"]
    assert report["cost"]["student_det"]["gflops"] > 0
    assert "agreement with the teacher" in result.format()
    pipe = Pipeline.from_files(str(out / "det.onnx"), str(out / "pose.onnx"))
    assert pipe.det_meta.input_size == (128, 160) and pipe.pose_meta.input_size == (64, 64)
    frame = cv2.VideoCapture(str(scene[1])).read()[1]
    assert pipe(frame).keypoints.shape[1:] == (17, 2)
    with pytest.raises(UsageError, match="not empty"):
        flow.distill(_cfg(out, scene))


def test_distill_refuses_bad_footage(scene, tmp_path):
    from edgepose.workflows import distill as flow

    train, _ = scene
    with pytest.raises(SourceError, match="training footage itself"):
        flow.distill(_cfg(tmp_path / "a", scene, val_source=str(train)))
    copy = tmp_path / "copy.mp4"
    shutil.copy(train, copy)
    with pytest.raises(SourceError, match="also training frames"):
        flow.distill(_cfg(tmp_path / "b", scene, val_source=str(copy), max_frames=4))
    with pytest.raises(SourceError, match="found nobody"):
        flow.distill(_cfg(tmp_path / "c", scene, score_threshold=1.0, max_frames=4))
    for name in "abc":
        assert not (tmp_path / name).exists()


def test_cli_distill_from_labels_with_same_video_warning(synth_people, tmp_path, caplog):
    from click.testing import CliRunner

    from edgepose.cli import main

    out = tmp_path / "student"
    args = ["distill", "--labels", str(synth_people / "annotations.json"), "--out", str(out), "--epochs", "1",
            "--det-input", "128x128", "--pose-input", "64x64", "--bench-frames", "3", "--threads", "1",
            "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["pose"]["distill_alpha"] == 0.0  # labels from a file: no teacher heatmaps
    assert any("overestimates" in w for w in report["warnings"])
    assert report["footage"]["train_frames"] + report["footage"]["val_frames"] < 4  # the gap frame is dropped
    bad = CliRunner().invoke(main, ["distill", "--labels", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "no such labels file" in bad.output and "Traceback" not in bad.output
