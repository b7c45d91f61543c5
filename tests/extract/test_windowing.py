"""Windowing, repeat padding, pooling mask and the clip-level invariants of embed_clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.logmel import LogMelStats
from extract.windowing import embed_clips, forward_windows, n_windows, pool_windows, split_windows


def _wave(seconds: float, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * rate))
    t = torch.arange(n) / rate
    return (0.3 * torch.sin(2 * torch.pi * (300 + 50 * seed) * t) + 0.1 * torch.randn(n, generator=g)).float()


# ------------------------------------------------------------------------------------ split_windows
def test_split_zero_padding_known_answer():
    w, lens = split_windows(torch.arange(1.0, 8.0), 3, "zero")
    assert w.tolist() == [[1, 2, 3], [4, 5, 6], [7, 0, 0]]
    assert lens.tolist() == [3, 3, 1] and lens.dtype == torch.long


def test_split_exact_multiple_and_counts():
    w, lens = split_windows(torch.ones(6), 3)
    assert w.shape == (2, 3) and lens.tolist() == [3, 3]
    assert [n_windows(t, 10) for t in (0, 1, 10, 11, 30, 31)] == [1, 1, 1, 2, 3, 4]


def test_split_empty_wave_gives_one_padding_window():
    w, lens = split_windows(torch.zeros(0), 4, "repeat")
    assert w.tolist() == [[0, 0, 0, 0]] and lens.tolist() == [0]


def test_repeat_padding_tiles_like_laion_repeatpad():
    # laion-clap repeatpad: repeat int(max_len / len) times, then zero-pad to max_len
    w, lens = split_windows(torch.tensor([1.0, 2.0, 3.0]), 8, "repeat")
    assert w.tolist() == [[1, 2, 3, 1, 2, 3, 0, 0]] and lens.tolist() == [3]
    # only the last window of a long clip is padded, with its own samples
    w, lens = split_windows(torch.arange(1.0, 8.0), 3, "repeat")
    assert w.tolist() == [[1, 2, 3], [4, 5, 6], [7, 7, 7]] and lens.tolist() == [3, 3, 1]
    # a remainder that does not divide the window: whole copies, then zeros
    w, _ = split_windows(torch.arange(1.0, 8.0), 5, "repeat")
    assert w.tolist() == [[1, 2, 3, 4, 5], [6, 7, 6, 7, 0]]  # 5 // 2 = 2 copies, then one zero


def test_repeat_padding_matches_reference_formula_on_random_lengths():
    rng = np.random.default_rng(0)
    ws = 50
    for n in rng.integers(1, 200, size=20):
        x = torch.from_numpy(rng.standard_normal(int(n)).astype(np.float32))
        w, lens = split_windows(x, ws, "repeat")
        tail = x[(len(w) - 1) * ws :]
        ref = torch.nn.functional.pad(tail.repeat(ws // len(tail)), (0, ws - (ws // len(tail)) * len(tail)))
        assert torch.equal(w[-1], ref)
        assert torch.equal(w[:-1].reshape(-1), x[: (len(w) - 1) * ws])
        assert int(lens.sum()) == int(n)


def test_split_rejects_bad_input():
    with pytest.raises(ValueError, match="padding"):
        split_windows(torch.ones(5), 2, "mirror")
    with pytest.raises(ValueError, match="waveform"):
        split_windows(torch.ones(2, 5), 2)


# ------------------------------------------------------------------------------------ pool_windows
def test_pool_excludes_padding_only_windows():
    emb = torch.tensor([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0], [5.0, 7.0], [9.0, 9.0]])
    clip = torch.tensor([0, 0, 0, 1, 2])
    lengths = torch.tensor([10, 4, 0, 1, 0])
    out = pool_windows(emb, clip, lengths, 3)
    assert out.tolist() == [[2.0, 3.0], [5.0, 7.0], [0.0, 0.0]]


# ------------------------------------------------------------------------------------ embed_clips
@pytest.fixture(scope="module")
def logmel() -> LogMelStats:
    return build_backbone("logmel")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_backbone(BackboneConfig("tiny", overrides={"window_seconds": 1.0}))


@pytest.mark.parametrize("which", ["logmel", "tiny"])
def test_30s_clip_equals_mean_of_its_three_10s_parts(which, logmel, tiny):
    bb = logmel if which == "logmel" else tiny  # tiny: 1 s windows, so a 3 s clip and its 1 s parts
    ws = bb.spec.window_samples
    x = _wave(3 * ws / bb.spec.sample_rate, bb.spec.sample_rate)
    whole = embed_clips(bb, [x])
    parts = embed_clips(bb, [x[:ws], x[ws : 2 * ws], x[2 * ws :]])
    torch.testing.assert_close(whole[0], parts.mean(0), rtol=1e-5, atol=1e-5)
    # each part alone is one window: its embedding is the window embedding
    torch.testing.assert_close(parts[1], bb.embed_windows(x[None, ws : 2 * ws])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["logmel", "tiny"])
def test_clip_alone_equals_clip_inside_a_padded_batch(which, logmel, tiny):
    bb = logmel if which == "logmel" else tiny
    sr = bb.spec.sample_rate
    scale = bb.spec.window_seconds / 10.0
    a = _wave(13.7 * scale, sr, seed=1)
    others = [
        _wave(0.3 * scale, sr, seed=2),
        _wave(25.0 * scale, sr, seed=3),
        _wave(0.01 * scale, sr, seed=4),
    ]
    alone = embed_clips(bb, [a])[0]
    for batch in (2, 3, 32):
        inside = embed_clips(bb, [others[0], others[1], a, others[2]], max_windows_per_batch=batch)
        torch.testing.assert_close(inside[2], alone, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(inside[0], embed_clips(bb, [others[0]])[0], rtol=1e-5, atol=1e-5)


def test_logmel_ignores_padding_content_and_trimming(logmel):
    x = _wave(3.0, seed=5)
    n = len(x)
    zero = torch.zeros(1, 160000)
    zero[0, :n] = x
    noisy = zero.clone()
    noisy[0, n:] = torch.randn(160000 - n)
    lengths = torch.tensor([n])
    ref = logmel.embed_windows(zero, lengths)
    torch.testing.assert_close(logmel.embed_windows(noisy, lengths), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(forward_windows(logmel, zero, lengths), ref, rtol=1e-5, atol=1e-5)
    # a clip shorter than one STFT frame still gives a finite embedding
    tiny_clip = embed_clips(logmel, [x[:100]])
    assert torch.isfinite(tiny_clip).all() and tiny_clip.shape == (1, 256)


def test_logmel_power_mel_equals_torchaudio_melspectrogram(logmel):
    x = torch.stack([_wave(10.0, seed=1), _wave(10.0, seed=2)])
    ref = logmel.mel(x)  # torchaudio's transform, whose window and filterbank power_mel reuses
    torch.testing.assert_close(logmel.power_mel(x), ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


def test_logmel_statistics_known_answer(logmel):
    """Constant log-mel frames: std 0, max = mean, no frame-to-frame change."""
    sr = 16000
    t = torch.arange(sr) / sr
    x = 0.5 * torch.sin(2 * torch.pi * 1000 * t)  # stationary tone: equal frames (period divides the hop)
    e = logmel.embed_windows(x[None])[0].reshape(4, 64)
    mean, std, peak, mad = e
    loud = mean > -8  # bins with energy (the rest sit at the log floor, where float noise dominates)
    assert int(loud.sum()) >= 3
    torch.testing.assert_close(peak[loud], mean[loud], rtol=0, atol=1e-3)
    assert float(std[loud].max()) < 1e-3 and float(mad[loud].max()) < 1e-3
    # the loudest bin is the one whose filter peaks nearest 1 kHz
    fb = logmel.mel.mel_scale.fb  # (freq bins, mels)
    freq_bin = round(1000 / (sr / 400))
    assert int(mean.argmax()) == int(fb[freq_bin].argmax())


def test_embed_clips_is_differentiable(tiny):
    tiny.train()
    out = embed_clips(tiny, [_wave(2.5, 16000, seed=6), _wave(0.4, 16000, seed=7)], max_windows_per_batch=2)
    out.sum().backward()
    grads = [p.grad for p in tiny.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    tiny.zero_grad()
    tiny.eval()


def test_repeat_policy_is_used_by_embed_clips():
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("tiny", overrides={"window_seconds": 1.0, "padding": "repeat"}))
    x = _wave(0.25, 16000, seed=8)
    tiled = torch.cat([x, x, x, x])  # 0.25 s * 4 = exactly one 1 s window
    got = embed_clips(bb, [x])[0]
    ref = bb.embed_windows(tiled[None], torch.tensor([len(x)]))[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
