"""The reference loss (docs/heads.md, "The recipe and its defaults"), in two forms.

* class-frequency weights w_c = N / (C · n_c) on the training labels (0 for absent classes),
* weighted-mean cross-entropy on hard labels: Σ_i w_{y_i} CE_i / Σ_i w_{y_i} over the items that
  have a label (label −1 = none),
* unweighted soft cross-entropy to pseudo-label distributions, averaged over the items that
  have one,
* L = (1 − λ)·CE + λ·softCE.

:func:`mixed_loss` states it on one batch (autograd; the fine-tune tier builds its distributed
form from :func:`weighted_ce` and :func:`soft_ce`). The stacked trainer uses the fused form:
per-item targets T (:func:`item_weights`, :func:`loss_targets`) with L = −Σ_i Σ_c T_ic log p_ic,
whose gradient with respect to the logits is p_i Σ_c T_ic − T_i (tested against :func:`mixed_loss`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cache.taxonomy import NUM_CLASSES


def class_frequency_weights(labels, num_classes: int = NUM_CLASSES) -> Tensor:
    """(C,) float32 weights w_c = N / (C · n_c); classes absent from ``labels`` get 0.

    C is ``num_classes`` (the number of classes of the task, as in the reference code).
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if y.numel() == 0:
        raise ValueError("class_frequency_weights: no labels")
    if (y < 0).any() or (y >= num_classes).any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1} (drop non-target rows first)")
    counts = torch.bincount(y, minlength=num_classes).to(torch.float64)
    w = torch.where(counts > 0, y.numel() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return w.to(torch.float32)


def weighted_ce(logits: Tensor, labels: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted-mean cross-entropy (``F.cross_entropy(weight=...)``); plain mean when weights is None.
    Items labelled −1 (no hard label) are left out."""
    return F.cross_entropy(
        logits, labels, weight=None if weights is None else weights.to(logits.dtype), ignore_index=-1
    )


def soft_ce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over items with ``mask`` True of −Σ_c t_c log softmax(logits)_c; 0 when no item has one."""
    per_item = -(targets.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1)
    if mask is None:
        return per_item.mean()
    m = mask.to(logits.dtype)
    return (per_item * m).sum() / m.sum().clamp(min=1.0)


def mixed_loss(
    logits: Tensor,
    labels: Tensor,
    weights: Tensor | None,
    pseudo: Tensor | None = None,
    has_pseudo: Tensor | None = None,
    lam: float = 0.0,
) -> Tensor:
    """(1 − λ)·weighted CE(labels) + λ·soft CE(pseudo); with λ = 0 or no pseudo-labels, the CE alone;
    with λ = 1 the soft CE alone (the hard labels are not used)."""
    if pseudo is None or lam == 0.0:
        if lam != 0.0:
            raise ValueError("mixed_loss: λ > 0 needs pseudo-labels")
        return weighted_ce(logits, labels, weights)
    if lam == 1.0:
        return soft_ce(logits, pseudo, has_pseudo)
    return (1.0 - lam) * weighted_ce(logits, labels, weights) + lam * soft_ce(logits, pseudo, has_pseudo)


def item_weights(labels: Tensor, class_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """(labels clamped to ≥ 0, per-item CE weights w_{y_i}): 1 without class weights, 0 for items
    labelled −1 (they count only through a pseudo-label)."""
    valid = labels >= 0
    y = labels.clamp(min=0)
    w = class_weights[y] if class_weights is not None else torch.ones(y.shape, device=labels.device)
    return y, w * valid.to(w.dtype)


def loss_targets(
    y: Tensor,
    w: Tensor,
    lam: Tensor,
    pseudo: Tensor | None,
    has_pseudo: Tensor | None,
    batch: int,
    num_classes: int,
) -> tuple[Tensor, Tensor]:
    """Per-item loss targets of consecutive batches of ``batch`` items (the last may be short).

    For item i of a batch with weights w (0 for items without a label) and pseudo-label flags m,
    T_i = a_i onehot(y_i) + b_i pseudo_i with a_i = (1 − λ) w_i / Σ_batch w and
    b_i = λ m_i / max(Σ_batch m, 1), so the batch loss (1 − λ)·weighted CE + λ·soft CE is
    −Σ_i Σ_c T_ic log p_ic. Returns T (K, n, C) and s = Σ_c T (K, n). Inputs are (K, n[, C]);
    ``y``, ``w`` from :func:`item_weights`, ``lam`` (K,) one λ per configuration.
    """
    K, n = y.shape
    nb = -(-n // batch)
    pad = nb * batch - n

    def per_batch_sum(v: Tensor) -> Tensor:  # (K, n) -> (K, n): each item gets its batch's sum
        vp = F.pad(v, (0, pad)) if pad else v
        return vp.view(K, nb, batch).sum(-1).repeat_interleave(batch, dim=1)[:, :n]

    lam_ = lam.view(-1, 1).to(w.dtype)
    a = w * ((1 - lam_) / per_batch_sum(w).clamp(min=1e-12))
    T = torch.zeros(K, n, num_classes, dtype=w.dtype, device=w.device)
    T.scatter_(-1, y.unsqueeze(-1), a.unsqueeze(-1))
    s = a
    if pseudo is not None and has_pseudo is not None:
        b = has_pseudo * (lam_ / per_batch_sum(has_pseudo).clamp(min=1.0))
        T.add_(pseudo * b.unsqueeze(-1))
        s = a + b * pseudo.sum(-1)
    return T, s
