"""Audio decoding: soundfile decode, downmix to mono, resample with torchaudio.

``load_audio`` is what the extraction runner's DataLoader workers, the fine-tune tier and
the benchmarks call; every way a file can be unusable raises :class:`AudioDecodeError`
naming the file and the reason, so callers can record it and go on. ``load_audio_checked``
returns the same waveform plus warnings about audio that is usable but suspicious (a truncated
file, a clip under :data:`MIN_SECONDS`, float samples beyond :data:`LOUD_FLOAT_PEAK`).
"""

from __future__ import annotations

import functools
import math
import re
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


class SparseResample:
    """torchaudio's default sinc resampler (``transforms.Resample``: Hann-windowed sinc, width 6,
    rolloff 0.99), computed without its zero taps.

    torchaudio convolves blocks of ``orig`` input samples (rates divided by their gcd) with a
    (new, orig + 2*width) kernel, but each output phase has only about 2*width non-zero taps
    there (44.1 -> 16 kHz: 35 of 475). Here the phases are split into a few groups; each group
    multiplies the strided block view of the padded input by its kernel slice that covers the
    group's non-zero taps (BLAS matmul: no per-length kernel set-up as oneDNN's conv does).
    Same kernel and same zero padding as torchaudio, so results match it to float rounding
    (tested); ``kernel``, ``width``, ``orig`` and ``new`` come from the wrapped transform.
    """

    def __init__(self, orig_rate: int, target_rate: int, groups: int = 8):
        ref = torchaudio.transforms.Resample(int(orig_rate), int(target_rate))
        self.orig, self.new = int(orig_rate) // ref.gcd, int(target_rate) // ref.gcd
        self.width = int(ref.width)
        kernel = ref.kernel[:, 0]  # (new, K)
        self.taps = kernel.shape[-1]
        nonzero = kernel != 0
        first = nonzero.int().argmax(1)
        last = self.taps - 1 - nonzero.flip(1).int().argmax(1)
        edges = np.linspace(0, self.new, max(1, min(groups, self.new)) + 1).round().astype(int)
        self.parts = []  # (first phase, end phase, first tap, (taps, phases) kernel slice)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            if b > a:
                lo, hi = int(first[a:b].min()), int(last[a:b].max()) + 1
                self.parts.append((int(a), int(b), lo, kernel[a:b, lo:hi].T.contiguous()))

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        shape = wave.shape
        x = wave.reshape(-1, shape[-1])
        length = x.shape[-1]
        padded = torch.nn.functional.pad(x, (self.width, self.width + self.orig))
        n_blocks = (padded.shape[-1] - self.taps) // self.orig + 1
        blocks = padded.unfold(-1, self.taps, self.orig)[:, :n_blocks]  # (N, blocks, K) view
        out = x.new_empty(x.shape[0], n_blocks, self.new)
        for a, b, lo, k in self.parts:
            out[:, :, a:b] = blocks[..., lo : lo + k.shape[0]] @ k
        target = -(-self.new * length // self.orig)
        return out.reshape(x.shape[0], -1)[:, :target].reshape(*shape[:-1], -1)


@functools.lru_cache(maxsize=32)
def resampler(orig_rate: int, target_rate: int) -> SparseResample:
    """A cached resampler for a rate pair (torchaudio's sinc kernel, built once; see SparseResample)."""
    return SparseResample(orig_rate, target_rate)


def resample(wave: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample (..., T) from ``orig_rate`` to ``target_rate``; a no-op when the rates match."""
    if orig_rate == target_rate:
        return wave
    with torch.no_grad():
        return resampler(int(orig_rate), int(target_rate))(wave.float())


#: integer PCM subtypes read as integers and scaled here: libsndfile's own int -> float conversion
#: costs ~10x the read (a 10 s 44.1 kHz 16-bit WAV: 0.96 ms as float32, 0.1 ms as int16 + 0.06 ms
#: to scale); the scale is libsndfile's (1/2^15 for int16, 1/2^31 for int32), so samples are equal
_INT_READS = {
    "PCM_S8": ("int16", 2.0**-15),
    "PCM_U8": ("int16", 2.0**-15),
    "PCM_16": ("int16", 2.0**-15),
    "PCM_24": ("int32", 2.0**-31),
}


#: a float file whose peak |sample| exceeds this is flagged: a peak above +12 dBFS means a wrong scale
#: (e.g. integer sample values stored as floats) rather than loud mastering; it is still clipped and embedded
LOUD_FLOAT_PEAK = 4.0
#: a clip shorter than this (1 ms at the file's own rate, e.g. a 1-sample file) is flagged as holding no sound
MIN_SECONDS = 0.001
#: libsndfile's log line for a data chunk longer than the file: "data : 32000 (should be 15978)"
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _truncation(f: sf.SoundFile, n_read: int) -> list[str]:
    """A warning when the file holds fewer samples than its header declares (libsndfile shortens the
    data to what is there and logs the declared size; a read may also stop early)."""
    if n_read < f.frames:
        return [f"truncated: the header declares {f.frames} frames, only {n_read} could be read"]
    m = _SHORT_CHUNK.search(f.extra_info)
    if m:
        return [
            f"truncated file: its header declares {m.group(2)} bytes of {m.group(1)}, the file holds "
            f"{m.group(3)} ({n_read} frames read)"
        ]
    return []


def _decode_checked(path: str | Path) -> tuple[torch.Tensor, int, bool, list[str]]:
    """(T, C) float32 samples, rate, whether the file held floats (integers cannot be NaN/inf), warnings."""
    path = Path(path)
    if not path.exists():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            dtype, scale = _INT_READS.get(f.subtype, ("float32", None))
            data, rate = f.read(dtype=dtype, always_2d=True), int(f.samplerate)
            warnings = _truncation(f, data.shape[0])
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError on bad headers
        raise AudioDecodeError(path, f"corrupt or unreadable audio ({type(e).__name__}: {e})") from None
    if rate <= 0:
        raise AudioDecodeError(path, f"invalid sample rate {rate}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioDecodeError(path, "zero-length audio (no samples)")
    if data.shape[0] < MIN_SECONDS * rate:
        warnings.append(f"only {data.shape[0]} sample(s) ({1000 * data.shape[0] / rate:.3g} ms at {rate} Hz)")
    x = torch.from_numpy(data)
    return (x if scale is None else x.float().mul_(scale)), rate, scale is None, warnings


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file with soundfile: ((T, C) float32, sample rate). Raises AudioDecodeError."""
    x, rate, _, _ = _decode_checked(path)
    return x.numpy(), rate


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Decode ``path`` to a (T,) float32 mono waveform in [-1, 1] at ``sample_rate``.

    Channels are averaged; resampling uses a cached torchaudio resampler and is skipped when
    the file already has the target rate. Float files with samples beyond ±1 are clipped.
    Raises :class:`AudioDecodeError` (file not found, empty, corrupt, zero-length, NaN/inf).
    """
    return load_audio_checked(path, sample_rate)[0]


def load_audio_checked(path: str | Path, sample_rate: int) -> tuple[torch.Tensor, str]:
    """``(load_audio(path, sample_rate), warning)``: the same waveform, and ``""`` or one line naming the
    file and what is suspicious about it: truncated (fewer samples than the header declares), shorter
    than :data:`MIN_SECONDS`, or float samples beyond ±:data:`LOUD_FLOAT_PEAK` (clipped to ±1 as always).
    """
    x, rate, is_float, warnings = _decode_checked(path)
    if is_float and x.numel():
        peak = float(x.abs().max())  # one pass: NaN or inf make it non-finite
        if not math.isfinite(peak):
            bad = int((~torch.isfinite(x)).sum())
            raise AudioDecodeError(path, f"{bad} non-finite sample(s) (NaN/inf)")
        if peak > LOUD_FLOAT_PEAK:
            warnings.append(
                f"float samples up to {peak:.4g} in magnitude (beyond ±{LOUD_FLOAT_PEAK:g}: wrong "
                "scale?); clipped to [-1, 1]"
            )
    wave = (x.mean(dim=1) if x.shape[1] > 1 else x[:, 0]).contiguous()
    wave = resample(wave, rate, int(sample_rate))
    if wave.numel() == 0:
        raise AudioDecodeError(path, f"zero-length audio after resampling {rate} -> {sample_rate} Hz")
    return wave.clamp_(-1.0, 1.0).contiguous(), (f"{path}: {'; '.join(warnings)}" if warnings else "")


def duration_seconds(path: str | Path) -> float:
    """Duration from the file header (no decode); 0.0 when the header cannot be read."""
    try:
        info = sf.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0
    except Exception:
        return 0.0
