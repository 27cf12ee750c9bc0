"""The metadata an edgepose ONNX file (and engine manifest) carries about itself.

Stored as ONNX ``metadata_props``: key ``"edgepose"`` holds the JSON of :class:`ModelMeta`;
a few flat keys (``edgepose.model``, ``edgepose.task``, ...) are added for humans and for
tools like Netron.  Reading needs only the ``onnx`` package -- never torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from edgepose.errors import MetadataError

META_KEY = "edgepose"
SCHEMA = 1

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# CenterNet / CornerNet BGR statistics (exact values used by the official test.py)
COCO_MEAN_BGR = (0.40789654, 0.44719302, 0.47026115)
COCO_STD_BGR = (0.28863828, 0.27408164, 0.27809835)
# AlphaPose: subtract per RGB channel after /255, no std
ALPHAPOSE_MEAN_RGB = (0.406, 0.457, 0.480)

TASKS = ("ctdet", "sppe", "cornernet")


@dataclass
class ModelMeta:
    """Everything the runtime needs to feed a model and read its outputs.

    ``task``: ``ctdet`` (CenterNet detector), ``sppe`` (top-down pose), ``cornernet``.
    ``input_size``: (H, W) the network was exported for.  ``scale``/``mean``/``std`` apply as
    ``(pixel * scale - mean) / std`` per channel in ``channel_order``.
    ``heads``: name -> {"channels", "stride", "activation"} of the raw heads.
    ``decode``: None (raw heads) or the in-graph decoder name ("ctdet_topk", "sppe_argmax", ...)
    """

    model: str
    task: str
    input_size: tuple = (512, 512)
    input_name: str = "input"
    output_names: list = field(default_factory=list)
    batch: int | None = 1  # None = dynamic
    channel_order: str = "BGR"
    scale: float = 1.0 / 255.0
    mean: tuple = COCO_MEAN_BGR
    std: tuple = (1.0, 1.0, 1.0)
    heads: dict = field(default_factory=dict)
    num_classes: int = 80
    person_class: int = 0
    keypoint_names: tuple = ()
    flip_pairs: tuple = ()
    decode: str | None = None
    decode_k: int | None = None
    precision: str = "fp32"
    opset: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise MetadataError(f"unknown task {self.task!r}; expected one of {TASKS}")
        self.input_size = tuple(int(v) for v in self.input_size)
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise MetadataError(f"input_size must be (H, W) with both sides > 0, got {self.input_size}; "
                                "pass an input size such as 512x512")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.keypoint_names = tuple(self.keypoint_names)
        self.flip_pairs = tuple(tuple(p) for p in self.flip_pairs)

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMeta":
        data = json.loads(text)
        schema = data.pop("schema", SCHEMA)
        if schema > SCHEMA:
            raise MetadataError(f"metadata schema {schema} is newer than this edgepose understands; upgrade edgepose")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes) -> "ModelMeta":
        data = asdict(self)
        data.update(changes)
        return ModelMeta(**data)


def attach_metadata(model_proto, meta: ModelMeta):
    """Write ``meta`` into an ``onnx.ModelProto`` (in place) and return it."""
    keep = [p for p in model_proto.metadata_props if not p.key.startswith(META_KEY)]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(keep)
    flat = {
        META_KEY: meta.to_json(),
        f"{META_KEY}.model": meta.model,
        f"{META_KEY}.task": meta.task,
        f"{META_KEY}.precision": meta.precision,
        f"{META_KEY}.input_size": "x".join(map(str, meta.input_size)),
    }
    for key, value in flat.items():
        prop = model_proto.metadata_props.add()
        prop.key, prop.value = key, value
    return model_proto


def metadata_from_proto(model_proto, source: str = "model") -> ModelMeta:
    for prop in model_proto.metadata_props:
        if prop.key == META_KEY:
            return ModelMeta.from_json(prop.value)
    raise MetadataError(
        f"{source} has no edgepose metadata. Re-export it with `edgepose export`, "
        "or pass --input-size/--mean/--std so edgepose knows how to feed it"
    )


def read_metadata(onnx_path: str) -> ModelMeta:
    """Read the metadata of an ONNX file without loading its weights into memory."""
    from edgepose.onnx_graph import load_model

    proto = load_model(onnx_path, load_external_data=False, error=MetadataError)
    return metadata_from_proto(proto, source=str(onnx_path))
