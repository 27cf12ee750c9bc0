"""What `build` calibrates on and says about it (issue 14 items 3, 5, 6): --calib-size counts
for both models, ground-truth pose crops from a COCO .json, the message when the detector finds
nobody, most_clipped restricted to quantised tensors, FP16 agreement, bad synthetic specs."""
import json
import logging
import math

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edgepose.errors import CalibrationError
from edgepose.workflows import calibration_feeds as F

from helpers.quant_models import make_tiny_models

DEAD_SCORE = 0.1006  # the score every position of a random-weights detector had in issue 14


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_models(tmp_path_factory.mktemp("tiny_feeds"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feeds_cache")


def dead_detector(det_path, out_path):
    """The tiny detector with its heads made constant: every heatmap position scores
    DEAD_SCORE and every box is 0.5 px too small to exist (w = h = -0.5)."""
    model = onnx.load(str(det_path))
    inits = {i.name: i for i in model.graph.initializer}
    for head, bias in (("hm", math.log(DEAD_SCORE / (1 - DEAD_SCORE))), ("wh", -0.5)):
        node = next(n for n in model.graph.node if head in n.output)
        for name, value in ((node.input[1], 0.0), (node.input[2], bias)):
            arr = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(np.full_like(arr, value), name))
    onnx.save(model, str(out_path))
    return out_path


def _options(**kw):
    from edgepose.workflows.build import BuildOptions

    base = dict(det_threshold=0.05, progress=False, benchmark=False, calib_method="minmax")
    return BuildOptions(**{**base, **kw})


def _read_feeds(tiny, cache, tmp_path, **kw):
    from edgepose.metadata import read_metadata
    from edgepose.workflows.build_int8 import read_feeds

    det, pose = kw.pop("det", tiny[0]), tiny[1]
    o = _options(cache_dir=cache, out_dir=tmp_path / "unused", **kw)
    return read_feeds({"det": det, "pose": pose}, {"det": read_metadata(det), "pose": read_metadata(pose)}, o,
                      tmp_path)


def _samples(feeds):
    return sum(len(next(iter(f.values()))) for f in feeds)


def test_calib_size_is_detector_images_and_pose_crops(tiny, cache, tmp_path):
    """--calib-size 5: 5 images calibrate the detector, 5 crops the pose model (the detector
    finds more people than that), and the held-out images come on top."""
    images, held, feeds, holds, info = _read_feeds(tiny, cache, tmp_path, calib="synthetic:12", calib_size=5)
    assert _samples(feeds["det"]) == 5 and info["det_images"] == 5
    assert info["pose_crops_available"] > 5, info  # else the test shows nothing
    assert _samples(feeds["pose"]) == 5 and info["pose_crops"] == 5
    assert info["held_out_images"] == len(held) == 1 and len(images) == 6 and info["held_out_disjoint"]
    assert info["pose_crops_from"].startswith("FP32 detector")


def test_fewer_crops_than_asked_is_a_warning_with_the_numbers(tiny, cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        _, _, feeds, _, info = _read_feeds(tiny, cache, tmp_path, calib="synthetic:2", calib_size=200)
    got = info["pose_crops"]
    assert got == _samples(feeds["pose"]) == info["pose_crops_available"] < 30
    warnings = [r.getMessage() for r in caplog.records if "pose crops" in r.getMessage()]
    assert len(warnings) == 1 and f"only {got}" in warnings[0] and "200" in warnings[0]
    assert "noisy" in warnings[0]
    assert any("detector calibration images" in r.getMessage() for r in caplog.records)


def test_build_states_both_counts(tiny, cache, tmp_path):
    from edgepose.workflows.build import build

    result = build(_options(det=tiny[0], pose=tiny[1], precision="int8", calib="synthetic:10", calib_size=4,
                            out_dir=tmp_path / "out", cache_dir=cache))
    calib = json.loads((tmp_path / "out" / "report.json").read_text())["calibration"]
    assert (calib["calib_size"], calib["det_images"], calib["pose_crops"]) == (4, 4, 4)
    assert "detector on 4 images, pose on 4 crops" in result.format()


def test_detector_that_finds_nobody_says_what_it_found(tiny, cache, tmp_path):
    dead = dead_detector(tiny[0], tmp_path / "dead.onnx")
    images = F.load_calibration_images("synthetic:3", size=3, progress=False, cache_dir=cache)
    with pytest.raises(CalibrationError) as err:
        F.pose_feeds(images, dead, tiny[1], score_threshold=0.1)
    text = str(err.value)
    assert f"every position scores ~{DEAD_SCORE:.4f}" in text, text
    assert "zero or negative size" in text and "untrained or its heads are wrong" in text
    assert "--calib ann.json" in text


def test_coco_json_calibrates_the_pose_model_on_ground_truth_boxes(tiny, cache, tmp_path):
    """A detector that finds nobody no longer blocks the build when --calib is a COCO .json:
    the pose crops are the annotated boxes, exactly those crops (compared pixel for pixel)."""
    from edgepose.data.synthetic import generate_dataset
    from edgepose.metadata import read_metadata
    from edgepose.pipeline.preprocess import crop_people
    from edgepose.workflows.build import build

    ann = generate_dataset(tmp_path / "coco", num_images=6, seed=5, progress=False)
    dead = dead_detector(tiny[0], tmp_path / "dead.onnx")
    _, _, feeds, _, info = _read_feeds(tiny, cache, tmp_path, det=dead, calib=str(ann), calib_size=4)
    used, _ = F.load_calibration_images(str(ann), size=5, progress=False).split(count=1)
    doc = json.loads(open(ann).read())
    by_name = {im["file_name"].split("/")[-1]: im["id"] for im in doc["images"]}
    expected = []
    for image, name in zip(used.images, used.names):
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in doc["annotations"] if a["image_id"] == by_name[name] and a["bbox"][2] >= 1]
        if boxes:
            expected.append(crop_people(image, np.clip(boxes, 0, [image.shape[1], image.shape[0]] * 2),
                                        read_metadata(tiny[1]))[0])
    expected = F._evenly([c[i:i + 1] for c in expected for i in range(len(c))], 4)
    assert info["pose_crops"] == 4 and info["pose_crops_from"] == f"ground-truth boxes of {ann}"
    np.testing.assert_array_equal(np.concatenate([next(iter(f.values())) for f in feeds["pose"]]),
                                  np.concatenate(expected))
    result = build(_options(det=dead, pose=tiny[1], precision="int8", calib=str(ann), calib_size=4,
                            out_dir=tmp_path / "out", cache_dir=cache))
    assert f"ground-truth boxes of {ann}" in result.format()
    assert (tmp_path / "out" / "pose.int8.onnx").is_file()


def gated_model(path, c=16, seed=0):
    """Conv -> ReLU -> 1x1 Conv -> ReLU -> 1x1 Conv -> Sigmoid gate (a DCN-mask / SE-like
    sigmoid) -> Mul with the conv output -> Conv.  The gate only feeds the Mul, which INT8
    leaves float, so its range is never used."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)

    inits = [w("w0", c, 3, 3, 3), w("b0", c), w("w1", c // 4, c, 1, 1), w("b1", c // 4), w("w2", c, c // 4, 1, 1),
             numpy_helper.from_array(np.full(c, -2.0, np.float32), "b2"), w("w3", 4, c, 3, 3), w("b3", 4)]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["y"], pads=[1, 1, 1, 1], name="conv0"),
             helper.make_node("Relu", ["y"], ["g"], name="relu0"),
             helper.make_node("Conv", ["g", "w1", "b1"], ["s1"], name="gate_reduce"),
             helper.make_node("Relu", ["s1"], ["s1r"], name="gate_relu"),
             helper.make_node("Conv", ["s1r", "w2", "b2"], ["s2"], name="gate_expand"),
             helper.make_node("Sigmoid", ["s2"], ["gate"], name="gate_sigmoid"),
             helper.make_node("Mul", ["y", "gate"], ["z"], name="gate_mul"),
             helper.make_node("Conv", ["z", "w3", "b3"], ["out"], pads=[1, 1, 1, 1], name="conv_out")]
    graph = helper.make_graph(nodes, "gated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_most_clipped_lists_only_tensors_the_graph_quantises(tmp_path, method):
    """The gate and the graph output have ranges (statistics cover every activation) but no
    Q/DQ: most_clipped lists the quantised tensors, most clipped first, and nothing else."""
    from edgepose.quant.build import calibrate, quantize_method
    from edgepose.quant.ranges import quantized_tensors

    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32) * (1 + i % 5)} for i in range(32)]
    graph = calibrate(gated_model(tmp_path / "gated.onnx"), feeds)
    q = quantize_method(graph, method, tmp_path / "gated.int8.onnx")
    quantized = quantized_tensors(onnx.load(str(tmp_path / "gated.int8.onnx")))
    assert {"gate", "out"} <= set(q.ranges) and not {"gate", "out"} & quantized  # the case is real
    rows = q.entry["ranges"]["most_clipped"]
    assert [r["tensor"] for r in rows] and {r["tensor"] for r in rows} <= quantized, rows
    ratios = sorted(q.ranges[n] / graph.stats[n].absmax for n in quantized if graph.stats[n].absmax > 0)
    assert [r["amax_over_absmax"] for r in rows] == pytest.approx(ratios[:len(rows)], abs=1e-4)
    assert rows[0]["amax_over_absmax"] < 0.9  # the method really clips something quantised
    assert q.entry["ranges"]["quantized_tensors"] == len(quantized & set(q.ranges))


def test_fp16_build_reports_agreement_of_both_models_without_calib(tiny, cache, tmp_path):
    from edgepose.workflows.build import build

    result = build(_options(det=tiny[0], pose=tiny[1], precision="fp16", out_dir=tmp_path / "out",
                            cache_dir=cache, calib_method=None))
    models = json.loads((tmp_path / "out" / "report.json").read_text())["models"]
    for role in ("det", "pose"):
        final = models[role]["agreement"]["final"]
        assert final["people_fp32"] > 0 and final["ap_vs_fp32"] >= 0.8, (role, final)  # FP16: near 1
        assert f"{role} agreement with FP32" in result.format()


@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:8:x", "synthetic:0", "synthetic:1:2:3"])
def test_bad_synthetic_spec_is_one_line_exit_2(tiny, tmp_path, spec):
    from edgepose.cli import main

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["build", "--int8", "--det", str(tiny[0]), "--pose", str(tiny[1]), "--calib",
                                    spec, "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "synthetic[:N[:SEED]]" in res.output and spec in res.output
    assert not out.exists()


def test_synthetic_spec_parses():
    assert F.parse_synthetic_spec("synthetic", 12) == (12, 0)
    assert F.parse_synthetic_spec("synthetic:7:3") == (7, 3)
    assert F.parse_synthetic_spec("synthetic::4", 5) == (5, 4)


def test_help_says_a_coco_json_calibrates_pose_on_its_boxes():
    from edgepose.cli import main

    text = " ".join(CliRunner().invoke(main, ["build", "--help"]).output.split())
    assert "COCO .json the pose model calibrates on crops of its annotations' person boxes" in text
    assert "N images calibrate the detector and N person crops the pose model" in text
