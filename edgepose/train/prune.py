"""Structured channel pruning ("network slimming") with Torch-Pruning.

    pruner = ChannelPruner(model, example_input, ratio=0.5, reg=1e-5)   # remove 50 % of the MACs
    fit(model, data, loss, after_backward=pruner.regularize)   # L1 on BatchNorm scales
    result = pruner.prune()                                     # removes the weak channels

* ``ratio`` is the fraction of the model's MACs removed (``ratio_of="macs"``, the default):
  the Torch-Pruning channel ratio that brings the MACs to ``<= (1 - ratio) * MACs before`` is
  searched for on deep copies (a scan in steps of 0.1, then bisection to 0.002), so the
  target is an upper bound that is met, never exceeded.  ``ratio_of="channels"`` passes
  ``ratio`` to Torch-Pruning unchanged (the fraction of prunable channels removed; on
  default_pose 0.5 of the channels removes ~78 % of the MACs).

* Dependency-aware removal: Torch-Pruning's ``DependencyGraph`` couples every layer that
  shares channels (residual adds, BatchNorm, SE gates), so a removed channel disappears from
  all of them; ``BNScalePruner`` ranks channels by their BatchNorm scale and its
  ``regularize()`` adds ``reg * sign(gamma)`` to the scale gradients (Liu et al. 2017).
  ``scope="global"``: one threshold for the whole net, at most 90 % of any layer removed;
  ``scope="layer"``: the same fraction of every prunable layer.
* Kept channel counts are multiples of 8 (``round_to``), the TensorRT-friendly width.
* Output heads are never pruned: CenterNet ``hm``/``wh``/``reg`` (both convs), SimplePose
  ``final_layer``, FastPose ``conv_out`` (their input channels follow the trunk).
* Layers the library cannot follow are left out as whole groups: every group whose channels
  pass a PixelShuffle (AlphaPose DUC head: channel c of the shuffled map is channels
  4c..4c+3 before it, which Torch-Pruning would mis-map).  :attr:`PruneResult.left_out`
  names them.  Models with deformable convolutions (``centernet_resdcn18``,
  ``centernet_dla34``) are refused with a clear error: Torch-Pruning does not know the DCN
  layer and its graph tracing through our DCN implementation did not finish in minutes.

MACs and parameters come from Torch-Pruning's op counter (``count_ops_and_params``): one
multiply-accumulate = 1 MAC, batch 1 at the model's input size, convolutions, linear layers,
BatchNorm and activations included.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

from edgepose._deps import require

HEAD_NAMES = ("hm", "wh", "reg", "final_layer", "conv_out")
ROUND_TO = 8
RATIO_OF = ("macs", "channels")  # what --ratio is a fraction of
SCOPES = ("global", "layer")
SEARCH_TOLERANCE = 0.002  # width of the final channel-ratio bracket of the MAC-target bisection
MAX_LAYER_RATIO = 0.9
TORCH_PRUNING_SPEC = ">=1.6,<1.7"
log = logging.getLogger(__name__)
_HINT = "pip install 'edgepose[prune]'  (torch-pruning)"

__all__ = ["ChannelPruner", "PruneResult", "count_macs", "head_layers", "HEAD_NAMES", "ROUND_TO"]


def _tp():
    require("torch_pruning", extra=_HINT)
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    found = version("torch-pruning")
    if found not in SpecifierSet(TORCH_PRUNING_SPEC):
        from edgepose.errors import DependencyError

        raise DependencyError(f"torch-pruning {found} found, edgepose needs torch-pruning{TORCH_PRUNING_SPEC}: "
                              f"{_HINT}")
    import torch_pruning

    return torch_pruning


def _heads_sum(outputs):
    """Torch-Pruning traces from one tensor: the sum of all head outputs."""
    return sum(v.sum() for v in outputs.values()) if isinstance(outputs, dict) else outputs


def count_macs(model, example_input) -> tuple[int, int]:
    """``(MACs, parameters)`` of ``model`` on ``example_input`` (Torch-Pruning's op counter)."""
    tp = _tp()
    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), example_input)
    model.train(was_training)
    return int(macs), int(params)


def head_layers(model) -> list:
    """The conv layers of the output heads (top-level modules named in :data:`HEAD_NAMES`)."""
    torch = require("torch")
    return [m for name, m in model.named_modules()
            if name.split(".")[0] in HEAD_NAMES and isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


@dataclass
class PruneResult:
    """What :meth:`ChannelPruner.prune` removed."""

    ratio: float
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    widths_before: dict = field(default_factory=dict)
    widths_after: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)  # layer path -> reason
    heads: list = field(default_factory=list)
    ratio_of: str = "macs"
    scope: str = "global"
    channel_ratio: float = 0.0  # Torch-Pruning's pruning_ratio that was applied
    target_macs: int | None = None  # ratio_of="macs": the MAC budget, (1 - ratio) * macs_before
    channels_before: int = 0  # output channels of the prunable convolutions
    channels_after: int = 0

    @property
    def changed(self) -> dict:
        return {k: (self.widths_before[k], w) for k, w in self.widths_after.items() if self.widths_before.get(k) != w}

    @property
    def channels_removed(self) -> float:
        """Fraction of the prunable conv output channels removed (heads and left-out layers excluded)."""
        return 1.0 - self.channels_after / max(1, self.channels_before)


