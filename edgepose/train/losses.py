"""Training losses (CenterNet and top-down SPPE), written from the papers' definitions.

* :func:`focal_loss` -- CenterNet's penalty-reduced pixel-wise focal loss (alpha=2, beta=4)
  on sigmoid heatmaps, normalised by the number of objects.
* :func:`reg_l1_loss` -- L1 on ``wh`` / ``reg`` gathered at the object centre indices,
  normalised by the number of valid entries (CenterNet ``RegL1Loss``).
* :func:`ctdet_loss` -- the weighted sum ``hm + 0.1 * wh + 1 * reg`` (official weights).
* :func:`heatmap_mse_loss` -- AlphaPose/SimpleBaseline joint heatmap MSE with per-joint
  target weights from visibility.
"""
from __future__ import annotations

from edgepose._deps import require

torch = require("torch")


def focal_loss(pred_logits, target, eps: float = 1e-4):
    """Penalty-reduced focal loss.  ``pred_logits``, ``target``: (N, C, H, W).

    Positives are the pixels where the target is exactly 1 (the gaussian peaks); negatives are
    down-weighted by ``(1 - target)^4`` near a peak.  The sum is divided by the number of
    positives (or is the negative term alone when there are none).
    """
    pred = torch.sigmoid(pred_logits.float()).clamp(eps, 1.0 - eps)
    target = target.float()
    pos = target.eq(1).float()
    neg = 1.0 - pos
    neg_weights = torch.pow(1.0 - target, 4)
    pos_loss = (torch.log(pred) * torch.pow(1.0 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1.0 - pred) * torch.pow(pred, 2) * neg_weights * neg).sum()
    num_pos = pos.sum()
    if num_pos.item() == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def gather_at(feat, ind):
    """``feat`` (N, C, H, W), ``ind`` (N, K) flat indices y*W+x -> (N, K, C)."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1).permute(0, 2, 1)
    return flat.gather(1, ind.long().unsqueeze(2).expand(-1, -1, c))


def reg_l1_loss(output, mask, ind, target):
    """L1 between ``output`` gathered at ``ind`` and ``target`` (N, K, 2) where ``mask`` is 1."""
    pred = gather_at(output, ind)
    m = mask.float().unsqueeze(2).expand_as(pred)
    loss = torch.nn.functional.l1_loss(pred * m, target * m, reduction="sum")
    return loss / (m.sum() + 1e-4)


def ctdet_loss(outputs, batch, wh_weight: float = 0.1, off_weight: float = 1.0):
    """CenterNet ctdet loss; returns ``(total, {"hm", "wh", "off"})`` (tensors)."""
    hm = focal_loss(outputs["hm"], batch["hm"])
    wh = reg_l1_loss(outputs["wh"], batch["reg_mask"], batch["ind"], batch["wh"])
    off = reg_l1_loss(outputs["reg"], batch["reg_mask"], batch["ind"], batch["reg"])
    total = hm + wh_weight * wh + off_weight * off
    return total, {"hm": hm.detach(), "wh": wh.detach(), "off": off.detach()}


def heatmap_mse_loss(pred, target, target_weight):
    """Mean over joints of ``0.5 * MSE(pred_j * w_j, target_j * w_j)``.

    ``pred``/``target``: (N, J, H, W); ``target_weight``: (N, J) or (N, J, 1).
    """
    n, j = pred.shape[:2]
    w = target_weight.reshape(n, j, 1).float()
    p = pred.reshape(n, j, -1).float() * w
    t = target.reshape(n, j, -1).float() * w
    return 0.5 * torch.nn.functional.mse_loss(p, t)
