"""The official baseline's network, loss and augmentation (``python -m heads baseline``), written
from its description (docs/parity.md, "Heads and recipe"):

* one encoder per modality (shipped CLAP audio and text, 512-d each): BatchNorm on the input,
  Linear → LeakyReLU → Dropout to a width W = max(d_in, 2·H), three residual blocks
  (W → 2W → W with BatchNorm, LeakyReLU after the sum), Linear(W → W/2) → LeakyReLU → Dropout →
  Linear(W/2 → H), BatchNorm on the output;
* attention fusion of two modalities: weights = softmax(Linear(H → 2)(tanh(Linear(2H → H)([a; t])))),
  fused = dropout(w_a·a + w_t·t);
* a projector H → 2H → H → H/2 (LeakyReLU, Dropout; the last dropout p/2), two residual blocks
  (H/2 → H → H/2, dropout p/2), and an L2-normalised output z;
* the hierarchical proxy loss on z: learnable child (23) and parent (5) proxies, CE of
  z·child/τ + α·CE of z·parent/τ + β·(1 − cos(child, its parent)) + γ·hinge on sibling
  similarities above a margin + δ·hinge on parent-pair similarities above a margin;
* prediction: softmax of the cosine similarities z·child (no temperature);
* masking augmentation per clip, modality and draw: tiny Gaussian noise, then k ~ U{1 … ⌊d·p⌋}
  random coordinates set to zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cache.taxonomy import CLASS_TOP_INDEX, NUM_CLASSES, TOP_LEVELS


class ResidualMLP(nn.Module):
    """x → LeakyReLU(x + BN(Linear(Dropout(LeakyReLU(BN(Linear(x)))))))."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.bn_up, self.bn_down = nn.BatchNorm1d(hidden), nn.BatchNorm1d(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.drop(F.leaky_relu(self.bn_up(self.up(x))))
        return F.leaky_relu(self.bn_down(self.down(h)) + x)


