"""PaSST backbone: official key layout, release-format loading, front-ends, pooling, gradients."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch
import torchaudio

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.passt import VARIANTS, PaSSTBackbone, build_passt_net
from extract.checkpoints import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = {"depth": 1, "window_seconds": 1.0}


def fixture_keys(variant: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"passt_{variant}_keys.json").read_text())["keys"]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, tuple[PaSSTBackbone, Path]]:
    """Random tiny model per variant, saved as a flat state dict (the release format)."""
    out = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        model = build_backbone(BackboneConfig("passt", variant=variant, random_init=True, overrides=TINY))
        path = tmp_path_factory.mktemp(variant) / VARIANTS[variant].checkpoint_file
        torch.save(model.net.state_dict(), path)
        out[variant] = (model, path)
    return out


def waves(n: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, samples, generator=g)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_full_size_structure_matches_official_checkpoint_keys(variant):
    v = VARIANTS[variant]
    net = build_passt_net(v.arch, v.stride, input_tdim=v.input_tdim, empty=True)
    got = {k: list(t.shape) for k, t in net.state_dict().items()}
    assert all(t.is_meta for t in net.state_dict().values())
    assert got == fixture_keys(variant)


def test_spec_and_registry():
    model = build_backbone(BackboneConfig("passt", random_init=True, overrides={"depth": 1}))
    assert isinstance(model, PaSSTBackbone)
    s = model.spec
    assert (s.name, s.variant, s.sample_rate, s.audio_dim, s.text_dim, s.padding) == (
        "passt",
        "cpjku",
        32000,
        768,
        None,
        "zero",
    )
    assert s.window_samples == 320_000
    assert model.provenance()["arch"] == "passt_s_p16_s16_128_ap468"
    assert model.provenance()["checkpoint_sha256"] is None and model.provenance()["random_init"] is True


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_release_format_file_loads_and_embeds(variant, tiny_files):
    original, path = tiny_files[variant]
    loaded = build_backbone(BackboneConfig("passt", variant=variant, checkpoint=path, overrides=TINY))
    x = waves(3, loaded.spec.window_samples)
    lengths = torch.tensor([32000, 20000, 9000])
    with torch.inference_mode():
        a = loaded.embed_windows(x, lengths)
        b = loaded.embed_windows(x, lengths)
        ref = original.embed_windows(x, lengths)
    assert a.shape == (3, 768) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # deterministic in eval mode
    torch.testing.assert_close(a, ref, rtol=0, atol=0)  # the file carried every weight
    prov = loaded.provenance()
    assert prov["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["random_init"] is False and prov["arch"] == VARIANTS[variant].arch


def test_embedding_is_mean_of_cls_and_dist_tokens(tiny_files):
    model, _ = tiny_files["cpjku"]
    x = waves(2, model.spec.window_samples, seed=1)
    with torch.inference_mode():
        spec = model.spectrogram(x)
        cls, dist = model.net.forward_features(spec.unsqueeze(1))
        emb = model.embed_windows(x)
    torch.testing.assert_close(emb, (cls + dist) / 2)
    assert not torch.allclose(cls, dist)


def test_kaldi_front_end_frames_and_zeroed_padding():
    model = PaSSTBackbone("cpjku", random_init=True, overrides={"depth": 1})
    x = waves(2, 320_000, seed=2)
    x[1, 16_000:] = 0.0
    spec = model.spectrogram(x, torch.tensor([320_000, 16_000]))
    assert spec.shape == (2, 128, 998)  # 1 + (320000 - 800) // 320
    # the real frames equal torchaudio's Kaldi fbank of the real samples (unnormalised) ...
    ref = torchaudio.compliance.kaldi.fbank(
        x[1:2, :16_000],
        num_mel_bins=128,
        sample_frequency=32000,
        frame_length=25.0,
        frame_shift=10.0,
        dither=0.0,
    )
    assert ref.shape == (48, 128)
    torch.testing.assert_close(spec[1, :, :48], ref.T, rtol=1e-5, atol=1e-5)
    # ... and every frame not fully inside them is zero, as in the reference
    assert torch.count_nonzero(spec[1, :, 48:]) == 0
    assert torch.count_nonzero(spec[0]) > 0.99 * spec[0].numel()


def test_cpjku_ignores_samples_after_the_window_length(tiny_files):
    model, _ = tiny_files["cpjku"]
    clean = waves(1, model.spec.window_samples, seed=3)
    clean[:, 12_000:] = 0.0
    noisy = clean.clone()
    noisy[:, 12_000:] = 0.5 * torch.randn(1, model.spec.window_samples - 12_000)
    n = torch.tensor([12_000])
    with torch.inference_mode():
        torch.testing.assert_close(
            model.embed_windows(clean, n), model.embed_windows(noisy, n), rtol=0, atol=0
        )


def test_hear21_front_end_is_hear21passt_mel():
    model = PaSSTBackbone("hear21", random_init=True, overrides={"depth": 1})
    x = waves(1, 320_000, seed=4)
    spec = model.spectrogram(x)
    assert spec.shape == (1, 128, 1000)
    from hear21passt.models.preprocess import AugmentMelSTFT

    mel = AugmentMelSTFT(
        n_mels=128,
        sr=32000,
        win_length=800,
        hopsize=320,
        n_fft=1024,
        freqm=48,
        timem=192,
        htk=False,
        fmin=0.0,
        fmax=None,
        norm=1,
        fmin_aug_range=10,
        fmax_aug_range=2000,
    ).eval()
    torch.testing.assert_close(spec, mel(x))
    model.train()  # mel augmentation stays off unless asked for
    assert not model.mel.training and model.net.training
    torch.testing.assert_close(model.spectrogram(x), spec)


def test_strict_loading_names_keys_and_honours_allow_lists(tiny_files, tmp_path):
    _, path = tiny_files["cpjku"]
    sd = torch.load(path, weights_only=True)
    del sd["blocks.0.attn.qkv.weight"]
    sd["head.2.weight"] = torch.zeros(3)
    sd["time_new_pos_embed"] = torch.zeros(1, 768, 1, 99)
    bad = tmp_path / "bad.pt"
    torch.save({"model": sd}, bad)  # DeiT-style container is unwrapped
    with pytest.raises(CheckpointError) as err:
        PaSSTBackbone("cpjku", bad, overrides=TINY)
    msg = str(err.value)
    assert "blocks.0.attn.qkv.weight" in msg and "head.2.weight" in msg
    assert "time_new_pos_embed: checkpoint (1, 768, 1, 99) vs model (1, 768, 1, 62)" in msg
    sd["time_new_pos_embed"] = torch.zeros(1, 768, 1, 62)
    torch.save({"model": sd}, bad)
    model = PaSSTBackbone(
        "cpjku", bad, allow_missing=("blocks.0.attn.qkv.*",), allow_unexpected=("head.2.*",), overrides=TINY
    )
    assert model.provenance()["allowed_missing"] == ["blocks.0.attn.qkv.weight"]
    assert model.provenance()["allowed_unexpected"] == ["head.2.weight"]


def test_pickled_file_needs_explicit_trust(tiny_files, tmp_path):
    _, path = tiny_files["hear21"]
    f = tmp_path / "pickled.pt"
    torch.save({"model": torch.load(path, weights_only=True), "args": argparse.Namespace(lr=1)}, f)
    with pytest.raises(CheckpointError, match="trust_pickle"):
        PaSSTBackbone("hear21", f, overrides=TINY)
    model = PaSSTBackbone("hear21", f, overrides={**TINY, "trust_pickle": True})
    assert model.provenance()["checkpoint"] == str(f.resolve())


def test_bad_configurations_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="passt-s-f128-p16-s16-ap.468.pt"):
        build_backbone(BackboneConfig("passt"))
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone(BackboneConfig("passt", variant="hear21", checkpoint=tmp_path / "nope.pt"))
    with pytest.raises(KeyError, match="cpjku"):
        build_backbone(BackboneConfig("passt", variant="passt-l", random_init=True))
    with pytest.raises(ValueError, match="unknown override"):
        build_backbone(BackboneConfig("passt", random_init=True, overrides={"depht": 1}))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_embed_windows_is_differentiable_with_structured_patchout(variant):
    torch.manual_seed(0)
    model = PaSSTBackbone(
        variant, random_init=True, overrides={**TINY, "s_patchout_t": 2, "s_patchout_f": 1}
    ).train()
    assert (model.net.s_patchout_t, model.net.s_patchout_f) == (2, 1)
    x = waves(2, model.spec.window_samples, seed=5)
    emb = model.embed_windows(x, torch.tensor([32000, 20000]))
    emb.pow(2).mean().backward()
    grads = {k: p.grad for k, p in model.net.named_parameters()}
    no_grad = sorted(k for k, g in grads.items() if g is None)
    # the classification heads come after the embedding
    assert no_grad == [
        "head.0.bias",
        "head.0.weight",
        "head.1.bias",
        "head.1.weight",
        "head_dist.bias",
        "head_dist.weight",
    ]
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert model.net.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
