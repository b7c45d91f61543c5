"""The LLM-prior fusion head (docs/heads.md, "The head"), shared by the head tier and ``finetune/``.

Presets (``FusionHead(preset=...)``):

* ``submitted`` (default, the challenge-era head): E ∈ R^{C×D} (N(0,1) init, D = dim of h),
  m = qE, z = [h; m], features = f(dropout(z)) with f = Linear(2D→2D), GELU, Dropout,
  Linear(2D→D); logits = Linear(D→C)(dropout(features)).
* ``workshop`` (the later workshop code): logits = Dropout, Linear(2D→1024), GELU, Dropout,
  Linear(1024→C) applied to z = [h; m].
* ``no-prior``: logits = Linear(D→C)(dropout(h)) (no fusion).
* ``mlp``: Dropout, Linear(D→H), GELU, Dropout, Linear(H→C) on h alone (H = ``hidden`` or 512):
  the ``baseline`` recipe's classifier on frozen features (no prior).
* ``prior-only``: h is ignored; m = qE with E ∈ R^{C×H} (H = ``hidden`` or 128), then
  Dropout, Linear(H→H), GELU, Dropout, Linear(H→C).

``hidden`` overrides the width of the first hidden layer (2D for ``submitted``, 1024 for
``workshop``). Missing priors: ``missing_prior="zero"`` (the reference: q = 0, so m = 0) or
``"learned"`` (a learned vector, N(0,1) init, replaces qE for clips whose prior is missing).

Every module is a plain ``nn.Sequential`` of Dropout / Linear / GELU after the prior
embedding, so :mod:`heads.stacked` can run K heads at once with batched matmuls.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cache.taxonomy import NUM_CLASSES

PRESETS = ("submitted", "workshop", "no-prior", "prior-only", "mlp")
MISSING_PRIOR = ("zero", "learned")
PRIOR_ONLY_DIM = 128
WORKSHOP_HIDDEN = 1024
MLP_HIDDEN = 512


class FusionHead(nn.Module):
    """Classifier head on a clip representation ``h`` (B, D) and an LLM class prior ``q`` (B, C)."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int = NUM_CLASSES,
        preset: str = "submitted",
        dropout: float = 0.1,
        missing_prior: str = "zero",
        hidden: int | None = None,
    ):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown head preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if missing_prior not in MISSING_PRIOR:
            raise ValueError(f"missing_prior must be one of {MISSING_PRIOR}, got {missing_prior!r}")
        if preset != "prior-only" and in_dim <= 0:
            raise ValueError(f"preset {preset!r} needs in_dim > 0, got {in_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim = int(in_dim)
        self.num_classes = int(num_classes)
        self.preset = preset
        self.dropout = float(dropout)
        self.missing_prior = missing_prior
        self.hidden = hidden
        D, C = self.in_dim, self.num_classes
        self.uses_prior = preset not in ("no-prior", "mlp")
        self.uses_h = preset != "prior-only"
        self.prior_dim = (hidden or PRIOR_ONLY_DIM) if preset == "prior-only" else D
        if self.uses_prior:
            self.prior_embedding = nn.Parameter(torch.randn(C, self.prior_dim))
            self.missing_embedding = (
                nn.Parameter(torch.randn(self.prior_dim)) if missing_prior == "learned" else None
            )
        else:
            self.prior_embedding = None
            self.missing_embedding = None
        p = self.dropout
        if preset == "submitted":
            H = hidden or 2 * D
            layers = [
                nn.Dropout(p),
                nn.Linear(2 * D, H),
                nn.GELU(),
                nn.Dropout(p),
                nn.Linear(H, D),
                nn.Dropout(p),
                nn.Linear(D, C),
            ]
        elif preset == "workshop":
            H = hidden or WORKSHOP_HIDDEN
            layers = [nn.Dropout(p), nn.Linear(2 * D, H), nn.GELU(), nn.Dropout(p), nn.Linear(H, C)]
        elif preset == "no-prior":
            layers = [nn.Dropout(p), nn.Linear(D, C)]
        elif preset == "mlp":
            H = hidden or MLP_HIDDEN
            layers = [nn.Dropout(p), nn.Linear(D, H), nn.GELU(), nn.Dropout(p), nn.Linear(H, C)]
        else:  # prior-only
            H = self.prior_dim
            layers = [nn.Dropout(p), nn.Linear(H, H), nn.GELU(), nn.Dropout(p), nn.Linear(H, C)]
        self.body = nn.Sequential(*layers)

    # ------------------------------------------------------------------ forward
    def prior_representation(self, prior: Tensor | None, prior_missing: Tensor | None, batch: int) -> Tensor:
        """m = qE (B, prior_dim), with missing priors handled per ``missing_prior``."""
        if prior is None:
            raise ValueError(
                f"head preset {self.preset!r} fuses an LLM prior: pass prior (B, {self.num_classes})"
            )
        if prior.shape != (batch, self.num_classes):
            raise ValueError(f"prior has shape {tuple(prior.shape)}, expected ({batch}, {self.num_classes})")
        E = self.prior_embedding
        q = prior.to(E.dtype)
        if prior_missing is not None:
            miss = prior_missing.to(torch.bool).reshape(batch, 1)
            q = q.masked_fill(miss, 0.0)
        m = q @ E
        if self.missing_embedding is not None and prior_missing is not None:
            m = torch.where(miss, self.missing_embedding.expand_as(m), m)
        return m

    def forward(
        self, h: Tensor | None, prior: Tensor | None = None, prior_missing: Tensor | None = None
    ) -> Tensor:
        """Logits (B, C) from h (B, D), prior (B, C) and prior_missing (B,) bool."""
        if self.uses_h:
            if h is None or h.dim() != 2 or h.shape[1] != self.in_dim:
                raise ValueError(
                    f"h must have shape (B, {self.in_dim}), got {None if h is None else tuple(h.shape)}"
                )
            batch = h.shape[0]
        else:
            batch = prior.shape[0] if prior is not None else (h.shape[0] if h is not None else 0)
        if self.uses_prior:
            m = self.prior_representation(prior, prior_missing, batch)
            z = torch.cat([h, m], dim=1) if self.uses_h else m
        else:
            z = h
        return self.body(z)

    def n_parameters(self) -> int:
        """Number of trainable parameters (prior embedding and missing vector included)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the module from a state dict."""
        return {
            "in_dim": self.in_dim,
            "num_classes": self.num_classes,
            "preset": self.preset,
            "dropout": self.dropout,
            "missing_prior": self.missing_prior,
            "hidden": self.hidden,
        }

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, in_dim={self.in_dim}, missing_prior={self.missing_prior!r}"
