"""workflows.build.build / `edgepose build`: files, report, lint of every produced graph, and the
accuracy-budget search on a small case."""
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgepose.compare import mean_rel_sq_error as output_error
from edgepose.metadata import read_metadata
from edgepose.quant import calibration as C
from edgepose.workflows import calibration_feeds as F
from edgepose.workflows.build import BuildOptions, build
from edgepose.quant.int8 import prepare_fp32, quantizable_nodes, quantize_int8
from edgepose.quant.lint import lint_qdq
from edgepose.quant.sensitivity import QuantPlan, budget_search, layer_sensitivity

from helpers.quant_models import make_tiny_models, run_onnx as _run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_build"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("build_cache")


@pytest.fixture(scope="module")
def int8_build(tiny, cache, tmp_path_factory):
    det, pose = tiny
    out = tmp_path_factory.mktemp("int8_out")
    report = build(BuildOptions(det=det, pose=pose, precision="int8", calib="synthetic:6", calib_size=6,
                                out_dir=out, det_threshold=0.05, progress=False, cache_dir=cache,
                                calib_method="percentile")).report
    return out, report


def test_int8_build_writes_linted_graphs_and_report(int8_build, tiny, cache):
    out, report = int8_build
    det, pose = tiny
    assert sorted(p.name for p in out.iterdir()) == ["det.int8.onnx", "pose.int8.onnx", "report.json"]
    on_disk = json.loads((out / "report.json").read_text())
    expected_hash = F.load_calibration_images("synthetic:6", size=6, progress=False, cache_dir=cache).sha256
    assert on_disk["calibration"]["sha256"] == expected_hash
    assert on_disk["calibration"]["method"] == "percentile" and on_disk["calibration"]["pose_crops"] > 0
    for role, src in (("det", det), ("pose", pose)):
        path = out / f"{role}.int8.onnx"
        model = onnx.load(str(path))
        assert lint_qdq(model) == []  # every graph build produces obeys the Q/DQ rules
        entry = on_disk["models"][role]
        assert entry["lint"] == "clean" and entry["fp32_nodes"] == []
        prepared, _ = prepare_fp32(src)
        convs = sum(n.op_type == "Conv" for n in prepared.graph.node)
        heads = len(prepared.graph.output)
        assert entry["ort_cpu_fusion"]["QLinearConv"] == convs - heads
        assert entry["ranges"]["tensors"] > convs
        assert min(entry["cosine_vs_fp32_heldout"].values()) >= 0.99
        meta = read_metadata(path)
        assert meta.precision == "int8" and meta.extra["calib_sha256"] == expected_hash
        assert meta.input_size == read_metadata(src).input_size


def test_int8_graphs_run_in_the_pipeline(int8_build, cache):
    out, _ = int8_build
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(str(out / "det.int8.onnx"), str(out / "pose.int8.onnx"), backend="onnxruntime",
                               runner_kw={"disable_cse": True}, score_threshold=0.05)
    image = F.load_calibration_images("synthetic:1:9", size=1, progress=False, cache_dir=cache).images[0]
    result = pipe(image)
    assert result.keypoints.shape[1:] == (17, 2) and np.isfinite(result.keypoints).all()


