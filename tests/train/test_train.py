"""Training: target generation, losses going down, checkpoints, default weights, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
cv2 = pytest.importorskip("cv2")

from edgepose.metadata import COCO_FLIP_PAIRS  # noqa: E402
from edgepose.train import coco_data as cd  # noqa: E402


# ----------------------------------------------------------------------------- helpers


def _write_dataset(root, people, size=(256, 256)):
    """One image (grey noise) with ``people``: list of (bbox xywh, keypoints [17,3])."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(size[0], size[1], 3), dtype=np.uint8)
    cv2.imwrite(str(root / "images" / "a.png"), img)
    anns = []
    for i, (bbox, kps) in enumerate(people):
        kps = np.asarray(kps, np.float32).reshape(17, 3)
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "bbox": list(map(float, bbox)),
                     "area": float(bbox[2] * bbox[3]), "iscrowd": 0, "keypoints": kps.reshape(-1).tolist(),
                     "num_keypoints": int((kps[:, 2] > 0).sum())})
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": size[0], "width": size[1]}],
           "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root, img


def _tiny_det():
    from edgepose.models.centernet_resnet import centernet_resnet

    torch.manual_seed(0)
    return centernet_resnet(18, num_classes=1, head_conv=8, widths=(8, 8, 16, 16), deconv_planes=(16, 8, 8))


def _tiny_pose():
    from edgepose.models.alphapose import simplepose

    torch.manual_seed(0)
    return simplepose(18, 17, deconv_filters=(16, 16, 16), widths=(8, 8, 16, 16))


def _det_meta(size=(64, 64)):
    from edgepose.models import get_spec

    return get_spec("default_det").meta(num_classes=1, input_size=size)


def _pose_meta(size=(128, 96)):
    from edgepose.models import get_spec

    return get_spec("default_pose").meta(input_size=size)


# ----------------------------------------------------------------------------- targets


def test_gaussian_radius_matches_hand_computation():
    # h=10, w=20, overlap 0.7, CenterNet's three roots (each divided by 2, as officially):
    #   r1 = (30 + sqrt(900 - 4*200*0.3/1.7)) / 2          = 28.77
    #   r2 = (60 + sqrt(3600 - 16*60)) / 2                   = 55.69
    #   r3 = (-42 + sqrt(42^2 + 4*2.8*60)) / 2 = (-42 + sqrt(2436)) / 2 = 3.678
    assert cd.gaussian_radius((10, 20), 0.7) == pytest.approx((-42 + math.sqrt(2436)) / 2, abs=1e-9)
    assert cd.gaussian_radius((10, 20), 0.7) == pytest.approx(3.678, abs=1e-3)
    # symmetric in h, w and growing with the box
    assert cd.gaussian_radius((20, 10)) == pytest.approx(cd.gaussian_radius((10, 20)))
    assert cd.gaussian_radius((40, 40)) > cd.gaussian_radius((20, 20))


def test_draw_gaussian_peak_is_one_at_centre_and_clips_at_borders():
    hm = np.zeros((20, 30), np.float32)
    cd.draw_gaussian(hm, (7, 5), 3)
    assert hm[5, 7] == 1.0
    assert np.unravel_index(hm.argmax(), hm.shape) == (5, 7)
    assert (hm > 0).sum() <= 7 * 7 and hm[5, 11] == 0  # radius 3 footprint
    assert hm[5, 6] == pytest.approx(math.exp(-1 / (2 * (7 / 6) ** 2)), rel=1e-6)
    edge = np.zeros((10, 10), np.float32)
    cd.draw_gaussian(edge, (0, 9), 4)  # at the corner: no error, peak still 1
    assert edge[9, 0] == 1.0


def test_ctdet_targets_for_a_hand_made_box():
    t = cd.ctdet_targets(np.array([[10.0, 4.0, 30.0, 14.0]]), [0], 1, (32, 48))
    assert t["hm"].shape == (1, 32, 48)
    assert t["hm"][0, 9, 20] == 1.0 and t["hm"].max() == 1.0
    assert t["reg_mask"][0] == 1 and t["reg_mask"][1:].sum() == 0
    assert t["ind"][0] == 9 * 48 + 20
    np.testing.assert_allclose(t["wh"][0], [20, 10])
    np.testing.assert_allclose(t["reg"][0], [0, 0])
    # the gaussian has the radius of the rule: int(3.678) = 3 -> zero 4 px from the peak
    assert t["hm"][0, 9, 23] > 0 and t["hm"][0, 9, 24] == 0


