"""Tiny ONNX files (``out = 2 * input`` or one odd node) with edgepose metadata, for the TensorRT
build/run logic tests and the API contract test."""
import onnx
from onnx import TensorProto, helper

from edgepose.metadata import ModelMeta, attach_metadata

POSE_META = ModelMeta(model="tiny_pose", task="sppe", input_size=(4, 4), batch=None, channel_order="RGB")
DET_META = ModelMeta(model="tiny_det", task="ctdet", input_size=(512, 512), batch=1,
                     extra={"min_input_size": [256, 320], "max_input_size": [768, 1024]})


def tiny_onnx(path, shape, meta=None, op="Mul", domain=""):
    """``input`` -> ``out`` of ``shape`` (str entries are dynamic dims); ``op`` other than Mul
    makes a single node of that type (``domain`` for custom ops)."""
    dims = [d if isinstance(d, int) else str(d) for d in shape]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    if op == "Mul":
        node = helper.make_node("Mul", ["input", "two"], ["out"], name="times_two")
    else:
        node = helper.make_node(op, ["input"], ["out"], name="odd_node", domain=domain)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [two]), opset_imports=opsets)
    model.ir_version = 8
    if meta is not None:
        attach_metadata(model, meta)
    onnx.save(model, str(path))
    return path
