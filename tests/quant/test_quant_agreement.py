"""INT8 builds never write a collapsed model with exit 0 (issue 14 item 1).

The pose model here is the tiny random pose model with a head whose information sits in rare
outliers: per joint a true peak and a weaker decoy on a N(0, 1) background (0.05 % of the
values of a widened tensor), added to the heatmaps before two 1x1 convs that pick them back.
Entropy (KL) calibration clips the tensor feeding the first of them near the background's
range, the two peaks tie and the argmax (the keypoint) jumps to the decoy; minmax keeps them
apart.  The build must see that (keypoint AP of INT8 against FP32 on held-out crops), pick
another method or keep layers in FP32, and -- when no recovery is allowed -- fail with the
numbers, exit non-zero and write nothing.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from helpers.quant_models import make_tiny_models


def graft_outlier_head(pose_path, out_path, peak: float = 40.0, decoy: float = 30.0, spare: int = 15):
    """``pose_path`` with heatmaps = Pick(Expand(heatmaps) + P) -> Id: P is a fixed N(0, 1)
    background over ``(1 + spare) * joints`` channels with, in the first ``joints`` channels, a
    ``decoy`` peak in the top rows (first in raster order) and the true ``peak`` in the bottom
    rows (the spare channels only make the peaks rarer: 0.05 % of the values).  Clipped below
    both, the two peaks tie and the argmax takes the decoy."""
    model = onnx.load(str(pose_path))
    graph = model.graph
    out = graph.output[0]
    joints, h, w = (d.dim_value for d in out.type.tensor_type.shape.dim[1:])
    producer = next(n for n in graph.node if out.name in n.output)
    producer.output[list(producer.output).index(out.name)] = "raw_heatmaps"
    rng = np.random.default_rng(0)
    wide = joints * (1 + spare)
    pattern = rng.standard_normal((1, wide, h, w)).clip(-3, 3).astype(np.float32)
    for j in range(joints):  # decoy near the top, true peak near the bottom: far apart in OKS terms
        pattern[0, j, 2, rng.integers(2, w - 2)] = decoy
        pattern[0, j, h - 3, rng.integers(2, w - 2)] = peak
    eye = np.eye(joints, dtype=np.float32)
    expand = np.concatenate([eye] * (1 + spare)).reshape(wide, joints, 1, 1)
    pick = np.concatenate([eye, np.zeros((joints, wide - joints), np.float32)], axis=1).reshape(joints, wide, 1, 1)
    graph.initializer.extend([
        numpy_helper.from_array(pattern, "outlier_pattern"), numpy_helper.from_array(expand, "expand_w"),
        numpy_helper.from_array(pick, "pick_w"), numpy_helper.from_array(eye.reshape(joints, joints, 1, 1), "id_w"),
        numpy_helper.from_array(np.zeros(wide, np.float32), "wide_b"),
        numpy_helper.from_array(np.zeros(joints, np.float32), "joint_b")])
    graph.node.extend([
        helper.make_node("Conv", ["raw_heatmaps", "expand_w", "wide_b"], ["wide_heatmaps"], name="expand"),
        helper.make_node("Sum", ["wide_heatmaps", "outlier_pattern"], ["peaked"], name="add_peaks"),
        helper.make_node("Conv", ["peaked", "pick_w", "joint_b"], ["picked"], name="pick"),
        helper.make_node("Conv", ["picked", "id_w", "joint_b"], [out.name], name="identity"),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("agreement")
    det, pose = make_tiny_models(root)
    return det, graft_outlier_head(pose, root / "pose_outliers.onnx"), root / "cache", pose


def test_entropy_collapses_the_outlier_head_and_the_build_recovers(models, tmp_path):
    from edgepose.workflows.build import BuildOptions, build

    det, pose, cache, _ = models
    result = build(BuildOptions(det=det, pose=pose, precision="int8", calib="synthetic:8", calib_size=8,
                                out_dir=tmp_path / "out", det_threshold=0.05, progress=False, cache_dir=cache,
                                benchmark=False))
    agreement = json.loads((tmp_path / "out" / "report.json").read_text())["models"]["pose"]["agreement"]
    methods = agreement["methods"]
    assert set(methods) == {"entropy", "minmax", "percentile", "mse"}
    assert methods["entropy"]["ap_vs_fp32"] < 0.5, methods  # the constructed collapse is real
    assert methods["minmax"]["ap_vs_fp32"] >= 0.5, methods
    assert agreement["chosen_by"] == "agreement"
    assert agreement["chosen"] != "entropy" or agreement.get("kept_fp32_for_agreement")
    assert agreement["final"]["ap_vs_fp32"] >= 0.5
    assert "pose agreement with FP32" in result.format() and f"using {agreement['chosen']}" in result.format()


def test_entropy_asked_for_keeps_layers_in_fp32_until_it_agrees(models, tmp_path):
    from edgepose.workflows.build import BuildOptions, build

    det, pose, cache, _ = models
    build(BuildOptions(det=det, pose=pose, precision="int8", calib="synthetic:8", calib_size=8,
                       out_dir=tmp_path / "out", det_threshold=0.05, progress=False, cache_dir=cache,
                       benchmark=False, calib_method="entropy"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    agreement = report["models"]["pose"]["agreement"]
    assert agreement["chosen"] == "entropy" and agreement["chosen_by"] == "--calib-method"
    assert agreement["methods"]["entropy"]["ap_vs_fp32"] < 0.5
    assert agreement["kept_fp32_for_agreement"] >= 1 and agreement["final"]["ap_vs_fp32"] >= 0.5
    kept = report["models"]["pose"]["fp32_nodes"]
    graph = onnx.load(str(tmp_path / "out" / "pose.int8.onnx")).graph
    quantized_inputs = {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    kept_nodes = [n for n in graph.node if n.name in kept]
    assert kept_nodes and all(not set(n.input) & quantized_inputs for n in kept_nodes if n.op_type == "Conv")


def test_collapse_without_recovery_fails_and_writes_nothing(models, tmp_path):
    from edgepose.cli import main

    det, pose, cache, _ = models
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["build", "--int8", "--det", str(det), "--pose", str(pose), "--calib",
                                    "synthetic:8", "--calib-size", "8", "--det-threshold", "0.05",
                                    "--calib-method", "entropy", "--max-fp32-layers", "0", "--out", str(out),
                                    "--quiet"])
    assert res.exit_code != 0, res.output
    assert "INT8 pose model collapses against FP32" in res.output and "entropy keypoints AP" in res.output
    assert "Traceback" not in res.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_agreement_of_fp32_with_itself_is_perfect_and_a_moved_keypoint_is_not(models, tmp_path):
    """The judge on its own: FP32 against itself scores AP 1 and count ratio 1; the decoy-only
    head (every keypoint moved to the decoy) scores 0."""
    from edgepose.workflows.agreement import AgreementJudge
    from edgepose.workflows.calibration_feeds import load_calibration_images

    det, pose, cache, raw_pose = models
    images = load_calibration_images("synthetic:2:21", size=2, progress=False, cache_dir=cache).images
    judge = AgreementJudge({"det": det, "pose": pose}, images, score_threshold=0.05)
    same_det, same_pose = judge("det", det), judge("pose", pose)
    assert same_det.people_fp32 > 0 and same_det.ap == pytest.approx(1.0) and same_det.count_ratio == 1.0
    assert same_pose.ap == pytest.approx(1.0)
    decoy_only = graft_outlier_head(raw_pose, tmp_path / "decoy.onnx", peak=0.0, decoy=30.0)
    assert judge("pose", decoy_only).ap < 0.1