def test_det_dataset_geometry_without_augmentation(tmp_path):
    kps = np.zeros((17, 3))
    root, _ = _write_dataset(tmp_path / "d", [((64, 32, 64, 128), kps)])
    ds = cd.DetDataset(cd.CocoPeople(root), _det_meta((256, 256)), augment=False)
    inp, t = ds[0]
    assert inp.shape == (3, 256, 256) and inp.dtype == np.float32
    # fix_res on a 256x256 image is the identity; output stride 4: box (16,8)-(32,40)
    assert t["hm"][0, 24, 24] == 1.0
    np.testing.assert_allclose(t["wh"][0], [16, 32])
    assert t["ind"][0] == 24 * 64 + 24


def test_det_input_normalisation_is_the_runtimes(tmp_path):
    from edgepose.pipeline.preprocess import ctdet_preprocess

    root, img = _write_dataset(tmp_path / "d", [((64, 32, 64, 128), np.zeros((17, 3)))])
    meta = _det_meta((256, 256))
    inp, _ = cd.DetDataset(cd.CocoPeople(root), meta, augment=False)[0]
    ref, _ = ctdet_preprocess(img, meta)
    np.testing.assert_allclose(inp, ref[0], atol=1e-6)


def test_joint_heatmaps_peak_at_joint():
    joints = np.array([[5.0, 7.0], [10.4, 3.6], [-3.0, 2.0]], np.float32)
    target, weight = cd.joint_heatmaps(joints, np.array([1, 1, 1]), (16, 12), sigma=1.0)
    assert target[0, 7, 5] == pytest.approx(1.0)
    assert np.unravel_index(target[1].argmax(), (16, 12)) == (4, 10)  # nearest pixel of (10.4, 3.6)
    np.testing.assert_array_equal(weight, [1, 1, 0])  # the third lies off the map
    assert target[2].max() == 0
    t2, w2 = cd.joint_heatmaps(joints[:1], np.array([0]), (16, 12), sigma=1.0)
    assert w2[0] == 0 and t2.max() == 0  # unlabelled joint: no supervision


def test_pose_dataset_crop_geometry_and_flip(tmp_path):
    # box 40x80 at (100, 60): centre (120, 100); aspect 0.75 -> already 0.5 < 0.75, so w := 60, x1.25
    kps = np.zeros((17, 3))
    kps[0] = (120, 100, 2)  # nose at the box centre -> crop centre (48, 64) -> heatmap (12, 16)
    kps[5] = (110, 100, 2)  # left shoulder 10 px left: crop scale k = 96 / 75 -> -12.8 px -> hm x 8.8 -> 9
    kps[6] = (130, 100, 1)
    root, img = _write_dataset(tmp_path / "p", [((100, 60, 40, 80), kps)])
    meta = _pose_meta()
    ds = cd.PoseDataset(cd.CocoPeople(root), meta, augment=False)
    inp, target, weight = ds[0]
    assert inp.shape == (3, 128, 96) and target.shape == (17, 32, 24)
    assert np.unravel_index(target[0].argmax(), (32, 24)) == (16, 12)
    assert np.unravel_index(target[5].argmax(), (32, 24)) == (16, 9)
    assert weight[0] == weight[5] == weight[6] == 1 and weight[1] == 0
    # the crop equals the runtime's crop_people for the same box
    from edgepose.pipeline.preprocess import crop_people

    ref, _ = crop_people(img, np.array([[100, 60, 140, 140]], np.float32), meta)
    np.testing.assert_allclose(inp, ref[0], atol=1e-5)
    # flipped sample: left/right channels swapped, mirrored positions
    ds_flip = cd.PoseDataset(cd.CocoPeople(root), meta, augment=True, box_shift=0, box_scale=0, sf=0, rot_p=0,
                             flip=1.0, jitter=0)
    _, tf, wf = ds_flip[0]
    pairs = dict(COCO_FLIP_PAIRS)
    assert pairs[5] == 6
    # left shoulder (x=110) mirrored to x = 256 - 110 - 1 = 145 lands in the *right* shoulder channel
    assert wf[6] == 1 and wf[5] == 1
    y6, x6 = np.unravel_index(tf[6].argmax(), (32, 24))
    y5, x5 = np.unravel_index(tf[5].argmax(), (32, 24))
    assert y6 == y5 == 16 and x5 < 12 < x6


# ----------------------------------------------------------------------------- losses


def test_focal_loss_prefers_the_target():
    from edgepose.train.losses import focal_loss

    target = torch.from_numpy(cd.ctdet_targets(np.array([[2.0, 2.0, 10.0, 10.0]]), [0], 1, (16, 16))["hm"])[None]
    good = torch.logit(target.clamp(1e-3, 1 - 1e-3))
    bad = torch.full_like(target, -2.19)
    assert focal_loss(good, target) < 0.1 * focal_loss(bad, target)


