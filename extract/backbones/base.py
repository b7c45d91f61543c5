"""The backbone interface and registry.

A backbone turns fixed-length windows of mono audio at its native rate into one embedding
per window (and, for audio–text models, strings into text embeddings). Windowing, padding
and pooling over windows live in ``extract.windowing`` and are shared by the extraction
runner and the fine-tune tier. Adding a backbone = one new file in this folder that calls
``register_backbone``; :func:`import_backbone_modules` imports every module here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts of a backbone (variant), recorded in every store's provenance."""

    name: str
    variant: str
    sample_rate: int
    audio_dim: int | None  # None for text-only encoders
    text_dim: int | None = None  # None for audio-only backbones
    window_seconds: float = 10.0
    padding: str = "zero"  # how the last window is padded: "zero" or "repeat"
    front_end: str = ""
    needs_checkpoint: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))


@dataclass
class BackboneConfig:
    """How to build a backbone: which variant, which local files, tiny test configs."""

    name: str
    variant: str | None = None  # None: the backbone's default variant
    checkpoint: Path | None = None  # local weights file (or folder for M2D)
    tokenizer: Path | None = None  # local tokenizer folder for text towers
    allow_missing: tuple[str, ...] = ()  # checkpoint keys allowed to be missing (explicit allow-list)
    allow_unexpected: tuple[str, ...] = ()
    random_init: bool = False  # build without weights (tests, benchmarks); recorded in provenance
    overrides: dict[str, Any] = field(default_factory=dict)  # architecture overrides (tiny test configs)


class Backbone(nn.Module):
    """Base class. Subclasses set ``spec`` and implement ``embed_windows`` (and ``embed_text``)."""

    spec: BackboneSpec

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, window_samples) float waveforms in [-1, 1] → (B, audio_dim) embeddings.

        ``lengths`` (B,) holds the number of real (non-padding) samples of each window; backbones
        that support frame-level masking use it, others ignore it. Must be differentiable (the
        fine-tune tier trains through it); the extraction runner wraps it in inference mode.
        """
        raise NotImplementedError

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """List of strings → (B, text_dim). Only for audio–text models and text encoders."""
        raise NotImplementedError(f"{self.spec.name} has no text tower")

    def embed_texts(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(N, text_dim) float32 in input order, from :meth:`embed_text` on batches of similar
        length (less padding). Call under ``torch.inference_mode()`` for extraction."""
        out = np.zeros((len(texts), self.spec.text_dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = self.embed_text([texts[i] for i in idx]).float().cpu().numpy()
        return out

    #: how :meth:`pool_windows` makes a clip embedding (recorded in each embeddings table's provenance)
    pooling_description = "mean over windows with real samples"

    def pool_windows(
        self, window_emb: torch.Tensor, clip_of_window: torch.Tensor, lengths: torch.Tensor, n_clips: int
    ) -> torch.Tensor:
        """Clip embeddings from window embeddings: (Wtot, D) → (n_clips, D).

        Default: the mean over each clip's windows that hold real samples
        (``extract.windowing.pool_windows``). A backbone may weight its windows differently
        (M2D's ``reference`` pooling weights them by their number of real time steps).
        """
        from ..windowing import pool_windows

        return pool_windows(window_emb, clip_of_window, lengths, n_clips)

    def default_batch_size(self, device: torch.device) -> int:
        """Windows (or texts) per forward pass when the user does not choose (``--batch-size 0``)."""
        return 32

    def provenance(self) -> dict[str, Any]:
        """Facts about the loaded weights (checkpoint path and sha256, tokenizer, …)."""
        return dict(getattr(self, "_provenance", {}))


def check_overrides(name: str, overrides: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """``overrides`` as a dict; an unknown key is an error naming the allowed ones."""
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown override(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    return dict(overrides)


BackboneFactory = Callable[[BackboneConfig], Backbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    def deco(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


@functools.cache
def import_backbone_modules() -> None:
    """Import every backbone module of this folder, so that each registers itself (once)."""

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__package__}.{info.name}")


def available_backbones() -> list[str]:
    import_backbone_modules()
    return sorted(_REGISTRY)


def build_backbone(config: BackboneConfig | str, **kw: Any) -> Backbone:
    """Build a registered backbone from a config (or a name plus config fields)."""
    import_backbone_modules()
    if isinstance(config, str):
        config = BackboneConfig(name=config, **kw)
    if config.name not in _REGISTRY:
        raise KeyError(f"unknown backbone {config.name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[config.name](config)
