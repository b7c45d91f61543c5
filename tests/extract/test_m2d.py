"""M2D backbone: official key layout, weight-folder naming, release file format, front-end, masking,
gradients."""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

import pytest
import torch

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.m2d import DEFAULT_FOLDER, EVAR_PREFIX, UNUSED_KEY_PATTERNS, M2DEncoder, arch_from_name
from extract.checkpoints import CheckpointError

FIXTURE = Path(__file__).parent / "fixtures" / "m2d_clap_vit_base_80x1001p16x16_keys.json"
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
NORM_STATS = [-6.5, 4.5]
LOG_EPS = math.log(torch.finfo(torch.float32).eps)


pytestmark = pytest.mark.usefixtures("two_torch_threads")


def write_weights(
    folder: Path,
    *,
    evar: bool = True,
    seed: int = 0,
    extra: dict | None = None,
    drop: tuple = (),
    norm_stats=NORM_STATS,
) -> Path:
    """A random tiny state dict in the released layout: EVAR prefix, norm_stats, CLAP projections, EVAR
    head."""
    torch.manual_seed(seed)
    arch = arch_from_name(folder.name)
    from dataclasses import replace

    enc = M2DEncoder(replace(arch, **TINY))
    state = {k: torch.randn_like(v) * 0.05 for k, v in enc.state_dict().items()}
    state["norm_stats"] = torch.tensor(norm_stats)
    d = TINY["embed_dim"]
    state.update(
        {
            "audio_proj.0.weight": torch.randn(d, d),
            "audio_proj.0.bias": torch.zeros(d),
            "audio_proj.2.weight": torch.randn(d, d),
            "audio_proj.2.bias": torch.zeros(d),
        }
    )
    for k in drop:
        state.pop(k)
    prefix = EVAR_PREFIX if evar else ""
    state = {prefix + k: v for k, v in state.items()}
    if evar:
        state.update(
            {
                "module.head.norm.running_mean": torch.zeros(d),
                "module.head.norm.running_var": torch.ones(d),
                "module.head.norm.num_batches_tracked": torch.tensor(7),
                "module.head.mlp.mlp.0.weight": torch.randn(527, d),
                "module.head.mlp.mlp.0.bias": torch.zeros(527),
            }
        )
    state.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weights_ep1it1-0.00000.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    return write_weights(tmp_path / "m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly")


def test_full_size_model_matches_official_key_layout():
    fixture = json.loads(FIXTURE.read_text())
    arch = arch_from_name(Path(fixture["checkpoint"]).parent.name)
    a = fixture["architecture"]
    assert (list(arch.input_size), list(arch.patch_size), list(arch.grid)) == (
        a["input_size"],
        a["patch_size"],
        a["grid"],
    )
    assert (arch.embed_dim, arch.depth, arch.num_heads, arch.audio_dim) == (
        a["embed_dim"],
        a["depth"],
        a["num_heads"],
        a["audio_dim"],
    )
    with torch.device("meta"):
        enc = M2DEncoder(arch)
    ours = {k: list(v.shape) for k, v in enc.state_dict().items()}
    assert ours == fixture["encoder_keys"]
    # the allow-list covers every unused key of the release and none of the encoder's
    unused = list(fixture["unused_keys"]) + fixture["unused_key_names_evar_head"]
    assert all(any(fnmatch.fnmatchcase(k, p) for p in UNUSED_KEY_PATTERNS) for k in unused)
    assert not any(fnmatch.fnmatchcase(k, p) for k in ours for p in UNUSED_KEY_PATTERNS)
    assert fixture["key_prefix"] == EVAR_PREFIX


