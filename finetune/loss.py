"""The reference loss split exactly across ranks and accumulation steps.

``heads.losses.mixed_loss`` on a global batch is (1−λ)·Σ w_y·CE / Σ w_y + λ·Σ softCE / n_pseudo.
A micro-batch holding part of that batch contributes its local weighted mean times
(local normaliser / global normaliser); the contributions of all micro-batches sum to the
global batch's loss, so training with any number of processes and accumulation steps
optimises the same objective as one process with the whole batch (DDP averages gradients
over ranks, hence the trainer multiplies by the number of processes).
"""
from __future__ import annotations

from torch import Tensor

from heads.losses import soft_ce, weighted_ce


def batch_normalisers(labels: Tensor, has_pseudo: Tensor, class_weights: Tensor) -> tuple[float, float]:
    """(Σ w_y over labelled items, number of items with a pseudo-label) of a whole global batch."""
    lab = labels >= 0
    ce = float(class_weights[labels[lab]].sum()) if lab.any() else 0.0
    return ce, float(has_pseudo.sum())


def partial_loss(logits: Tensor, labels: Tensor, valid: Tensor, pseudo: Tensor | None, has_pseudo: Tensor,
                 class_weights: Tensor, ce_norm: float, soft_norm: float, lam: float) -> Tensor:
    """This micro-batch's share of its global batch's loss L = (1−λ)·CE + λ·softCE.

    ``valid`` marks real items (dummy items of an empty micro-batch contribute nothing but keep
    every parameter in the graph). ``ce_norm``/``soft_norm`` come from :func:`batch_normalisers`
    on the whole global batch.
    """
    logits = logits.float()
    total = logits.sum() * 0.0
    labelled = valid & (labels >= 0)
    if lam < 1.0 and ce_norm > 0 and bool(labelled.any()):
        local = class_weights[labels[labelled]].sum()
        if float(local) > 0:
            total = total + (1.0 - lam) * weighted_ce(logits[labelled], labels[labelled], class_weights) * (local / ce_norm)
    if lam > 0.0 and pseudo is not None and soft_norm > 0:
        m = valid & has_pseudo
        if bool(m.any()):
            total = total + lam * soft_ce(logits[m], pseudo[m]) * (m.sum().to(logits.dtype) / soft_norm)
    return total