def test_cli_builds_fp16_and_int8_and_says_why_no_engine(tiny, cache, tmp_path):
    from edgepose.cli import main

    det, pose = tiny
    runner = CliRunner()
    res = runner.invoke(main, ["build", "--fp16", "--det", str(det), "--pose", str(pose), "--out",
                               str(tmp_path / "f16"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f16" / "det.fp16.onnx").is_file() and (tmp_path / "f16" / "pose.fp16.onnx").is_file()
    assert read_metadata(tmp_path / "f16" / "pose.fp16.onnx").precision == "fp16"
    assert sum("no TensorRT engine built:" in line for line in res.output.splitlines()) == 1
    res = runner.invoke(main, ["build", "--int8", "--det", str(det), "--pose", str(pose), "--calib",
                               "synthetic:4", "--calib-size", "4", "--calib-method", "minmax", "--det-threshold",
                               "0.05", "--out", str(tmp_path / "i8"), "--quiet"])
    assert res.exit_code == 0, res.output
    for name in ("det.int8.onnx", "pose.int8.onnx"):
        assert lint_qdq(tmp_path / "i8" / name) == []
    assert "no TensorRT engine built:" in res.output
    # errors are one line and a non-zero exit, not a traceback
    res = runner.invoke(main, ["build", "--int8", "--det", str(det), "--pose", str(pose), "--calib",
                               str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--quiet"])
    assert res.exit_code != 0 and "does not exist" in res.output
    res = runner.invoke(main, ["build", "--det", str(det), "--pose", str(pose), "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--int8 or --fp16" in res.output


def test_budget_search_respects_the_budget(tiny, cache, tmp_path):
    """Metric: 100 * (1 - relative output error) of the detector on held-out pipeline inputs,
    measured on the written ONNX files; the budget is a quarter of the full-INT8 drop, so
    the search has to keep layers in FP32 -- and the final file must fit the budget."""
    det, _ = tiny
    calib = F.load_calibration_images("synthetic:6:0", size=6, progress=False, cache_dir=cache)
    held = F.load_calibration_images("synthetic:3:11", size=3, progress=False, cache_dir=cache)
    prepared, _ = prepare_fp32(det)
    feeds = F.det_feeds(calib, det)
    stats = C.collect_statistics(prepared, feeds[:4], progress=False)
    # deliberately coarse ranges (entropy on 4 images) so full INT8 visibly moves the outputs
    ranges = C.compute_ranges(stats, "entropy")
    eval_feeds = F.det_feeds(held, det)
    reference = _run(prepared, eval_feeds)

    def score(path):
        got = _run(onnx.load(str(path)), eval_feeds)
        return 1.0 - output_error([reference], [got])

    full = tmp_path / "full.onnx"
    quantize_int8(prepared, ranges, full)
    full_drop = (1.0 - score(full)) * 100
    assert full_drop > 0
    budget = full_drop / 4
    ranking = layer_sensitivity(prepared, ranges, feeds[4:])
    assert sorted(n for n, _ in ranking) == sorted(quantizable_nodes(prepared))
    plan = QuantPlan("det", prepared, ranges, ranking)
    result = budget_search({"det": plan}, lambda paths: {"score": score(paths["det"])}, {"score": 1.0}, budget,
                           blame={"score": ["det"]}, work_dir=tmp_path / "work")
    assert result["met"]
    final = result["paths"]["det"]
    measured_drop = (1.0 - score(final)) * 100
    assert measured_drop <= budget
    kept = result["kept"]["det"]
    assert 0 < len(kept) < len(ranking)
    assert lint_qdq(final, allow_float=kept) == []
    # the history is monotone in kept layers and its first step is full INT8
    steps = [h["kept"]["det"] for h in result["history"]]
    assert steps[0] == 0 and steps == sorted(steps)
    assert result["history"][0]["drops"]["score"] == pytest.approx(full_drop, rel=1e-6)


def test_budget_rejects_bad_input(tiny):
    from edgepose.errors import UsageError

    with pytest.raises(UsageError):
        budget_search({}, lambda p: {}, {}, -1.0, blame={})
    det, pose = tiny
    with pytest.raises(UsageError, match="INT8 only"):
        build(BuildOptions(det=det, pose=pose, precision="fp16", max_ap_drop=0.5, progress=False))


def test_budget_search_blames_the_role_that_causes_the_drop(tiny, cache, tmp_path):
    """Two copies of the detector, both blamed for one metric ('clean' first): 'clean' has
    minmax ranges, 'noisy' the same ranges except three conv inputs clipped to a tenth.  The
    search must spend its FP32 layers on 'noisy' -- on those three convs -- not on 'clean'."""
    det, _ = tiny
    calib = F.load_calibration_images("synthetic:6:0", size=6, progress=False, cache_dir=cache)
    held = F.load_calibration_images("synthetic:3:11", size=3, progress=False, cache_dir=cache)
    prepared, _ = prepare_fp32(det)
    feeds = F.det_feeds(calib, det)
    clean = C.compute_ranges(C.collect_statistics(prepared, feeds[:4], progress=False), "minmax")
    users = {}
    for node in prepared.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    victims = [n for n in prepared.graph.node if n.op_type == "Conv" and len(users[n.input[0]]) == 1
               and n.input[0] in clean][2:5]
    noisy = dict(clean)
    for node in victims:
        noisy[node.input[0]] = clean[node.input[0]] * 0.1
    eval_feeds = F.det_feeds(held, det)
    reference = _run(prepared, eval_feeds)
    ranking = layer_sensitivity(prepared, noisy, feeds[4:])
    plans = {"clean": QuantPlan("clean", prepared, clean, ranking),
             "noisy": QuantPlan("noisy", prepared, noisy, ranking)}
    assert {n.name for n in victims} <= set(plans["noisy"].kept(6))

    def evaluate(paths):
        errs = [output_error([reference], [_run(onnx.load(str(paths[r])), eval_feeds)]) for r in ("clean", "noisy")]
        return {"score": 1.0 - sum(errs), "clean": errs[0], "noisy": errs[1]}

    for role, plan in plans.items():
        plan.build(0, tmp_path / f"{role}.onnx")
    full = evaluate({r: tmp_path / f"{r}.onnx" for r in plans})
    assert full["noisy"] > 5 * full["clean"]
    budget = (full["clean"] + full["noisy"]) * 100 / 2
    result = budget_search(plans, evaluate, {"score": 1.0}, budget, blame={"score": ["clean", "noisy"]},
                           work_dir=tmp_path / "work")
    assert result["met"] and result["drops"]["score"] <= budget
    assert result["k"]["noisy"] > 0 and result["k"]["clean"] == 0


def test_build_with_budget_measures_ap_on_an_eval_set(tiny, cache, tmp_path):
    """The --max-ap-drop path end to end on a 3-image synthetic eval set: FP32 and INT8 AP
    are measured with the pipeline and the reported drops are the differences."""
    det, pose = tiny
    report = build(BuildOptions(det=det, pose=pose, precision="int8", calib="synthetic:4", calib_size=4,
                                out_dir=tmp_path, det_threshold=0.05, progress=False, cache_dir=cache,
                                max_ap_drop=0.5, eval_size=3, benchmark=False)).report
    ap = report["ap"]
    assert ap["max_ap_drop"] == 0.5 and ap["budget_met"] is True
    for key in ("bbox_AP", "keypoints_AP"):
        assert ap["drop_points"][key] == pytest.approx((ap["fp32"][key] - ap["int8"][key]) * 100, abs=2e-3)
        assert ap["drop_points"][key] <= 0.5
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["ap"]["eval_set"].endswith("annotations.json")
    for role in ("det", "pose"):
        assert lint_qdq(tmp_path / f"{role}.int8.onnx", allow_float=on_disk["models"][role]["fp32_nodes"]) == []


def test_cpu_build_keeps_the_image_stem_in_fp32(tiny, cache, tmp_path):
    det, pose = tiny
    report = build(BuildOptions(det=det, pose=pose, precision="int8", calib="synthetic:4", calib_size=4,
                                out_dir=tmp_path, det_threshold=0.05, progress=False, cache_dir=cache,
                                cpu_rewrite=True, benchmark=False)).report
    for role in ("det", "pose"):
        kept = report["models"][role]["fp32_nodes"]
        model = onnx.load(str(tmp_path / f"{role}.int8.onnx"))
        stems = [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] == model.graph.input[0].name]
        assert [n.name for n in stems] == kept and len(kept) == 1  # float conv straight on the image
        assert lint_qdq(model, allow_float=kept) == []
        assert {i.rule for i in lint_qdq(model)} == {"missing-qdq"}
        assert read_metadata(tmp_path / f"{role}.int8.onnx").extra["fp32_nodes"] == kept
        assert report["models"][role]["ort_cpu_fusion"]["float_conv"] == 1 + len(model.graph.output)