def test_architecture_from_folder_name():
    a = arch_from_name("m2d_vit_base-80x608p16x16-221006-mr7")
    assert (a.input_size, a.patch_size, a.rate, a.grid, a.audio_dim) == (
        (80, 608),
        (16, 16),
        "16k",
        (5, 38),
        3840,
    )
    big = arch_from_name("m2d_as_vit_large-80x1001p16x16p16k-240213")
    assert (big.embed_dim, big.depth, big.num_heads, big.audio_dim) == (1024, 24, 16, 5120)
    with pytest.raises(CheckpointError, match="folder name 'weights'"):
        arch_from_name("weights")
    with pytest.raises(CheckpointError, match="32k"):
        arch_from_name("m2d_as_vit_base-80x1001p16x16p32k-240413")


def test_release_file_loads_and_embeds(tiny_file: Path):
    bb = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY)).eval()
    assert (bb.spec.sample_rate, bb.spec.audio_dim, bb.spec.padding, bb.spec.window_samples) == (
        16000,
        5 * 32,
        "zero",
        160000,
    )
    assert bb.spec.variant == DEFAULT_FOLDER
    prov = bb.provenance()
    assert prov["norm_stats"] == pytest.approx(NORM_STATS) and len(prov["checkpoint_sha256"]) == 64
    assert sorted(prov["ignored_keys"]) == sorted(
        [
            "audio_proj.0.weight",
            "audio_proj.0.bias",
            "audio_proj.2.weight",
            "audio_proj.2.bias",
            "module.head.norm.running_mean",
            "module.head.norm.running_var",
            "module.head.norm.num_batches_tracked",
            "module.head.mlp.mlp.0.weight",
            "module.head.mlp.mlp.0.bias",
        ]
    )
    saved = torch.load(tiny_file, weights_only=True)
    torch.testing.assert_close(bb.encoder.pos_embed, saved[EVAR_PREFIX + "pos_embed"])
    torch.manual_seed(1)
    waves = torch.randn(3, 16000) * 0.1  # 1 s: 101 frames, tail padded to 112 (official runtime) -> 7 steps
    with torch.inference_mode():
        frames, real = bb.embed_frames(waves)
        a, b = bb.embed_windows(waves), bb.embed_windows(waves)
    assert frames.shape == (3, 7, 5 * 32) and bool(real.all())
    assert a.shape == (3, 160) and bool(torch.isfinite(a).all()) and torch.equal(a, b)
    torch.testing.assert_close(a, frames.mean(1))
    assert not torch.allclose(a[0], a[1])
    # the same weights without the EVAR prefix (an encoder-only export) give the same embeddings
    plain = write_weights(tiny_file.parent.parent / "p" / tiny_file.parent.name, evar=False)
    bb2 = build_backbone(BackboneConfig("m2d", checkpoint=plain, overrides=TINY)).eval()
    with torch.inference_mode():
        torch.testing.assert_close(bb2.embed_windows(waves), a)


def test_unexpected_and_missing_keys_are_named(tmp_path: Path):
    folder = tmp_path / "x" / DEFAULT_FOLDER
    extra = write_weights(folder, extra={"logit_scale": torch.tensor(1.0)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\):\s+logit_scale"):
        build_backbone(BackboneConfig("m2d", checkpoint=extra, overrides=TINY))
    bb = build_backbone(
        BackboneConfig("m2d", checkpoint=extra, overrides=TINY, allow_unexpected=("logit_scale",))
    )
    assert "logit_scale" in bb.provenance()["ignored_keys"]

    no_stats = write_weights(tmp_path / "y" / DEFAULT_FOLDER, drop=("norm_stats",))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\):\s+norm_stats"):
        build_backbone(BackboneConfig("m2d", checkpoint=no_stats, overrides=TINY))
    bb = build_backbone(
        BackboneConfig("m2d", checkpoint=no_stats, overrides=TINY, allow_missing=("norm_stats",))
    )
    assert bb.provenance()["norm_stats"] == pytest.approx([-7.1, 4.2])  # the official fallback

    wrong_width = write_weights(tmp_path / "z" / DEFAULT_FOLDER)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        build_backbone(
            BackboneConfig(
                "m2d", checkpoint=wrong_width, overrides={"embed_dim": 64, "num_heads": 2, "depth": 2}
            )
        )
    bad_folder = write_weights(tmp_path / "m2d_vit_base-80x1001p16x16")
    renamed = tmp_path / "weights.pth"
    bad_folder.rename(renamed)
    with pytest.raises(CheckpointError, match="folder name"):
        build_backbone(BackboneConfig("m2d", checkpoint=renamed, overrides=TINY))


