"""load_audio: decode, downmix, resampling, and every kind of unusable file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from extract.audio import (
    LOUD_FLOAT_PEAK,
    AudioDecodeError,
    decode,
    duration_seconds,
    load_audio,
    load_audio_checked,
    resampler,
)


def _tone(freq: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (1 - 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)


def test_same_rate_returns_the_decoded_samples(tmp_path):
    p = tmp_path / "a.wav"
    x = _tone(440, 0.5, 16000)
    sf.write(p, x, 16000, subtype="FLOAT")
    before = resampler.cache_info().currsize
    y = load_audio(p, 16000)
    assert y.dtype == torch.float32 and y.shape == (8000,)
    np.testing.assert_array_equal(y.numpy(), x[:, 0])
    assert resampler.cache_info().currsize == before  # no resampler built when the rates match


def test_pcm16_is_scaled_to_unit_range(tmp_path):
    p = tmp_path / "full.wav"
    x = np.array([[-1.0], [-0.5], [0.0], [0.5], [32767 / 32768]], dtype=np.float32)
    sf.write(p, x, 8000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(p, 8000).numpy(), x[:, 0])


@pytest.mark.parametrize(
    "fmt,subtype,channels",
    [
        ("WAV", "PCM_16", 1),
        ("WAV", "PCM_24", 2),
        ("WAV", "PCM_U8", 1),
        ("FLAC", "PCM_16", 2),
        ("FLAC", "PCM_24", 1),
    ],
)
def test_integer_pcm_read_as_integers_equals_libsndfile_float_decoding(tmp_path, fmt, subtype, channels):
    rng = np.random.default_rng(0)
    x = np.clip(0.3 * rng.standard_normal((4000, channels)), -1, 1).astype(np.float32)
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    ref, _ = sf.read(p, dtype="float32", always_2d=True)  # libsndfile's own int -> float conversion
    np.testing.assert_array_equal(decode(p)[0], ref)
    np.testing.assert_allclose(load_audio(p, 16000).numpy(), ref.mean(axis=1), rtol=0, atol=1e-7)


def test_resampling_matches_torchaudio_and_keeps_the_tone(tmp_path):
    p = tmp_path / "b.wav"
    x = _tone(1000, 1.0, 44100)
    sf.write(p, x, 44100, subtype="FLOAT")
    y = load_audio(p, 16000)
    assert y.shape == (16000,)
    ref = torchaudio.functional.resample(torch.from_numpy(x[:, 0]), 44100, 16000)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
    spectrum = torch.fft.rfft(y).abs()
    assert int(spectrum.argmax()) == 1000  # 1 s at 16 kHz: bin k = k Hz


def test_stereo_is_downmixed_by_averaging(tmp_path):
    p = tmp_path / "s.wav"
    x = _tone(300, 0.25, 32000, channels=2)
    sf.write(p, x, 32000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(p, 32000).numpy(), x.mean(axis=1), rtol=0, atol=1e-7)


def test_float_samples_beyond_unit_range_are_clipped(tmp_path):
    p = tmp_path / "loud.wav"
    sf.write(p, np.array([[1.5], [-2.0], [0.25]], dtype=np.float32), 16000, subtype="FLOAT")
    assert load_audio(p, 16000).tolist() == [1.0, -1.0, 0.25]


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("empty", "empty file"),
        ("corrupt", "corrupt or unreadable"),
        ("zero", "zero-length"),
        ("nan", "non-finite"),
        ("inf", "non-finite"),
        ("missing", "file not found"),
    ],
)
def test_unusable_files_raise_naming_file_and_reason(tmp_path, kind, reason):
    p = tmp_path / f"{kind}.wav"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "corrupt":
        p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \x02\x00 nonsense")
    elif kind == "zero":
        sf.write(p, np.zeros((0, 1), dtype=np.float32), 16000)
    elif kind in ("nan", "inf"):
        x = _tone(200, 0.1, 16000)
        x[5, 0] = np.nan if kind == "nan" else np.inf
        sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError) as e:
        load_audio(p, 16000)
    assert str(p) in str(e.value) and reason in str(e.value)
    assert isinstance(e.value, ValueError) and e.value.path == str(p)


def test_duration_from_header(tmp_path):
    p = tmp_path / "d.wav"
    sf.write(p, _tone(100, 2.5, 8000), 8000)
    assert duration_seconds(p) == pytest.approx(2.5)
    assert duration_seconds(tmp_path / "nope.wav") == 0.0


def _cut(path, keep: float) -> None:
    """Keep the first ``keep`` fraction of the file's bytes (its header still declares every frame)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "PCM_24"])
def test_truncated_file_is_decoded_with_a_warning(tmp_path, subtype):
    p = tmp_path / "cut.wav"
    sf.write(p, _tone(300, 1.0, 16000), 16000, subtype=subtype)
    _cut(p, 0.5)
    wave, warning = load_audio_checked(p, 16000)
    n = len(wave)
    assert 7900 < n < 8050  # what the file still holds
    assert warning.startswith(f"{p}: truncated file") and f"({n} frames read)" in warning
    assert "declares" in warning and str(16000 * {"PCM_16": 2, "FLOAT": 4, "PCM_24": 3}[subtype]) in warning
    np.testing.assert_array_equal(wave.numpy(), load_audio(p, 16000).numpy())  # same samples as before


def test_one_sample_file_is_decoded_with_a_warning(tmp_path):
    p = tmp_path / "one.wav"
    sf.write(p, np.array([[0.25]], dtype=np.float32), 16000, subtype="FLOAT")
    wave, warning = load_audio_checked(p, 16000)
    assert wave.tolist() == [0.25]
    assert warning == f"{p}: only 1 sample(s) (0.0625 ms at 16000 Hz)"


def test_float_samples_far_beyond_unit_range_are_clipped_with_a_warning(tmp_path):
    p = tmp_path / "scale.wav"
    sf.write(p, np.array([[1000.0], [-2.0], [0.25]] * 20, dtype=np.float32), 16000, subtype="FLOAT")
    wave, warning = load_audio_checked(p, 16000)
    assert wave[:3].tolist() == [1.0, -1.0, 0.25]
    assert (
        warning == f"{p}: float samples up to 1000 in magnitude (beyond ±4: wrong scale?); clipped to [-1, 1]"
    )
    assert LOUD_FLOAT_PEAK == 4.0


@pytest.mark.parametrize("peak", [1.5, LOUD_FLOAT_PEAK])
def test_clean_and_mildly_loud_files_have_no_warning(tmp_path, peak):
    p = tmp_path / "ok.wav"
    x = _tone(300, 0.2, 16000)
    x[10, 0] = peak
    sf.write(p, x, 16000, subtype="FLOAT")
    assert load_audio_checked(p, 16000)[1] == ""
    sf.write(p, _tone(300, 0.2, 44100), 44100, subtype="PCM_16")
    wave, warning = load_audio_checked(p, 16000)
    assert warning == "" and torch.equal(wave, load_audio(p, 16000))


def test_a_stream_that_ends_before_its_declared_length_is_decoded_with_a_warning(tmp_path):
    """An MP3 cut in half: its header (Xing) declares every frame, libsndfile reads what is there."""
    full, cut = tmp_path / "full.mp3", tmp_path / "cut.mp3"
    sf.write(full, _tone(300, 3.0, 16000), 16000, format="MP3", subtype="MPEG_LAYER_III")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    wave, warning = load_audio_checked(cut, 16000)
    assert 0 < len(wave) < 40000
    assert warning == f"{cut}: truncated: the header declares 48000 frames, only {len(wave)} could be read"
