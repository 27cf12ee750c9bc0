"""Model zoo: ``create(name, **kw) -> torch.nn.Module`` and ``list_models()``.

The registry itself imports nothing heavy; each entry names its builder as
``"module:function"`` and torch is imported only when a model is created.  Every module's
``state_dict()`` equals the official layout (see the manifests in ``tests/data/reference``), and
``forward(x)`` returns a dict of raw head tensors named like the official heads.
:func:`load_checkpoint` / :func:`save_checkpoint` (from :mod:`edgepose.models.checkpoint`)
read and write the official checkpoint files.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from edgepose.errors import UsageError
from edgepose.metadata import ModelMeta
from edgepose.tasks import model_meta_fields, task_spec


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str  # ctdet | sppe | cornernet
    builder: str  # "edgepose.models.module:function"
    input_size: tuple  # default (H, W)
    checkpoint_format: str  # centernet | alphapose | cornernet
    manifest: str | None = None  # file name in tests/data/reference
    defaults: dict = field(default_factory=dict)
    description: str = ""

    def meta(self, **overrides) -> ModelMeta:
        """Runtime metadata for this model (normalisation, heads, keypoints) from the task table."""
        kw = {**self.defaults, **overrides}
        count_field = task_spec(self.task).count_field
        fields = model_meta_fields(self.task, kw.get(count_field))
        return ModelMeta(model=self.name, task=self.task, input_size=tuple(kw.get("input_size", self.input_size)),
                         **fields)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None


def create(name: str, **kw):
    """Build zoo model ``name`` (random init). ``kw`` go to the builder (e.g. num_classes)."""
    spec = get_spec(name)
    module_name, func_name = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    args = {k: v for k, v in {**spec.defaults, **kw}.items() if k != "input_size"}
    model = builder(**args)
    model.edgepose_spec = spec
    model.edgepose_kwargs = args
    return model


for _spec in (
    ModelSpec("centernet_res18", "ctdet", "edgepose.models.centernet_resnet:centernet_res18", (512, 512),
              "centernet", "centernet_ctdet_res18.json", description="CenterNet ctdet ResNet-18 (msra, no DCN)"),
    ModelSpec("centernet_resdcn18", "ctdet", "edgepose.models.centernet_resnet:centernet_resdcn18", (512, 512),
              "centernet", "centernet_ctdet_resdcn18.json", description="CenterNet ctdet ResNet-18 + DCNv2 (28.1 AP)"),
    ModelSpec("centernet_dla34", "ctdet", "edgepose.models.centernet_dla:centernet_dla34", (512, 512),
              "centernet", "centernet_ctdet_dla34.json", description="CenterNet ctdet DLA-34 (37.4 AP)"),
    ModelSpec("fastpose_res50", "sppe", "edgepose.models.alphapose:fastpose_res50", (256, 192),
              "alphapose", "alphapose_fastpose_res50_256x192.json", description="AlphaPose FastPose SE-ResNet-50"),
    ModelSpec("simplepose_res50", "sppe", "edgepose.models.alphapose:simplepose_res50", (256, 192),
              "alphapose", "alphapose_simplepose_res50_256x192.json", description="AlphaPose SimplePose ResNet-50"),
    ModelSpec("cornernet_squeeze", "cornernet", "edgepose.models.cornernet_squeeze:cornernet_squeeze", (511, 511),
              "cornernet", "cornernet_squeeze.json", description="CornerNet-Squeeze (CornerNet-Lite)"),
):
    register(_spec)

# built-in defaults, trained on the synthetic people set (recipes/train_defaults.sh)
register(ModelSpec("default_det", "ctdet", "edgepose.models.defaults:default_det", (256, 256), "centernet",
                   None, defaults={"num_classes": 1},
                   description="default person detector: slim CenterNet ResNet-18, 256x256, person only"))
register(ModelSpec("default_pose", "sppe", "edgepose.models.defaults:default_pose", (128, 96), "alphapose",
                   None, defaults={"num_joints": 17},
                   description="default pose model: slim SimplePose ResNet-18, 128x96, 17 COCO joints"))

# checkpoint I/O next to the zoo (`from edgepose.models import create, load_checkpoint`); torch stays lazy
from edgepose.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402,F401