def test_frontend_frames_patches_and_normalisation(tiny_file: Path):
    bb = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY)).eval()
    # silence: power 0 -> log(float32 eps) in every bin, then (x - mean) / std with the file's norm_stats
    feats = bb.features(torch.zeros(2, 160000))
    assert feats.shape == (2, 1, 80, 1001)  # centred frames: 1 + 160000 // 160
    expected = (LOG_EPS - NORM_STATS[0]) / NORM_STATS[1]
    torch.testing.assert_close(feats, torch.full_like(feats, expected))
    # a constant (DC) signal: Hann-windowed DC lands in bins 0-1 (0, 40 Hz), below the 50 Hz lowest filter
    dc = bb.features(torch.full((1, 160000), 0.5))
    torch.testing.assert_close(dc, torch.full_like(dc, expected), atol=1e-3, rtol=0)
    with torch.inference_mode():
        frames, real = bb.embed_frames(torch.randn(2, 160000) * 0.1)
    assert frames.shape == (2, 62, 5 * 32) and real.shape == (2, 62)  # 1001 // 16 time steps, 5 x 32 stacked


def test_masking_full_lengths_changes_nothing_and_hides_padding(tiny_file: Path):
    bb = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY)).eval()
    torch.manual_seed(2)
    n, real_len = 32000, 15360  # 2 s window (201 frames, 12 steps); 97 real frames -> 7 real steps
    waves = torch.randn(2, n) * 0.1
    waves[:, real_len:] = 0.0
    with torch.inference_mode():
        plain = bb.embed_windows(waves)
        torch.testing.assert_close(bb.embed_windows(waves, torch.tensor([n, n])), plain, rtol=0, atol=0)
        lengths = torch.tensor([real_len, real_len])
        masked = bb.embed_windows(waves, lengths)
        frames, real = bb.embed_frames(waves, lengths)
        # samples beyond the last real step's frames (frame 111 ends at 111 * 160 + 200) cannot reach it
        noisy = waves.clone()
        start = 111 * 160 + 200
        noisy[:, start:] = torch.randn(2, n - start)
        masked_noisy = bb.embed_windows(noisy, lengths)
        plain_noisy = bb.embed_windows(noisy)
        alone = bb.embed_windows(waves[:1], lengths[:1])
        batched = bb.embed_windows(
            torch.cat([waves[:1], torch.randn(1, n) * 0.1]), torch.tensor([real_len, n])
        )
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)
    assert real.sum(1).tolist() == [7, 7]
    torch.testing.assert_close(masked, frames[:, :7].mean(1))
    assert not torch.allclose(masked, plain)
    torch.testing.assert_close(masked_noisy, masked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain_noisy, plain)


def test_embed_windows_is_differentiable(tiny_file: Path):
    bb = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY)).train()
    waves = (torch.randn(2, 8000) * 0.1).requires_grad_()
    out = bb.embed_windows(waves, torch.tensor([8000, 5000]))
    out.pow(2).sum().backward()
    trainable = [p for p in bb.encoder.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert bb.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert not bb.encoder.pos_embed.requires_grad  # fixed positions, as in the official encoder
    assert waves.grad is not None and waves.grad.abs().sum() > 0


@pytest.mark.slow
def test_full_size_random_model_embeds_a_10s_window():
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("m2d", random_init=True)).eval()
    assert bb.spec.audio_dim == 3840
    with torch.inference_mode():
        out = bb.embed_windows(torch.randn(1, 160000) * 0.1)
    assert out.shape == (1, 3840) and bool(torch.isfinite(out).all())


