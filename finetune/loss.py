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
    host_weights: Tensor | None = None,
) -> Tensor:
    """This micro-batch's share of its global batch's loss L = (1−λ)·CE + λ·softCE.

    ``valid`` marks real items (dummy items of an empty micro-batch contribute nothing but keep
    every parameter in the graph). ``ce_norm``/``soft_norm`` come from :func:`batch_normalisers`
    on the whole global batch. ``labels``, ``valid`` and ``has_pseudo`` are read on the host
    (pass the batch's CPU tensors; ``host_weights`` = ``class_weights`` on the CPU): the masks,
    row indices and guards are computed there, so on a GPU the loss queues no device→host
    synchronisation; the values equal those of boolean-mask indexing on the device.
    """
    device = logits.device
    labels, valid, has_pseudo = labels.cpu(), valid.cpu(), has_pseudo.cpu()
    if host_weights is None:
        host_weights = class_weights.cpu()
    logits = logits.float()
    total = logits.sum() * 0.0
    labelled = valid & (labels >= 0)
    if lam < 1.0 and ce_norm > 0 and bool(labelled.any()):
        rows = labelled.nonzero().squeeze(1)
        local = host_weights[labels[rows]].sum()
        if float(local) > 0:
            rows_d, y = rows.to(device, non_blocking=True), labels[rows].to(device, non_blocking=True)
            share = (local / ce_norm).to(device, non_blocking=True)
            total = total + (1.0 - lam) * weighted_ce(logits[rows_d], y, class_weights) * share
    if lam > 0.0 and pseudo is not None and soft_norm > 0:
        m = valid & has_pseudo
        if bool(m.any()):
            rows_d = m.nonzero().squeeze(1).to(device, non_blocking=True)
            share = m.sum().to(logits.dtype) / soft_norm  # a host scalar, as the device computed it before
            total = total + lam * soft_ce(logits[rows_d], pseudo[rows_d]) * share.to(
                device, non_blocking=True
            )
    return total