class ChannelPruner:
    """Network slimming on a zoo model: ``regularize`` during training, then ``prune``.

    ``ratio_of="macs"`` (default): ``ratio`` is the fraction of the model's MACs to remove; the
    channel pruning ratio that reaches ``macs <= (1 - ratio) * macs_before`` is found by
    bisection on deep copies (:meth:`channel_ratio_for_macs`).  ``ratio_of="channels"``:
    ``ratio`` is Torch-Pruning's channel pruning ratio itself.  ``scope="global"``: one
    BatchNorm-scale threshold for the whole net (at most 90 % of any layer);
    ``scope="layer"``: the same fraction removed from every prunable layer.
    """

    def __init__(self, model, example_input, ratio: float = 0.5, reg: float = 1e-5, round_to: int = ROUND_TO,
                 ratio_of: str = "macs", scope: str = "global"):
        from edgepose.errors import UsageError
        from edgepose.models.pruned import layer_widths

        if ratio_of not in RATIO_OF or scope not in SCOPES:
            raise UsageError(f"ratio_of must be one of {RATIO_OF} and scope one of {SCOPES}, got {ratio_of!r}, "
                             f"{scope!r}")
        if not 0.0 < ratio < 1.0:
            raise UsageError(f"--ratio must be between 0 and 1 (the fraction of {ratio_of} removed), got {ratio}")
        if any(type(m).__name__ == "DCN" for m in model.modules()):
            raise UsageError(f"{type(model).__name__} has deformable convolutions (DCN), which Torch-Pruning cannot "
                             "trace (it treats their weights as unknown parameters); prune a model without DCN "
                             "(default_det, centernet_res18, the AlphaPose models)")
        tp = _tp()
        self.model, self.example, self.ratio, self.reg = model, example_input, float(ratio), float(reg)
        self.round_to, self.ratio_of, self.scope = round_to, ratio_of, scope
        self.names = {m: n for n, m in model.named_modules()}
        self.heads = head_layers(model)
        if not self.heads:
            raise UsageError(f"{type(model).__name__} has no recognised output head ({', '.join(HEAD_NAMES)}); "
                             "edgepose prune works on the CenterNet and AlphaPose zoo models")
        self.widths_before = layer_widths(model)
        self.macs_before, self.params_before = count_macs(model, example_input)
        graph = tp.DependencyGraph().build_dependency(model.eval(), example_input, output_transform=_heads_sum)
        self.left_out = self._unfollowable(graph, tp)
        self._pruner = self._make_pruner(model, self.ratio if ratio_of == "channels" else 0.5)

    def _make_pruner(self, model, channel_ratio: float):
        """A ``BNScalePruner`` on ``model`` (this pruner's model or a deep copy of it)."""
        tp = _tp()
        keep = {self.names[m] for m in self.heads} | set(self.left_out)
        ignored = [m for n, m in model.named_modules() if n in keep]
        return tp.pruner.BNScalePruner(
            model, self.example, importance=tp.importance.BNScaleImportance(), reg=self.reg,
            pruning_ratio=float(channel_ratio), global_pruning=self.scope == "global",
            max_pruning_ratio=MAX_LAYER_RATIO, round_to=self.round_to, ignored_layers=ignored,
            output_transform=_heads_sum)

    def _unfollowable(self, graph, tp) -> dict:
        """Layer path -> reason, for every layer whose output channels pass a PixelShuffle."""
        torch = require("torch")
        roots = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
        left = {}
        for group in graph.get_all_groups(ignored_layers=self.heads, root_module_types=roots):
            if not any("PixelShuffle" in str(item.dep.target.grad_fn) for item in group):
                continue
            for item in group:  # the layers whose *output* channels are in this group
                module = item.dep.target.module
                if "out" not in getattr(item.dep.handler, "__name__", ""):
                    continue
                if isinstance(module, roots) and module in self.names and module not in self.heads:
                    left.setdefault(self.names[module], "its channels pass a PixelShuffle (DUC head)")
        return left

    def regularize(self, model=None):
        """Add the slimming L1 sub-gradient ``reg * sign(gamma)`` to every prunable BatchNorm scale."""
        self._pruner.regularize(model if model is not None else self.model, reg=self.reg)

    def _prunable_channels(self, model) -> int:
        """Sum of the output channels of the convolutions that may be pruned (not heads, not left out)."""
        torch = require("torch")
        keep = {self.names[m] for m in self.heads} | set(self.left_out)
        convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        return sum(m.out_channels for n, m in model.named_modules()
                   if isinstance(m, convs) and n not in keep and n.split(".")[0] not in HEAD_NAMES)

    def macs_at(self, channel_ratio: float) -> int:
        """MACs of the model pruned at Torch-Pruning ``channel_ratio`` (on a deep copy; the model is kept)."""
        trial = copy.deepcopy(self.model).eval()
        self._make_pruner(trial, channel_ratio).step()
        return count_macs(trial, self.example)[0]

    def channel_ratio_for_macs(self, target_macs: int, tolerance: float = SEARCH_TOLERANCE) -> float:
        """The smallest channel ratio whose pruned model has ``<= target_macs`` MACs.

        MACs fall step-wise with the channel ratio (widths move in multiples of 8) but not
        monotonically near the 90 % per-layer cap, so a coarse scan (steps of 0.1) finds the
        first ratio that meets the target and a bisection inside that step narrows it to
        ``tolerance``.  Raises UsageError when no ratio meets the target (heads and left-out
        layers are never pruned).
        """
        from edgepose.errors import UsageError

        lo, hi, lowest = 0.0, None, self.macs_before
        for step in range(1, int(round(MAX_LAYER_RATIO * 10)) + 1):
            macs = self.macs_at(step / 10)
            lowest = min(lowest, macs)
            if macs <= target_macs:
                hi = step / 10
                break
            lo = step / 10
        if hi is None:
            raise UsageError(f"cannot remove {100 * self.ratio:g} % of the MACs of {type(self.model).__name__}: the "
                             f"most any channel ratio removes is {100 * (1 - lowest / self.macs_before):.1f} % (the "
                             "heads and left-out layers are never pruned); pass a smaller --ratio")
        while hi - lo > tolerance:
            mid = 0.5 * (lo + hi)
            if self.macs_at(mid) <= target_macs:
                hi = mid
            else:
                lo = mid
        log.info("MAC target %.1f %% of %s: channel ratio %.4f", 100 * target_macs / self.macs_before,
                 type(self.model).__name__, hi)
        return hi

    def prune(self) -> PruneResult:
        """Remove the channels with the smallest BatchNorm scales (in place); returns what changed."""
        from edgepose.models.pruned import layer_widths

        self.model.eval()
        target = None
        channel_ratio = self.ratio
        if self.ratio_of == "macs":
            target = int((1.0 - self.ratio) * self.macs_before)
            channel_ratio = self.channel_ratio_for_macs(target)
        channels_before = self._prunable_channels(self.model)
        self._make_pruner(self.model, channel_ratio).step()
        macs, params = count_macs(self.model, self.example)
        return PruneResult(self.ratio, self.macs_before, macs, self.params_before, params, self.widths_before,
                           layer_widths(self.model), dict(self.left_out), [self.names[m] for m in self.heads],
                           ratio_of=self.ratio_of, scope=self.scope, channel_ratio=channel_ratio, target_macs=target,
                           channels_before=channels_before, channels_after=self._prunable_channels(self.model))