# --- pooling modes (docs/parity.md) ---------------------------------------------------------------


def test_reference_pooling_attends_to_padding_and_weights_windows_by_real_steps(tiny_file: Path):
    masked = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY)).eval()
    ref = build_backbone(
        BackboneConfig("m2d", checkpoint=tiny_file, overrides={**TINY, "pooling": "reference"})
    ).eval()
    assert (masked.pooling, ref.pooling) == ("masked", "reference") and ref.provenance()[
        "pooling"
    ] == "reference"
    torch.manual_seed(3)
    ws = ref.spec.window_samples  # 10 s: 1001 frames, 62 time steps
    windows = torch.randn(3, ws) * 0.1
    windows[1, 48_000:] = 0.0  # clip 0 = 13 s: a full window and 3 s (301 frames, 19 real steps)
    lengths = torch.tensor([ws, 48_000, ws])
    clip_of_window = torch.tensor([0, 0, 1])
    with torch.inference_mode():
        frames, real = ref.embed_frames(windows, lengths)
        unmasked, _ = masked.embed_frames(windows)  # no lengths: nothing masked
        emb = ref.embed_windows(windows, lengths)
        pooled = ref.pool_windows(emb, clip_of_window, lengths, 2)
        masked_emb = masked.embed_windows(windows, lengths)
        masked_pooled = masked.pool_windows(masked_emb, clip_of_window, lengths, 2)
    assert real.sum(1).tolist() == [62, 19, 62]
    torch.testing.assert_close(frames, unmasked, rtol=0, atol=0)  # padded patches are attended to
    tokens = torch.cat([frames[0], frames[1, :19]])  # all real time steps of clip 0's windows, one mean
    torch.testing.assert_close(pooled[0], tokens.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pooled[1], emb[2], rtol=1e-6, atol=1e-7)
    assert ref.window_weights(lengths).tolist() == [62.0, 19.0, 62.0]
    assert masked.window_weights(lengths).tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(masked_pooled[0], masked_emb[:2].mean(0))  # default: mean of the window means
    assert not torch.allclose(masked_emb[1], emb[1])  # the attention mask matters for the short window
    # full windows: same in both modes
    torch.testing.assert_close(masked_emb[0], emb[0], rtol=1e-5, atol=1e-6)


def test_unknown_pooling_fails_clearly(tiny_file: Path):
    with pytest.raises(ValueError, match="pooling must be one of masked, reference"):
        build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides={**TINY, "pooling": "max"}))


def test_embed_clips_and_table_provenance_use_the_backbones_pooling(tiny_file: Path):
    """The per-clip path (``embed_clips``, the runner's reference in tests and benchmarks) pools with the
    backbone's own ``pool_windows``, and the recorded pooling names the mode."""
    from extract.windowing import embed_clips, split_windows

    ref = build_backbone(
        BackboneConfig("m2d", checkpoint=tiny_file, overrides={**TINY, "pooling": "reference"})
    ).eval()
    torch.manual_seed(4)
    clip = torch.randn(ref.spec.window_samples + 48_000) * 0.1  # 13 s: a full window and 3 s
    windows, lengths = split_windows(clip, ref.spec.window_samples, ref.spec.padding)
    with torch.inference_mode():
        got = embed_clips(ref, [clip])[0]
        emb = ref.embed_windows(windows, lengths)
    torch.testing.assert_close(got, (62 * emb[0] + 19 * emb[1]) / 81, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got, emb.mean(0))
    assert ref.pooling_description.startswith("reference")
    masked = build_backbone(BackboneConfig("m2d", checkpoint=tiny_file, overrides=TINY))
    assert masked.pooling_description == "mean over windows with real samples"
