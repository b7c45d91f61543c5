"""Audio decoding: soundfile decode, downmix to mono, resample with torchaudio.

``load_audio`` is what the extraction runner's DataLoader workers, the fine-tune tier and
the benchmarks call; every way a file can be unusable raises :class:`AudioDecodeError`
naming the file and the reason, so callers can record it and go on.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio


class AudioDecodeError(ValueError):
    """A clip cannot be used: missing, empty, corrupt, zero-length or non-finite audio."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@functools.lru_cache(maxsize=32)
def resampler(orig_rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    """A cached ``torchaudio.transforms.Resample`` (its sinc kernel is built once per rate pair)."""
    return torchaudio.transforms.Resample(orig_rate, target_rate)


def resample(wave: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample (..., T) from ``orig_rate`` to ``target_rate``; a no-op when the rates match."""
    if orig_rate == target_rate:
        return wave
    with torch.no_grad():
        return resampler(int(orig_rate), int(target_rate))(wave)


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file with soundfile: ((T, C) float32, sample rate). Raises AudioDecodeError."""
    path = Path(path)
    if not path.exists():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError on bad headers
        raise AudioDecodeError(path, f"corrupt or unreadable audio ({type(e).__name__}: {e})") from None
    if rate <= 0:
        raise AudioDecodeError(path, f"invalid sample rate {rate}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioDecodeError(path, "zero-length audio (no samples)")
    return data, int(rate)


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode ``path`` to a (T,) float32 mono waveform in [-1, 1] at ``sample_rate``.

    Channels are averaged; resampling uses a cached torchaudio resampler and is skipped when
    the file already has the target rate. Float files with samples beyond ±1 are clipped.
    Raises :class:`AudioDecodeError` (file not found, empty, corrupt, zero-length, NaN/inf).
    """
    data, rate = decode(path)
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioDecodeError(path, f"{bad} non-finite sample(s) (NaN/inf)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    wave = resample(wave, rate, int(sample_rate))
    if wave.numel() == 0:
        raise AudioDecodeError(path, f"zero-length audio after resampling {rate} -> {sample_rate} Hz")
    return wave.clamp_(-1.0, 1.0).contiguous()


def duration_seconds(path: str | Path) -> float:
    """Duration from the file header (no decode); 0.0 when the header cannot be read."""
    try:
        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0
    except Exception:
        return 0.0
