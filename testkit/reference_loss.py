"""The head trainer's loss in plain autograd form: the reference that tests and GPU checks
compare the hand-written gradients of :meth:`heads.stacked.StackedHeads.loss_and_grads` with."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def per_config_loss(logits: Tensor, y: Tensor, weights: Tensor | None, lam: Tensor,
                     pseudo: Tensor | None, has_pseudo: Tensor | None) -> Tensor:
    """(K,) losses (1 − λ_k)·weighted CE + λ_k·soft CE for logits (K, B, C), in autograd form
    (the reference for the hand-written gradients of :meth:`StackedHeads.loss_and_grads`)."""
    K, B, C = logits.shape
    logp = F.log_softmax(logits, dim=-1)
    valid = y >= 0
    yc = y.clamp(min=0)
    nll = -logp.gather(-1, yc.unsqueeze(-1)).squeeze(-1)  # (K, B)
    w = (weights[yc] if weights is not None else torch.ones_like(nll)) * valid.to(nll.dtype)
    ce = (w * nll).sum(1) / w.sum(1).clamp(min=1e-12)
    if pseudo is None:
        return ce
    m = has_pseudo.to(nll.dtype)
    soft = -(pseudo * logp).sum(-1)
    sce = (soft * m).sum(1) / m.sum(1).clamp(min=1.0)
    zero = torch.zeros_like(ce)
    return torch.where(lam < 1, (1 - lam) * ce, zero) + torch.where(lam > 0, lam * sce, zero)
