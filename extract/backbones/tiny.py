"""``tiny``: a small trainable backbone for tests, demos and debugging (NOT part of the CP-JKU system).

Audio: log-mel (n_fft 400, hop 160, ``n_mels`` bins) of each window at ``sample_rate``, two
stride-2 3×3 convolutions with GELU, a mean over the frequency axis and over the time steps
that hold real (non-padding) samples, and a linear projection to ``dim``. A few thousand
parameters: it trains end to end on a CPU in seconds, which is what the fine-tune tier's
tests and benchmark need.

Variant ``clap`` adds a text tower (a hashed bag-of-words ``nn.EmbeddingBag``, ``text_dim``
wide) so the CLAP code path ([audio; text] representations, text sources, a frozen or
trained text tower) can be exercised without RoBERTa.

Architecture fields (``BackboneConfig.overrides``): ``sample_rate``, ``window_seconds``,
``n_mels``, ``channels``, ``dim``, ``text_dim`` (0 = no text tower), ``text_buckets``,
``padding`` ("zero" | "repeat"). Without a checkpoint the weights are randomly initialised
from torch's global RNG (seed it for reproducibility). :func:`save_tiny_checkpoint` writes
``{"format", "config", "state_dict"}``; building with ``checkpoint=`` reads the
architecture from the file and loads the weights strictly (``extract.checkpoints``).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import nn

from ..checkpoints import CheckpointError, load_state_dict_strict, torch_load
from .base import Backbone, BackboneConfig, BackboneSpec, register_backbone

CHECKPOINT_FORMAT = "bst-hac tiny backbone v1"
N_FFT, HOP = 400, 160
_TOKEN_RE = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class TinyArch:
    """Architecture of a tiny backbone (all of it is stored in its checkpoints)."""

    sample_rate: int = 16000
    window_seconds: float = 10.0
    n_mels: int = 32
    channels: int = 16
    dim: int = 32
    text_dim: int = 0
    text_buckets: int = 4096
    padding: str = "zero"


VARIANTS: dict[str, dict[str, Any]] = {"audio": {}, "clap": {"text_dim": 32}}


def arch_for(variant: str | None, overrides: dict[str, Any] | None = None) -> tuple[str, TinyArch]:
    """The (variant, architecture) a config asks for; unknown variants or fields raise ValueError."""
    variant = variant or "audio"
    if variant not in VARIANTS:
        raise ValueError(f"tiny backbone: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    fields = dict(VARIANTS[variant])
    unknown = sorted(set(overrides or {}) - set(TinyArch.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"tiny backbone: unknown override(s) {unknown}; known: {sorted(TinyArch.__dataclass_fields__)}"
        )
    fields.update(overrides or {})
    arch = TinyArch(**fields)
    if arch.padding not in ("zero", "repeat"):
        raise ValueError(f"tiny backbone: padding must be 'zero' or 'repeat', got {arch.padding!r}")
    return variant, arch


def hash_tokens(text: str, buckets: int) -> list[int]:
    """Bucket ids of the lower-cased alphanumeric tokens of ``text`` (crc32, stable across runs)."""
    return [zlib.crc32(t.encode()) % buckets for t in _TOKEN_RE.findall((text or "").lower())]


class TinyBackbone(Backbone):
    """Log-mel + 2 conv layers + masked mean pooling (+ optional hashed bag-of-words text tower)."""

    def __init__(self, arch: TinyArch = TinyArch(), variant: str = "audio"):
        super().__init__()
        self.arch = arch
        self.spec = BackboneSpec(
            name="tiny",
            variant=variant,
            sample_rate=arch.sample_rate,
            audio_dim=arch.dim,
            text_dim=arch.text_dim or None,
            window_seconds=arch.window_seconds,
            padding=arch.padding,
            front_end=f"log-mel {arch.n_mels} bins, n_fft {N_FFT}, hop {HOP}",
            needs_checkpoint=False,
        )
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=arch.sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=arch.n_mels
        )
        c = arch.channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.proj = nn.Linear(c, arch.dim)
        self.text_tower = (
            nn.EmbeddingBag(arch.text_buckets, arch.text_dim, mode="mean") if arch.text_dim else None
        )
        self._provenance: dict[str, Any] = {
            "architecture": asdict(arch),
            "checkpoint": None,
            "random_init": True,
        }

    def _valid_steps(self, lengths: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Time steps after the two stride-2 convolutions that hold real samples."""
        # centred STFT frames touching real samples
        frames = 1 + torch.div(lengths, HOP, rounding_mode="floor")
        frames = torch.where(lengths > 0, frames, torch.zeros_like(frames))
        steps = torch.div(torch.div(frames + 1, 2, rounding_mode="floor") + 1, 2, rounding_mode="floor")
        return steps.clamp(max=n_steps)

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if windows.dim() != 2:
            raise ValueError(f"tiny backbone expects windows (B, samples), got shape {tuple(windows.shape)}")
        device_type = windows.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            mel = self.melspec(windows.float())  # (B, n_mels, frames)
            x = torch.log(mel + 1e-6).unsqueeze(1)
        x = self.conv(x)  # (B, C, F', T')
        x = x.mean(dim=2)  # (B, C, T')
        n_steps = x.shape[-1]
        if lengths is None:
            pooled = x.mean(dim=-1)
        else:
            valid = self._valid_steps(lengths.to(x.device), n_steps)
            mask = (torch.arange(n_steps, device=x.device)[None, :] < valid[:, None]).to(x.dtype)
            pooled = (x * mask[:, None, :]).sum(-1) / mask.sum(-1, keepdim=True).clamp(min=1.0)
        return self.proj(pooled)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        if self.text_tower is None:
            raise NotImplementedError("tiny backbone variant 'audio' has no text tower (use variant 'clap')")
        device = self.text_tower.weight.device
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            ids.extend(hash_tokens(t, self.arch.text_buckets))
        return self.text_tower(
            torch.tensor(ids, dtype=torch.long, device=device),
            torch.tensor(offsets, dtype=torch.long, device=device),
        )