class ModalityEncoder(nn.Module):
    """One modality's embedding → an H-d feature (see the module docstring)."""

    def __init__(self, d_in: int, out: int, dropout: float, blocks: int = 3):
        super().__init__()
        width = max(d_in, 2 * out)
        self.norm_in = nn.BatchNorm1d(d_in)
        self.inp = nn.Sequential(nn.Linear(d_in, width), nn.LeakyReLU(), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[ResidualMLP(width, 2 * width, dropout) for _ in range(blocks)])
        self.outp = nn.Sequential(
            nn.Linear(width, width // 2), nn.LeakyReLU(), nn.Dropout(dropout), nn.Linear(width // 2, out)
        )
        self.norm_out = nn.BatchNorm1d(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm_out(self.outp(self.blocks(self.inp(self.norm_in(x)))))


class AttentionFusion(nn.Module):
    """Two H-d features → their softmax-weighted sum (and the (B, 2) weights)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(2 * dim, dim), nn.Tanh(), nn.Linear(dim, 2))
        self.drop = nn.Dropout(dropout)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        w = torch.softmax(self.score(torch.cat([a, b], dim=-1)), dim=-1)
        return self.drop(a * w[:, :1] + b * w[:, 1:]), w


class BaselineNet(nn.Module):
    """Per-modality encoders, attention fusion (two modalities), projector and residual
    classifier blocks; ``forward(*modalities)`` → L2-normalised z (B, H/2)."""

    def __init__(self, dims: Sequence[int], hidden: int = 128, dropout: float = 0.1, blocks: int = 3):
        super().__init__()
        if len(dims) not in (1, 2):
            raise ValueError(f"the baseline network takes one or two modalities, got {len(dims)}")
        self.encoders = nn.ModuleList([ModalityEncoder(d, hidden, dropout, blocks) for d in dims])
        self.fusion = AttentionFusion(hidden, dropout) if len(dims) == 2 else None
        half = hidden // 2
        self.project = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, half),
            nn.LeakyReLU(),
            nn.Dropout(dropout / 2),
        )
        self.classifier = nn.Sequential(*[ResidualMLP(half, hidden, dropout / 2) for _ in range(2)])
        self.out_dim = half

    def forward(self, *xs: Tensor) -> Tensor:
        feats = [enc(x) for enc, x in zip(self.encoders, xs, strict=True)]
        h = self.fusion(*feats)[0] if self.fusion is not None else feats[0]
        return F.normalize(self.classifier(self.project(h)), dim=1)


def _hinge_mean(sim: Tensor, mask: Tensor, margin: float) -> Tensor:
    vals = sim[mask]
    return F.relu(vals - margin).mean() if vals.numel() else sim.new_zeros(())


class HierarchicalProxyLoss(nn.Module):
    """The baseline's loss on normalised embeddings z (B, D); holds the learnable proxies."""

    def __init__(
        self,
        dim: int,
        temperature: float = 0.07,
        alpha: float = 0.4,
        beta: float = 0.3,
        gamma: float = 0.15,
        delta: float = 0.05,
        sibling_margin: float = 0.4,
        parent_margin: float = 0.0,
    ):
        super().__init__()
        self.child = nn.Parameter(torch.empty(NUM_CLASSES, dim))
        self.parent = nn.Parameter(torch.empty(len(TOP_LEVELS), dim))
        nn.init.xavier_uniform_(self.child)
        nn.init.xavier_uniform_(self.parent)
        self.register_buffer(
            "parent_of", torch.as_tensor(CLASS_TOP_INDEX, dtype=torch.long), persistent=False
        )
        self.temperature, self.alpha, self.beta, self.gamma, self.delta = (
            temperature,
            alpha,
            beta,
            gamma,
            delta,
        )
        self.sibling_margin, self.parent_margin = sibling_margin, parent_margin

    def proxies(self) -> tuple[Tensor, Tensor]:
        """Unit-length (child, parent) proxies."""
        return F.normalize(self.child, dim=1), F.normalize(self.parent, dim=1)

    def logits(self, z: Tensor) -> Tensor:
        """Prediction logits (B, 23): cosine similarity of z to each class proxy."""
        return z @ self.proxies()[0].T

    def terms(self, z: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The five terms (before weighting): child, parent, child_to_parent, sibling, parent_sep."""
        child, parent = self.proxies()
        t = self.temperature
        eye_c = torch.eye(len(child), dtype=torch.bool, device=z.device)
        eye_p = torch.eye(len(parent), dtype=torch.bool, device=z.device)
        same_top = self.parent_of[:, None] == self.parent_of[None, :]
        return {
            "child": F.cross_entropy(z @ child.T / t, labels),
            "parent": F.cross_entropy(z @ parent.T / t, self.parent_of[labels]),
            "child_to_parent": (1.0 - (child * parent[self.parent_of]).sum(1)).mean(),
            "sibling": _hinge_mean(child @ child.T, same_top & ~eye_c, self.sibling_margin),
            "parent_sep": _hinge_mean(parent @ parent.T, ~eye_p, self.parent_margin),
        }

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        d = self.terms(z, labels)
        return (
            d["child"]
            + self.alpha * d["parent"]
            + self.beta * d["child_to_parent"]
            + self.gamma * d["sibling"]
            + self.delta * d["parent_sep"]
        )


def mask_augment(
    x: Tensor, fraction: float = 0.7, noise_std: float = 1e-4, generator: torch.Generator | None = None
) -> Tensor:
    """Per row: add N(0, noise_std²) noise, then zero k random coordinates, k uniform in
    1 … max(1, ⌊d·fraction⌋) (a uniformly drawn subset of that size)."""
    n, d = x.shape
    kmax = max(1, int(d * fraction))
    x = x + noise_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    k = torch.randint(1, kmax + 1, (n, 1), generator=generator, device=x.device)
    ranks = torch.rand((n, d), generator=generator, device=x.device).argsort(dim=1).argsort(dim=1)
    return x.masked_fill(ranks < k, 0.0)
