"""Front-ends shared by several backbones."""

from __future__ import annotations

import torch
import torchaudio


def kaldi_fbank(
    waves: torch.Tensor,
    sample_rate: int,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    scale: float = 1.0,
    window_type: str = "povey",
) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbanks of a batch: (B, T) → (B, frames, num_mel_bins).

    ``scale`` multiplies the waveform first (BEATs uses 2**15, i.e. int16 range). The defaults
    are torchaudio's Kaldi defaults (povey window, no dither), as the BEATs release calls it.
    Computed per item with ``torchaudio.compliance.kaldi.fbank`` (its reference implementation;
    differentiable), which takes one waveform at a time.
    """
    if waves.dim() != 2:
        raise ValueError(f"kaldi_fbank expects (batch, samples), got shape {tuple(waves.shape)}")
    feats = [
        torchaudio.compliance.kaldi.fbank(
            (w * scale).unsqueeze(0),
            num_mel_bins=num_mel_bins,
            sample_frequency=sample_rate,
            frame_length=frame_length_ms,
            frame_shift=frame_shift_ms,
            htk_compat=False,
            dither=0.0,
            window_type=window_type,
            use_energy=False,
        )
        for w in waves
    ]
    return torch.stack(feats)


def frames_for(
    n_samples: torch.Tensor | int,
    sample_rate: int,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> torch.Tensor:
    """Number of Kaldi frames (snip_edges=True) that lie fully inside ``n_samples`` real samples."""
    n = torch.as_tensor(n_samples)
    win = int(sample_rate * frame_length_ms / 1000)
    hop = int(sample_rate * frame_shift_ms / 1000)
    return torch.where(n < win, torch.zeros_like(n), 1 + (n - win) // hop)