# ----------------------------------------------------------------------------- tiny training


def _fixed_dataset(dataset, n):
    samples = [dataset[i % len(dataset)] for i in range(n)]

    class Fixed:
        def __len__(self):
            return n

        def __getitem__(self, i):
            return samples[i]

    return Fixed()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from edgepose.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 4, seed=11, progress=False)
    return root


def test_tiny_det_training_lowers_loss_and_checkpoint_round_trips(synth_dir, tmp_path):
    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.det import det_step_loss

    model = _tiny_det()
    ds = _fixed_dataset(cd.DetDataset(cd.CocoPeople(synth_dir), _det_meta((64, 64)), augment=False), 4)
    out = tmp_path / "det.pth"
    result = fit(model, ds, det_step_loss, out=out, save=lambda m, p, e: save_checkpoint(m, p, "centernet", e),
                 epochs=30, batch_size=4, lr=1e-2, warmup=2, progress=False, threads=1)
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert result.steps == 30 and last < 0.6 * first, (first, last)
    # official CenterNet wrapper, loadable with weights_only, same outputs
    obj = torch.load(str(out), map_location="cpu", weights_only=True)
    assert set(obj) == {"epoch", "state_dict"} and obj["epoch"] == 30
    fresh = _tiny_det()
    fresh.load_state_dict(obj["state_dict"], strict=True)
    fresh.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), fresh(x)
    for k in ("hm", "wh", "reg"):
        torch.testing.assert_close(a[k], b[k])


def test_tiny_pose_training_lowers_loss_and_checkpoint_round_trips(synth_dir, tmp_path):
    from edgepose.models.checkpoint import save_checkpoint
    from edgepose.train import fit
    from edgepose.train.pose import pose_step_loss

    model = _tiny_pose()
    base = cd.PoseDataset(cd.CocoPeople(synth_dir), _pose_meta((64, 64)), augment=False)
    ds = _fixed_dataset(base, 4)
    out = tmp_path / "pose.pth"
    result = fit(model, ds, pose_step_loss, out=out, save=lambda m, p, e: save_checkpoint(m, p, "alphapose", e),
                 epochs=30, batch_size=4, lr=1e-2, warmup=2, progress=False, threads=1)
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < 0.6 * first, (first, last)
    state = torch.load(str(out), map_location="cpu", weights_only=True)
    assert "final_layer.weight" in state and "preact.conv1.weight" in state  # bare AlphaPose state_dict
    fresh = _tiny_pose()
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["heatmaps"], fresh(x)["heatmaps"])


def test_cli_train_det_and_resume(synth_dir, tmp_path):
    from click.testing import CliRunner

    from edgepose.cli import main

    out = tmp_path / "cli_det.pth"
    args = ["train", "det", "--data", str(synth_dir), "--out", str(out), "--epochs", "1", "--batch-size", "2",
            "--input-size", "64x64", "--no-progress", "--threads", "1"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert torch.load(str(out), weights_only=True)["epoch"] == 1
    res = CliRunner().invoke(main, [*args[:7], "2", *args[8:], "--resume"])
    assert res.exit_code == 0, res.output
    assert torch.load(str(out), weights_only=True)["epoch"] == 2
    bad = CliRunner().invoke(main, ["train", "pose", "--data", str(tmp_path / "nothing"), "--out", str(out)])
    assert bad.exit_code == 2 and "annotations.json" in bad.output


# ----------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("name,fmt", [("default_det", "centernet"), ("default_pose", "alphapose")])
def test_default_weights_load_strictly(name, fmt):
    from edgepose.models import create, get_spec
    from edgepose.models.defaults import default_weights

    path = default_weights(name)
    assert path.stat().st_size < 20e6
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    state = obj["state_dict"] if fmt == "centernet" else obj
    model = create(name)
    model.load_state_dict(state, strict=True)
    spec = get_spec(name)
    assert spec.checkpoint_format == fmt
    h, w = spec.input_size
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, h, w))
    if name == "default_det":
        assert out["hm"].shape == (1, 1, h // 4, w // 4)
    else:
        assert out["heatmaps"].shape == (1, 17, h // 4, w // 4)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # trained, not an init: the last 1x1 convs start as N(0, 0.001) and end far wider
    last = state["wh.2.weight"] if name == "default_det" else state["final_layer.weight"]
    assert last.std() > 5e-3