def distill_step_loss(task: str, teacher, alpha: float = 0.5):
    """``step_loss`` for fine-tuning with the unpruned ``teacher``: ``(1-a)·task + a·distill``.

    Pose: heatmap MSE against the ground truth and against the teacher's heatmaps (all joints
    weight 1).  Detector: the CenterNet loss plus a soft-target term: CenterNet's focal loss
    against ``max(GT heatmap, sigmoid(teacher heatmap))`` (the GT peaks stay the positives; the
    teacher's confidence lowers the penalty elsewhere) and L1 to the teacher's ``wh``/``reg``
    at the object centres.
    """
    torch = require("torch")
    from edgepose.train.losses import ctdet_loss, focal_loss, gather_at, heatmap_mse_loss, reg_l1_loss

    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def pose_step(model, batch):
        inp, target, weight = (torch.from_numpy(a) for a in batch)
        pred = model(inp)["heatmaps"]
        with torch.no_grad():
            soft = teacher(inp)["heatmaps"]
        hard_loss = heatmap_mse_loss(pred, target, weight)
        soft_loss = heatmap_mse_loss(pred, soft, torch.ones_like(weight))
        return (1 - alpha) * hard_loss + alpha * soft_loss, {"gt": hard_loss.detach(), "kd": soft_loss.detach()}

    def det_step(model, batch):
        from edgepose.train.det import det_batch_to_torch

        tb = det_batch_to_torch(batch)
        out = model(tb["input"])
        with torch.no_grad():
            soft = teacher(tb["input"])
        hard_loss, parts = ctdet_loss(out, tb)
        # teacher-softened focal target: GT peaks stay the positives, elsewhere max(GT gaussian, teacher)
        hm_kd = focal_loss(out["hm"], torch.maximum(tb["hm"].float(), torch.sigmoid(soft["hm"])))
        box_kd = sum(reg_l1_loss(out[k], tb["reg_mask"], tb["ind"], gather_at(soft[k], tb["ind"]))
                     for k in ("wh", "reg"))
        soft_loss = hm_kd + 0.1 * box_kd
        return (1 - alpha) * hard_loss + alpha * soft_loss, {**parts, "kd": soft_loss.detach()}

    return pose_step if task == "sppe" else det_step

