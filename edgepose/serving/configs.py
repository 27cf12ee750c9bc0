"""``config.pbtxt`` text for the models of an edgepose Triton repository.

Plain text in Triton's protobuf text format (``ModelConfig``); the tests parse every file
with tritonclient's ``model_config_pb2`` so a typo cannot reach a server.  No Triton import.

A :class:`IOSpec` is one tensor: name, Triton data type (``TYPE_FP32`` ...) and dims
*without* the batch axis when the model batches (``max_batch_size > 0``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.errors import UsageError

#: numpy dtype name -> Triton data type
TRITON_DTYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL",
}
#: how ``export-triton --backend`` runs the two networks
BACKENDS = ("python", "onnxruntime", "tensorrt")
#: entry model I/O (the contract with clients; docs/triton.md)
ENTRY_MODEL = "edgepose"


@dataclass(frozen=True)
class IOSpec:
    name: str
    data_type: str
    dims: tuple

    @classmethod
    def of(cls, name, dtype, dims):
        key = np.dtype(dtype).name
        if key not in TRITON_DTYPES:
            raise UsageError(f"tensor {name!r} has dtype {key}, which Triton configs here do not map; "
                             "export the model with float32/float16 I/O")
        return cls(str(name), TRITON_DTYPES[key], tuple(-1 if d is None else int(d) for d in dims))

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        return f'  {{ name: "{self.name}" data_type: {self.data_type} dims: [ {dims} ] }}'


def _io_block(key, specs):
    return f"{key} [\n" + ",\n".join(s.pbtxt() for s in specs) + "\n]\n"


def model_config(name: str, inputs, outputs, backend: str, max_batch_size: int = 0,
                 instances: int = 1, queue_delay_us: int | None = None, parameters: dict | None = None,
                 kind: str = "KIND_CPU") -> str:
    """One ``config.pbtxt``.  ``backend``: ``python``, ``onnxruntime`` or ``tensorrt``
    (written as ``platform: "tensorrt_plan"``).  ``queue_delay_us`` turns on dynamic batching;
    ``kind``: ``KIND_CPU`` or ``KIND_GPU`` instances."""
    head = [f'name: "{name}"']
    if backend == "python":
        head.append('backend: "python"')
    elif backend == "onnxruntime":
        head += ['platform: "onnxruntime_onnx"', 'backend: "onnxruntime"']
    elif backend == "tensorrt":
        head.append('platform: "tensorrt_plan"')
    else:
        raise UsageError(f"unknown Triton backend {backend!r}; use one of {BACKENDS}")
    head.append(f"max_batch_size: {int(max_batch_size)}")
    text = "\n".join(head) + "\n" + _io_block("input", inputs) + _io_block("output", outputs)
    if kind not in ("KIND_CPU", "KIND_GPU"):
        raise UsageError(f"instance kind must be KIND_CPU or KIND_GPU, got {kind!r}")
    text += f"instance_group [ {{ count: {int(instances)} kind: {kind} }} ]\n"
    if queue_delay_us is not None:
        text += f"dynamic_batching {{ max_queue_delay_microseconds: {int(queue_delay_us)} }}\n"
    for key, value in (parameters or {}).items():
        text += f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
    return text


def entry_config(num_joints: int, instances: int) -> str:
    """The ``edgepose`` model: one BGR frame in, people out (see docs/triton.md)."""
    inputs = [IOSpec("IMAGE", "TYPE_UINT8", (-1, -1, 3))]
    outputs = [IOSpec("BOXES", "TYPE_FP32", (-1, 4)), IOSpec("BOX_SCORES", "TYPE_FP32", (-1,)),
               IOSpec("KEYPOINTS", "TYPE_FP32", (-1, int(num_joints), 3))]
    return model_config(ENTRY_MODEL, inputs, outputs, "python", 0, instances)


def crop_config(pose_input: IOSpec) -> str:
    """``crop``: frame + boxes -> the pose model's input batch and the enlarged crop boxes."""
    inputs = [IOSpec("IMAGE", "TYPE_UINT8", (-1, -1, 3)), IOSpec("BOXES", "TYPE_FP32", (-1, 4))]
    outputs = [IOSpec("CROPS", pose_input.data_type, (-1,) + tuple(pose_input.dims)),
               IOSpec("CROP_BOXES", "TYPE_FP32", (-1, 4))]
    return model_config("crop", inputs, outputs, "python", 0, 1)


def decode_config(pose_outputs, num_joints: int) -> str:
    """``decode``: the pose model's outputs + crop boxes -> ``KEYPOINTS [N, J, 3]`` (x, y, score)."""
    inputs = [IOSpec(s.name, s.data_type, (-1,) + tuple(s.dims)) for s in pose_outputs]
    inputs.append(IOSpec("CROP_BOXES", "TYPE_FP32", (-1, 4)))
    outputs = [IOSpec("KEYPOINTS", "TYPE_FP32", (-1, int(num_joints), 3))]
    return model_config("decode", inputs, outputs, "python", 0, 1)
