"""The no-person message when the detector's candidates are all of other classes (issue 14:
a random-weights 80-class centernet_res18 gave 100 candidates per image at score ~1.0, none of
them class 0, and the build blamed "boxes outside the image")."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgepose.errors import CalibrationError
from edgepose.workflows import calibration_feeds as F
from helpers.quant_models import make_tiny_models


def other_class_detector(det_path, out_path):
    """The tiny 1-class detector turned into a 2-class one: class 0 (person) never scores
    (weights 0, bias -20), class 1 is the original heatmap shifted up by 6 (every position
    scores > 0.1)."""
    model = onnx.load(str(det_path))
    inits = {i.name: i for i in model.graph.initializer}
    node = next(n for n in model.graph.node if "hm" in n.output)
    weight, bias = (numpy_helper.to_array(inits[name]) for name in node.input[1:3])
    weight2 = np.concatenate([np.zeros_like(weight), weight])
    bias2 = np.array([-20.0, float(bias[0]) + 6.0], bias.dtype)
    for name, value in zip(node.input[1:3], (weight2, bias2)):
        inits[name].CopyFrom(numpy_helper.from_array(value, name))
    out = next(o for o in model.graph.output if o.name == "hm")
    out.type.tensor_type.shape.dim[1].dim_value = 2
    onnx.save(model, str(out_path))
    return out_path


def test_candidates_of_other_classes_are_named(tmp_path):
    det, pose = make_tiny_models(tmp_path)
    wrong = other_class_detector(det, tmp_path / "other_class.onnx")
    images = F.load_calibration_images("synthetic:2", size=2, progress=False, cache_dir=tmp_path)
    with pytest.raises(CalibrationError) as err:
        F.pose_feeds(images, wrong, pose, score_threshold=0.1)
    text = str(err.value)
    assert "are all of other classes (most often 1 (" in text, text
    assert "none of the person class 0" in text and "metadata person_class" in text
    assert "outside the image" not in text and "zero or negative" not in text
