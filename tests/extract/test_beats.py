"""BEATs backbone: official key layout, release file format, front-end facts, masking, gradients."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.beats import (
    BEATS_ITER3_PLUS_AS2M_CFG,
    FBANK_MEAN,
    FBANK_STD,
    UNUSED_KEYS,
    BEATsArch,
    BEATsModel,
    WeightNormConv1d,
    relative_position_buckets,
)
from extract.checkpoints import CheckpointError

FIXTURE = Path(__file__).parent / "fixtures" / "beats_iter3_plus_AS2M_keys.json"
TINY_CFG = dict(
    BEATS_ITER3_PLUS_AS2M_CFG,
    embed_dim=16,
    encoder_embed_dim=24,
    encoder_ffn_embed_dim=32,
    encoder_attention_heads=3,
    encoder_layers=2,
    conv_pos=16,
    conv_pos_groups=4,
    num_buckets=32,
    max_distance=64,
    predictor_class=5,
)
LOG_EPS = math.log(torch.finfo(torch.float32).eps)  # Kaldi fbank floors energies at float eps


pytestmark = pytest.mark.usefixtures("two_torch_threads")


def write_release_file(
    path: Path, cfg: dict, seed: int = 0, finetuned: bool = False, extra: dict | None = None, drop: tuple = ()
) -> Path:
    """A random state dict in the official file layout: {'cfg', 'model'}; fine-tuned releases add the
    AudioSet head ``predictor.*`` to 'model' and a 'label_dict'."""
    torch.manual_seed(seed)
    cfg = dict(cfg, finetuned_model=finetuned)
    model = BEATsModel(BEATsArch.from_cfg(cfg))
    state = {k: torch.randn_like(v) * 0.05 for k, v in model.state_dict().items()}
    state["encoder.pos_conv.0.weight_g"] = state["encoder.pos_conv.0.weight_g"].abs() + 0.5
    data = {"cfg": cfg, "model": state}
    if finetuned:
        state["predictor.weight"] = torch.randn(cfg["predictor_class"], cfg["encoder_embed_dim"])
        state["predictor.bias"] = torch.zeros(cfg["predictor_class"])
        data["label_dict"] = {i: f"/m/{i}" for i in range(cfg["predictor_class"])}
    state.update(extra or {})
    for k in drop:
        state.pop(k)
    torch.save(data, path)
    return path


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    return write_release_file(tmp_path / "BEATs_tiny.pt", TINY_CFG)


def test_full_size_model_matches_official_key_layout():
    fixture = json.loads(FIXTURE.read_text())
    cfg = dict(BEATS_ITER3_PLUS_AS2M_CFG)
    assert {k: cfg[k] for k in fixture["cfg_shape_fields"]} == fixture["cfg_shape_fields"]
    with torch.device("meta"):
        model = BEATsModel(BEATsArch.from_cfg(cfg))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == fixture["encoder_keys"]
    assert sum(math.prod(s) for s in ours.values()) > 90_000_000  # the ~90M-parameter base model
    assert "predictor.weight" not in ours  # BEATs_iter3_plus_AS2M.pt is the self-supervised model: no head
    # allow-list = the fine-tuned head
    assert set(UNUSED_KEYS) == set(fixture["unused_keys_finetuned_releases"])


def test_relative_position_buckets_hand_computed():
    # 320 buckets, max distance 800: 160 per direction, exact below 80, logarithmic up to 800
    rel = torch.tensor([0, 1, -1, -79, -80, -200, 800, 5000])
    expected = [0, 161, 1, 79, 80, 80 + int(math.log(200 / 80) / math.log(10) * 80), 160 + 159, 160 + 159]
    assert relative_position_buckets(rel, 320, 800).tolist() == expected


def test_weight_norm_conv_equals_torch_weight_norm():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 8, kernel_size=6, padding=3, groups=2)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    ours = WeightNormConv1d(8, 6, 2)
    with torch.no_grad():
        ours.weight_g.copy_(conv.parametrizations.weight.original0)
        ours.weight_v.copy_(conv.parametrizations.weight.original1)
        ours.bias.copy_(conv.bias)
    assert tuple(ours.weight_g.shape) == (1, 1, 6)
    x = torch.randn(2, 8, 20)
    torch.testing.assert_close(ours(x), conv(x))


def test_release_file_loads_and_embeds(tiny_file: Path):
    bb = build_backbone(BackboneConfig("beats", checkpoint=tiny_file)).eval()
    assert bb.spec.sample_rate == 16000 and bb.spec.audio_dim == 24 and bb.spec.padding == "zero"
    assert bb.spec.window_samples == 160000
    prov = bb.provenance()
    assert prov["checkpoint"] == str(tiny_file) and len(prov["checkpoint_sha256"]) == 64
    assert prov["ignored_keys"] == [] and not prov["random_init"] and bb.spec.variant == "BEATs_tiny"
    assert prov["cfg"]["encoder_layers"] == 2
    saved = torch.load(tiny_file, weights_only=True)["model"]
    torch.testing.assert_close(bb.model.encoder.pos_conv[0].weight_v, saved["encoder.pos_conv.0.weight_v"])
    # one relative-position table shared by all layers, loaded from the file
    assert (
        bb.model.encoder.layers[1].self_attn.relative_attention_bias
        is bb.model.encoder.layers[0].self_attn.relative_attention_bias
    )
    torch.manual_seed(1)
    waves = torch.randn(3, 16000) * 0.1  # 1 s: 98 frames -> 6 x 8 patches
    with torch.inference_mode():
        tokens, real = bb.embed_frames(waves)
        a = bb.embed_windows(waves)
        b = bb.embed_windows(waves)
    assert tokens.shape == (3, 6 * 8, 24) and bool(real.all())
    assert a.shape == (3, 24) and bool(torch.isfinite(a).all())
    assert torch.equal(a, b)  # deterministic
    torch.testing.assert_close(a, tokens.mean(1))
    assert not torch.allclose(a[0], a[1])  # different inputs, different embeddings


def test_finetuned_release_head_is_allow_listed(tmp_path: Path, tiny_file: Path):
    ft = write_release_file(tmp_path / "BEATs_tiny_finetuned_on_AS2M_cpt1.pt", TINY_CFG, finetuned=True)
    bb = build_backbone(BackboneConfig("beats", checkpoint=ft)).eval()
    assert bb.provenance()["ignored_keys"] == ["predictor.bias", "predictor.weight"]
    assert not hasattr(bb.model, "predictor")
    # same encoder weights (same seed) as the self-supervised file: same embeddings
    ssl = build_backbone(BackboneConfig("beats", checkpoint=tiny_file)).eval()
    waves = torch.randn(1, 8000) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(bb.embed_windows(waves), ssl.embed_windows(waves))


def test_unexpected_and_missing_keys_are_named(tmp_path: Path):
    extra = write_release_file(tmp_path / "extra.pt", TINY_CFG, extra={"encoder.extra_table": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\):\s+encoder\.extra_table"):
        build_backbone(BackboneConfig("beats", checkpoint=extra))
    bb = build_backbone(BackboneConfig("beats", checkpoint=extra, allow_unexpected=("encoder.extra_*",)))
    assert "encoder.extra_table" in bb.provenance()["ignored_keys"]

    missing = write_release_file(tmp_path / "missing.pt", TINY_CFG, drop=("encoder.pos_conv.0.weight_g",))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\):\s+encoder\.pos_conv\.0\.weight_g"):
        build_backbone(BackboneConfig("beats", checkpoint=missing))

    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {}}, wrong)
    with pytest.raises(CheckpointError, match="'cfg'"):
        build_backbone(BackboneConfig("beats", checkpoint=wrong))
    with pytest.raises(ValueError, match="unknown override"):
        build_backbone(BackboneConfig("beats", random_init=True, overrides={"layers": 2}))
    with pytest.raises(CheckpointError, match="max_distance"):
        build_backbone(BackboneConfig("beats", checkpoint=extra, overrides={"max_distance": 100}))
    bb = build_backbone(
        BackboneConfig(
            "beats", checkpoint=extra, allow_unexpected=("encoder.extra_*",), overrides={"dropout": 0.2}
        )
    )
    assert bb.arch.dropout == 0.2 and bb.provenance()["cfg"]["dropout"] == 0.2


def test_frontend_frames_and_normalisation_constants():
    bb = build_backbone(
        BackboneConfig(
            "beats",
            random_init=True,
            overrides={
                k: TINY_CFG[k]
                for k in (
                    "embed_dim",
                    "encoder_embed_dim",
                    "encoder_ffn_embed_dim",
                    "encoder_attention_heads",
                    "encoder_layers",
                    "conv_pos",
                    "conv_pos_groups",
                    "num_buckets",
                    "max_distance",
                )
            },
        )
    )
    assert bb.provenance()["random_init"] and bb.spec.variant == "BEATs_iter3_plus_AS2M"
    # a constant signal has no energy after Kaldi's per-frame DC removal: every bin is log(eps), normalised
    feats = bb.features(torch.full((2, 160000), 0.25))
    assert feats.shape == (2, 998, 128)  # 1 + (160000 - 400) // 160
    expected = (LOG_EPS - 15.41663) / (2 * 6.55582)
    assert (FBANK_MEAN, FBANK_STD) == (15.41663, 6.55582)
    torch.testing.assert_close(feats, torch.full_like(feats, expected), atol=1e-4, rtol=0)
    assert abs(expected - (-2.39170)) < 1e-4
    tokens, _ = bb.embed_frames(torch.zeros(1, 160000))
    assert tokens.shape == (1, 62 * 8, 24)  # 998 // 16 time x 128 // 16 frequency patches


def test_masking_full_lengths_changes_nothing_and_hides_padding(tiny_file: Path):
    bb = build_backbone(BackboneConfig("beats", checkpoint=tiny_file)).eval()
    torch.manual_seed(2)
    n, real_len = 32000, 15360  # 2 s window; 96 real frames = 6 patch columns
    waves = torch.randn(2, n) * 0.1
    waves[:, real_len:] = 0.0
    with torch.inference_mode():
        plain = bb.embed_windows(waves)
        full = bb.embed_windows(waves, torch.tensor([n, n]))
        torch.testing.assert_close(full, plain, rtol=0, atol=0)
        lengths = torch.tensor([real_len, real_len])
        masked = bb.embed_windows(waves, lengths)
        tokens, real = bb.embed_frames(waves, lengths)
        # content beyond the last real patch column's frames cannot reach the masked embedding
        noisy = waves.clone()
        noisy[:, real_len + 240 :] = torch.randn(2, n - real_len - 240)
        masked_noisy = bb.embed_windows(noisy, lengths)
        plain_noisy = bb.embed_windows(noisy)
        # a window alone and inside a batch with a full-length neighbour: same embedding
        alone = bb.embed_windows(waves[:1], lengths[:1])
        batched = bb.embed_windows(
            torch.cat([waves[:1], torch.randn(1, n) * 0.1]), torch.tensor([real_len, n])
        )
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)
    assert real.shape == (2, 12 * 8) and real.sum(1).tolist() == [6 * 8, 6 * 8]
    torch.testing.assert_close(masked, (tokens * real[..., None]).sum(1) / real.sum(1, keepdim=True))
    assert not torch.allclose(masked, plain)
    torch.testing.assert_close(masked_noisy, masked, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain_noisy, plain)


def test_embed_windows_is_differentiable(tiny_file: Path):
    bb = build_backbone(BackboneConfig("beats", checkpoint=tiny_file)).train()
    waves = (torch.randn(2, 8000) * 0.1).requires_grad_()
    out = bb.embed_windows(waves, torch.tensor([8000, 5000]))
    out.pow(2).sum().backward()
    grads = [p.grad for p in bb.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert bb.model.encoder.pos_conv[0].weight_g.grad.abs().sum() > 0
    assert bb.model.patch_embedding.weight.grad.abs().sum() > 0
    assert waves.grad is not None and waves.grad.abs().sum() > 0


@pytest.mark.slow
def test_full_size_random_model_embeds_a_10s_window():
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig("beats", random_init=True)).eval()
    with torch.inference_mode():
        out = bb.embed_windows(torch.randn(1, 160000) * 0.1)
    assert out.shape == (1, 768) and bool(torch.isfinite(out).all())