def save_tiny_checkpoint(model: TinyBackbone, path: str | Path) -> Path:
    """Write the tiny backbone's architecture and weights (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "variant": model.spec.variant,
            "config": asdict(model.arch),
            "state_dict": state,
        },
        path,
    )
    return path


def load_tiny(config: BackboneConfig) -> TinyBackbone:
    """Build from a config: random init, or the architecture and weights of ``config.checkpoint``."""
    if config.checkpoint is None:
        variant, arch = arch_for(config.variant, config.overrides)
        return TinyBackbone(arch, variant)
    data = torch_load(config.checkpoint)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{config.checkpoint} is not a tiny backbone checkpoint (format {CHECKPOINT_FORMAT!r})"
        )
    variant = data.get("variant", "audio")
    if config.variant and config.variant != variant:
        raise CheckpointError(
            f"{config.checkpoint} holds variant {variant!r}, config asks for {config.variant!r}"
        )
    arch = TinyArch(**data["config"])
    clash = {
        k: (v, getattr(arch, k))
        for k, v in (config.overrides or {}).items()
        if k in TinyArch.__dataclass_fields__ and getattr(arch, k) != v
    }
    if clash:
        raise CheckpointError(
            f"{config.checkpoint}: overrides contradict the checkpoint's architecture "
            f"(override, checkpoint): {clash}"
        )
    model = TinyBackbone(arch, variant)
    if not config.random_init:
        load_state_dict_strict(
            model,
            data["state_dict"],
            source=str(config.checkpoint),
            allow_missing=config.allow_missing,
            allow_unexpected=config.allow_unexpected,
        )
        from cache.provenance import sha256_file

        model._provenance.update(
            {
                "checkpoint": str(config.checkpoint),
                "checkpoint_sha256": sha256_file(config.checkpoint),
                "random_init": False,
            }
        )
    return model


@register_backbone("tiny")
def build(config: BackboneConfig) -> TinyBackbone:
    return load_tiny(config)
