"""Losses of the reference recipe (TASK.md §6).

* class-frequency weights w_c = N / (C · n_c) on the training labels (0 for absent classes),
* weighted-mean cross-entropy on hard labels: Σ_i w_{y_i} CE_i / Σ_i w_{y_i},
* unweighted soft cross-entropy to pseudo-label distributions, averaged over the items that
  have one,
* L = (1 − λ)·CE + λ·softCE.
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
    """Weighted-mean cross-entropy (``F.cross_entropy(weight=...)``); plain mean when weights is None."""
    return F.cross_entropy(logits, labels, weight=None if weights is None else weights.to(logits.dtype))


def soft_ce(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over items with ``mask`` True of −Σ_c t_c log softmax(logits)_c; 0 when no item has one."""
    per_item = -(targets.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(-1)
    if mask is None:
        return per_item.mean()
    m = mask.to(logits.dtype)
    return (per_item * m).sum() / m.sum().clamp(min=1.0)


def mixed_loss(logits: Tensor, labels: Tensor, weights: Tensor | None, pseudo: Tensor | None = None,
               has_pseudo: Tensor | None = None, lam: float = 0.0) -> Tensor:
    """(1 − λ)·weighted CE(labels) + λ·soft CE(pseudo); with λ = 0 or no pseudo-labels, the CE alone."""
    ce = weighted_ce(logits, labels, weights)
    if pseudo is None or lam == 0.0:
        if lam != 0.0:
            raise ValueError("mixed_loss: λ > 0 needs pseudo-labels")
        return ce
    return (1.0 - lam) * ce + lam * soft_ce(logits, pseudo, has_pseudo)
