"""INT8 as a strongly typed Q/DQ ONNX graph (TensorRT explicit quantization).

The Q/DQ insertion is ONNX Runtime's own ``quantize_static`` (QDQ format), configured for
TensorRT's rules:

* symmetric INT8 for activations *and* weights (zero point 0; no uint8 anywhere);
* per-channel weight scales (axis 0 for Conv/Gemm, axis 1 -- the output-channel axis of the
  ONNX ``(Cin, Cout, kh, kw)`` layout -- for ConvTranspose), per-tensor activation scales;
* Q/DQ on the inputs of Conv, ConvTranspose, Gemm and MatMul and on residual Add inputs;
* ``DedicatedQDQPair``: every consumer gets its own Q/DQ pair, so ONNX Runtime (with
  CommonSubexpressionElimination disabled) fuses every conv into QLinearConv, and TensorRT
  sees the pattern it fuses.

The ranges come from :mod:`edgepose.quant.calibration` (one statistics pass, any method)
and reach ``quantize_static`` through its calibration cache, so the accuracy-budget search
re-quantizes with different ``nodes_to_exclude`` without re-running calibration.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgepose.errors import QuantizationError
from edgepose.onnx_graph import consumers, load_model, name_nodes, producers

log = logging.getLogger("edgepose")

QUANT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CPU_TARGET_KEY = "edgepose.int8_cpu_target"


def prepare_fp32(model, cpu_rewrite: bool = False):
    """The FP32 graph that is calibrated and quantized: BatchNorms folded into their convs
    and, with ``cpu_rewrite``, ConvTranspose -> Conv (one per output phase) + DepthToSpace (see
    :func:`edgepose.quant.rewrite.deconv_to_conv_d2s`), ``Relu -> DepthToSpace`` swapped,
    GlobalAveragePool as ReduceMean (:mod:`edgepose.quant.rewrite`) and the graph marked as a
    CPU target (``quantize_int8`` then runs Relus as int8 lookups).  Every pass is exact (up to
    float rounding).  Returns ``(model, info)``."""
    import onnx

    from edgepose.quant.rewrite import (deconv_to_conv_d2s, fold_batchnorm, global_pool_as_reduce_mean,
                                        relu_after_depth_to_space)

    src = load_model(model)
    model = onnx.ModelProto()
    model.CopyFrom(src)
    model, folded = fold_batchnorm(model)
    rewritten = []
    if cpu_rewrite:
        model, rewritten = deconv_to_conv_d2s(model, split_phases=True)
        relu_after_depth_to_space(model)  # DUC: pixel shuffle on the conv's int8 output
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    if cpu_rewrite:
        global_pool_as_reduce_mean(model)  # SE blocks: a pool ORT's layout optimiser moves transposes through
        model.metadata_props.add(key=CPU_TARGET_KEY, value="1")  # quantize_int8: CPU-only placement
    return model, {"bn_folded": folded, "deconv_rewritten": rewritten}


def quantizable_nodes(model, op_types=QUANT_OPS) -> list:
    """Names of the nodes ``quantize_int8`` puts Q/DQ on (in graph order).  That includes an
    Add with a constant input (``x + bias``): ``quantize_static`` quantizes its input, its
    constant and its output like a residual Add's, so excluding every listed node leaves the
    graph FP32 (the budget search's "keep everything") and sensitivity quantizes one layer."""
    model = load_model(model)
    return [node.name for node in model.graph.node if node.op_type in op_types]


def cpu_float_nodes(model, max_in_channels: int = 4) -> list:
    """Convs that read the image itself (a graph input with <= 4 channels).  On ONNX Runtime
    CPU an INT8 conv with 3 input channels is slower than the float one (the 7x7 stem took
    1.9 ms as QLinearConv vs 1.1 ms float in the default detector) and it is also the most
    sensitive layer, so CPU builds (``cpu_rewrite``) keep these in FP32.  TensorRT builds
    quantize them."""
    from onnx import numpy_helper

    model = load_model(model)
    inputs = {i.name for i in model.graph.input}
    inits = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[0] in inputs and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.ndim == 4 and w.shape[1] <= max_in_channels:
                names.append(node.name)
    return names


def drop_output_qdq(model) -> list:
    """Remove QuantizeLinear -> DequantizeLinear pairs that end at graph outputs, so the final
    layers (heatmap logits, box sizes, keypoint heatmaps) take INT8 inputs but produce float
    outputs (TensorRT: INT8 conv with FP32 output).  Quantizing an output to 255 levels would
    put ties on heatmap peaks.  In place; returns the output names freed."""
    graph = model.graph
    producer = producers(graph)
    users = consumers(graph)
    freed, remove = [], []
    for out in graph.output:
        dq = producer.get(out.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or len(users.get(q.output[0], [])) != 1:
            continue
        src = q.input[0]
        src_node = producer.get(src)
        if src_node is None or len(users.get(src, [])) != 1 or src in {o.name for o in graph.output}:
            continue
        for i, name in enumerate(src_node.output):
            if name == src:
                src_node.output[i] = out.name
        remove += [q, dq]
        freed.append(out.name)
    for node in remove:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return freed


def quantize_int8(model, ranges: dict, out_path, nodes_to_exclude=(), op_types=QUANT_OPS, meta=None,
                  extra_meta: dict | None = None, lint: bool = True, quantize_outputs: bool = False,
                  improve_placement: bool = True):
    """Write the Q/DQ INT8 version of the (prepared) FP32 ``model`` to ``out_path``.

    ``ranges``: ``{tensor: amax}`` from :func:`edgepose.quant.calibration.compute_ranges`.
    ``nodes_to_exclude``: node names kept in FP32.  ``meta``: the edgepose ModelMeta to
    embed (``precision`` is set to ``int8``).  ``quantize_outputs``: also quantize the graph
    outputs (default: the final layers output float, see :func:`drop_output_qdq`).
    ``improve_placement``: the exact ORT CPU fusion fixes of :mod:`edgepose.quant.placement`
    (one Q/DQ pair per reader of a shared DequantizeLinear, DepthToSpace on int8; on graphs ``prepare_fp32(cpu_rewrite=True)`` marked, Relu as an
    int8 lookup).
    Returns the quantized ``onnx.ModelProto``.
    """
    import onnx

    from edgepose.io_utils import atomic_path
    from edgepose.metadata import attach_metadata, metadata_from_proto
    from edgepose.quant.placement import (activations_as_uint8, dedicated_pair_per_reader, quantize_equal_scale_concats,
                                          quantize_through_data_movement, relu_as_int8_lookup, share_equal_quantize,
                                          single_reader_conv_outputs)
    from edgepose.quant.rewrite import tie_phase_ranges

    model = name_nodes(load_model(model))
    if meta is None:
        with contextlib.suppress(Exception):
            meta = metadata_from_proto(model)
    known = {n.name for n in model.graph.node}
    unknown = sorted(set(nodes_to_exclude) - known)
    if unknown:
        raise QuantizationError(f"nodes_to_exclude names nodes that are not in the graph: {unknown[:5]}")
    cpu_target = any(p.key == CPU_TARGET_KEY and p.value == "1" for p in model.metadata_props)
    qmodel = _quantize_static_qdq(model, tie_phase_ranges(model, ranges), nodes_to_exclude, op_types)
    if improve_placement:
        dedicated_pair_per_reader(qmodel)  # a conv sharing its input DQ with float ops: ORT fuses it
        quantize_equal_scale_concats(qmodel)  # split deconvolutions' phases: Concat on int8
        quantize_through_data_movement(qmodel)
        if cpu_target:
            share_equal_quantize(qmodel)  # ReLU forks: one QuantizeLinear, so the ReLU is a lookup too
            relu_as_int8_lookup(qmodel)
            single_reader_conv_outputs(qmodel)
    if not quantize_outputs:
        drop_output_qdq(qmodel)
    if meta is not None:
        extra_fields = dict(meta.extra or {})
        extra_fields.update(extra_meta or {})
        attach_metadata(qmodel, meta.replace(precision="int8", extra=extra_fields))
    if lint:
        from edgepose.quant.lint import check_qdq

        check_qdq(qmodel, allow_float=set(nodes_to_exclude))
    if improve_placement and cpu_target:
        activations_as_uint8(qmodel)  # exact; lets ORT CPU fuse int8 forks (lint checks the int8 form)
        if not any(p.key == CPU_TARGET_KEY for p in qmodel.metadata_props):
            qmodel.metadata_props.add(key=CPU_TARGET_KEY, value="1")  # lint_qdq reads it
    if out_path is not None:
        with atomic_path(out_path) as tmp_path:
            onnx.save(qmodel, str(tmp_path))
    return qmodel


def _quantize_static_qdq(model, ranges: dict, nodes_to_exclude, op_types):
    """ONNX Runtime's ``quantize_static`` in QDQ format with our ranges as its calibration
    cache: symmetric INT8, per-channel weights, dedicated Q/DQ pairs, float bias."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {name: TensorData(lowest=np.array(-amax, np.float32), highest=np.array(amax, np.float32))
            for name, amax in ranges.items()}
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "DedicatedQDQPair": True,
        "QuantizeBias": False,  # float bias: TensorRT folds it; ORT still fuses QLinearConv
        "QDQOpTypePerChannelSupportToAxis": {"ConvTranspose": 1},
    }
    with tempfile.TemporaryDirectory(prefix="edgepose_q_") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(src))
        dst = Path(tmp) / "int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_static warns about pre-processing on every call
        try:
            quantize_static(
                str(src), str(dst), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                per_channel=True, reduce_range=False, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, nodes_to_exclude=list(nodes_to_exclude),
                calibrate_method=CalibrationMethod.MinMax, extra_options=extra, calibration_cache_path=str(cache))
        except Exception as exc:
            raise QuantizationError(f"ONNX Runtime's quantizer failed ({exc}); check that the model is a valid "
                                    "FP32 graph exported by `edgepose export`") from None
        finally:
            root.setLevel(level)
        return onnx.load(str(dst))


def ort_optimized_ops(model_path, disable_cse: bool = True) -> Counter:
    """Op-type counts of the graph ONNX Runtime CPU actually runs (``optimized_model_filepath``
    at the extended level, CSE disabled as the INT8 runner does)."""
    import onnx

    from edgepose.ort_session import create_session

    with tempfile.TemporaryDirectory(prefix="edgepose_ortopt_") as tmp:
        out = Path(tmp) / "optimized.onnx"
        create_session(model_path, threads=1, disable_cse=disable_cse, optimized_path=out, extended_only=True,
                       error=QuantizationError)
        optimized = onnx.load(str(out))
    return Counter(node.op_type for node in optimized.graph.node)


def fusion_summary(model_path, disable_cse: bool = True) -> dict:
    """How much of the INT8 graph ONNX Runtime CPU runs in integer arithmetic."""
    ops = ort_optimized_ops(model_path, disable_cse=disable_cse)
    qconv = ops.get("QLinearConv", 0)
    float_conv = ops.get("Conv", 0) + ops.get("FusedConv", 0) + ops.get("ConvTranspose", 0)
    return {
        "QLinearConv": qconv,
        "float_conv": float_conv,
        "QLinearAdd": ops.get("QLinearAdd", 0),
        "QLinearLeakyRelu": ops.get("QLinearLeakyRelu", 0),  # Relus run as int8 lookups (CPU builds)
        "float_relu": ops.get("Relu", 0) + ops.get("LeakyRelu", 0),
        "QuantizeLinear": ops.get("QuantizeLinear", 0),
        "DequantizeLinear": ops.get("DequantizeLinear", 0),
        "conv_fused_fraction": round(qconv / max(1, qconv + float_conv), 4),
    }
