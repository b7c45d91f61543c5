"""The reference loss split exactly across ranks and accumulation steps.

``heads.losses.mixed_loss`` on a global batch is (1−λ)·Σ w_y·CE / Σ w_y + λ·Σ softCE / n_pseudo.
A micro-batch holding part of that batch contributes its local weighted mean times
(local normaliser / global normaliser); the contributions of all micro-batches sum to the
global batch's loss, so training with any number of processes and accumulation steps
optimises the same objective as one process with the whole batch (DDP averages gradients
over ranks, hence the trainer multiplies by the number of processes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from heads.losses import soft_ce


def batch_normalisers(labels: Tensor, has_pseudo: Tensor, class_weights: Tensor) -> tuple[float, float]:
    """(Σ w_y over labelled items, number of items with a pseudo-label) of a whole global batch."""
    lab = labels >= 0
    ce = float(class_weights[labels[lab]].sum()) if lab.any() else 0.0
    return ce, float(has_pseudo.sum())


def partial_loss(
    logits: Tensor,
    labels: Tensor,
    valid: Tensor,
    pseudo: Tensor | None,
    has_pseudo: Tensor,
    class_weights: Tensor,
    ce_norm: float,
    soft_norm: float,
    lam: float,
) -> Tensor:
    """This micro-batch's share of its global batch's loss L = (1−λ)·CE + λ·softCE.

    ``valid`` marks real items (dummy items of an empty micro-batch contribute nothing but keep
    every parameter in the graph). ``ce_norm``/``soft_norm`` come from :func:`batch_normalisers`
    on the whole global batch, so the share is (1−λ)·Σ w_y·CE / ce_norm + λ·Σ softCE / soft_norm
    over this micro-batch's labelled / pseudo-labelled items. Items are selected by masks, not
    by indexing: with the batch on the device the loss reads no device value and copies nothing
    to the device, so on a GPU a step never waits for the host.
    """
    device = logits.device
    logits = logits.float()
    total = logits.sum() * 0.0
    valid = valid.to(device, non_blocking=True)
    if lam < 1.0 and ce_norm > 0:
        y = torch.where(valid, labels.to(device, non_blocking=True), -1)  # −1: no hard label
        per_item = F.cross_entropy(
            logits, y, weight=class_weights.to(logits.dtype), ignore_index=-1, reduction="none"
        )
        total = total + per_item.sum() * ((1.0 - lam) / ce_norm)
    if lam > 0.0 and pseudo is not None and soft_norm > 0:
        m = valid & has_pseudo.to(device, non_blocking=True)
        targets = torch.where(m.unsqueeze(1), pseudo.to(logits.dtype), 0.0)  # items without one: 0
        total = total + soft_ce(logits, targets) * (len(logits) * lam / soft_norm)
    return total
