"""LAION-CLAP backbone: offline construction, official key layout, package-faithful inputs and embeddings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.laion_clap import (
    VARIANTS,
    LaionCLAPBackbone,
    build_clap_model,
    import_laion_clap,
    quantize_int16,
    split_and_join,
)
from extract.checkpoints import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
TINY_VOCAB = 300  # the size of conftest's tokenizer_dir
TINY = {
    "text_config": {"vocab_size": TINY_VOCAB, "num_hidden_layers": 1, "intermediate_size": 64},
    "expected_vocab": TINY_VOCAB,
}
#: every reference-parity option switched away from its default
NON_REFERENCE = {"padding": "repeat", "eval_in_training": False, "bn0_trainable": True, "split_text": False}


@pytest.fixture(scope="module")
def tiny(tokenizer_dir, tmp_path_factory) -> tuple[LaionCLAPBackbone, Path]:
    """A random model (full HTSAT-tiny, 1-layer text tower) saved in the release format."""
    torch.manual_seed(0)
    model = build_backbone(
        BackboneConfig("laion-clap", tokenizer=tokenizer_dir, random_init=True, overrides=TINY)
    )
    state = {"module." + k: v for k, v in model.clap.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514)[None]
    path = tmp_path_factory.mktemp("laion") / "630k-audioset-best.pt"
    torch.save({"epoch": 45, "name": "630k-audioset", "state_dict": state}, path)
    return model, path


def waves(n: int, samples: int = 480_000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, samples, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
def test_import_and_construction_never_touch_the_network(tokenizer_dir, tmp_path):
    script = textwrap.dedent(f"""
        import socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network access during the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from extract.backbones import BackboneConfig, build_backbone
        model = build_backbone(BackboneConfig("laion-clap", tokenizer={str(tokenizer_dir)!r},
                                              random_init=True, overrides={TINY!r}))
        print("built", type(model).__name__, "attempts", len(attempts))
    """)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "built LaionCLAPBackbone attempts 0" in out.stdout
    assert not (tmp_path / "hf").exists()  # nothing was cached either


@pytest.mark.parametrize(
    "variant", ["630k-audioset-best", pytest.param("630k-audioset-fusion-best", marks=pytest.mark.slow)]
)
def test_full_size_structure_matches_official_checkpoint_keys(variant):
    fixture = json.loads((FIXTURES / f"laion_{variant}_keys.json").read_text())
    expected = {k: v for k, v in fixture["keys"].items() if k not in fixture["dropped_on_load"]}
    model, cfg = build_clap_model(variant, meta=True)
    state = model.state_dict()
    assert all(t.is_meta for t in state.values())
    assert {k: list(t.shape) for k, t in state.items()} == expected
    assert cfg["audio_cfg"]["sample_rate"] == 48000 and cfg["audio_cfg"]["clip_samples"] == 480_000


def test_release_format_checkpoint_loads_and_embeds(tiny, tokenizer_dir):
    original, path = tiny
    model = build_backbone(
        BackboneConfig("laion-clap", checkpoint=path, tokenizer=tokenizer_dir, overrides=TINY)
    )
    s = model.spec
    assert (s.name, s.variant, s.sample_rate, s.audio_dim, s.text_dim, s.padding, s.window_samples) == (
        "laion-clap",
        "630k-audioset-best",
        48000,
        512,
        512,
        "zero",
        480_000,
    )
    x, n = waves(2), torch.tensor([480_000, 100_000])
    with torch.inference_mode():
        audio, text = model.embed_windows(x, n), model.embed_text(["a dog barks", "rain falls"])
        torch.testing.assert_close(audio, original.embed_windows(x, n), rtol=0, atol=0)
        torch.testing.assert_close(text, original.embed_text(["a dog barks", "rain falls"]), rtol=0, atol=0)
        alone = model.embed_windows(x[1:], n[1:])
    assert audio.shape == (2, 512) and text.shape == (2, 512)
    assert torch.isfinite(audio).all() and torch.isfinite(text).all()
    torch.testing.assert_close(alone, audio[1:], rtol=1e-4, atol=1e-5)  # batch-independent
    prov = model.provenance()
    assert prov["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["dropped_keys"] == ["text_branch.embeddings.position_ids"]
    assert prov["module_prefix_stripped"] is True and prov["container"] == "state_dict"


def test_strict_loading_names_keys(tiny, tokenizer_dir, tmp_path):
    _, path = tiny
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["module.audio_projection.0.bias"]
    ckpt["state_dict"]["module.audio_branch.patch_embed.mel_conv2d.weight"] = torch.zeros(96, 1, 4, 12)
    bad = tmp_path / "fusion-mixup.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError) as err:
        LaionCLAPBackbone("630k-audioset-best", bad, tokenizer_dir, overrides=TINY)
    assert "audio_projection.0.bias" in str(err.value)
    assert "audio_branch.patch_embed.mel_conv2d.weight" in str(err.value)


def test_quantisation_matches_the_package():
    _, data = import_laion_clap()
    x = torch.tensor([0.5, -0.25, 1.5, -3.0, 1e-5, 0.123456], dtype=torch.float32)
    expected = data.int16_to_float32(data.float32_to_int16(x.numpy()))
    np.testing.assert_array_equal(quantize_int16(x).numpy(), expected)
    np.testing.assert_array_equal(
        expected[:4], np.array([16383, -8191, 32767, -32767], np.float32) / np.float32(32767)
    )
    w = x.clone().requires_grad_(True)
    quantize_int16(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(x))  # straight-through


@pytest.fixture(scope="module")
def tiny_non_reference(tiny, tokenizer_dir) -> LaionCLAPBackbone:
    """The ``tiny`` model's weights with every reference-parity option switched off."""
    _, path = tiny
    return build_backbone(
        BackboneConfig(
            "laion-clap", checkpoint=path, tokenizer=tokenizer_dir, overrides={**TINY, **NON_REFERENCE}
        )
    )


def test_default_inputs_are_zero_padded_windows_as_the_reference(tiny):
    model, _ = tiny
    assert model.spec.padding == "zero"
    x = waves(2, seed=1)
    x[1, 100_000:] = 0.7  # whatever follows the real samples becomes zeros
    inputs = model.audio_inputs(x, torch.tensor([480_000, 100_000]))
    assert inputs["waveform"].shape == (2, 480_000) and not inputs["longer"].any()
    torch.testing.assert_close(
        inputs["waveform"][1, :100_000], quantize_int16(x[1, :100_000]), rtol=0, atol=0
    )
    assert torch.count_nonzero(inputs["waveform"][1, 100_000:]) == 0  # no repeats
    torch.testing.assert_close(inputs["waveform"][0], quantize_int16(x[0]), rtol=0, atol=0)
    short = model.audio_inputs(x[1:, :100_000], torch.tensor([100_000]))  # a short window is zero-padded too
    torch.testing.assert_close(short["waveform"], inputs["waveform"][1:], rtol=0, atol=0)


def test_inputs_are_repeat_padded_real_samples(tiny_non_reference):
    model = tiny_non_reference
    assert model.spec.padding == "repeat"
    x = waves(2, seed=1)
    x[1, 100_000:] = 0.7  # padding content must not matter: only the real samples are repeated
    inputs = model.audio_inputs(x, torch.tensor([480_000, 100_000]))
    assert inputs["waveform"].shape == (2, 480_000) and not inputs["longer"].any()
    q = quantize_int16(x[1, :100_000])
    torch.testing.assert_close(inputs["waveform"][1, :400_000], q.repeat(4), rtol=0, atol=0)
    assert torch.count_nonzero(inputs["waveform"][1, 400_000:]) == 0  # repeatpad: whole repeats, then zeros
    torch.testing.assert_close(inputs["waveform"][0], quantize_int16(x[0]), rtol=0, atol=0)
    empty = model.audio_inputs(torch.zeros(1, 480_000), torch.tensor([0]))  # padding-only window: left as is
    assert empty["waveform"].shape == (1, 480_000) and torch.count_nonzero(empty["waveform"]) == 0
    with pytest.raises(ValueError, match="window 0 has 480001 real samples"):
        model.audio_inputs(x[:1], torch.tensor([480_001]))


def test_embeddings_are_the_package_embeddings_before_normalisation(tiny):
    model, _ = tiny
    x, n = waves(1, seed=2), torch.tensor([48_000])
    texts = ["a dog barks loudly", "rain falls on a tin roof"]
    _, data = import_laion_clap()
    with torch.inference_mode():
        audio = model.embed_windows(x, n)
        # as the reference: a zero-padded 10 s window
        zero_padded = torch.cat([x[0, :48_000], torch.zeros(432_000)])
        packaged = data.get_audio_features(
            {},
            quantize_int16(zero_padded),
            480_000,
            data_truncating="rand_trunc",
            data_filling="repeatpad",
            audio_cfg=model.audio_cfg,
        )
        ref_audio = model.clap.get_audio_embedding([packaged])  # the package's (normalised) embedding
        text = model.embed_text(texts)
        tok = model.tokenizer(
            texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        )
        ref_text = model.clap.get_text_embedding(dict(tok))
    torch.testing.assert_close(F.normalize(audio, dim=-1), ref_audio, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(F.normalize(text, dim=-1), ref_text, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(text.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(audio.norm(dim=-1), torch.ones(1))


def test_embed_windows_is_differentiable(tiny):
    model, _ = tiny
    model.train()
    try:
        x = waves(1, seed=3).requires_grad_(True)
        model.embed_windows(x, torch.tensor([240_000])).pow(2).mean().backward()
    finally:
        model.eval()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[:, :240_000].abs().sum() > 0
    assert torch.count_nonzero(x.grad[:, 240_000:]) == 0  # samples beyond the window length are not used
    for p in (
        model.clap.audio_projection[0].weight,
        model.clap.audio_branch.layers[0].blocks[0].attn.qkv.weight,
    ):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    model.clap.zero_grad(set_to_none=True)


def test_training_mode_keeps_the_clap_model_in_eval_mode_by_default(tiny, tiny_non_reference):
    model, _ = tiny
    x, n = waves(2, seed=4), torch.tensor([480_000, 200_000])
    with torch.inference_mode():
        ref = model.embed_windows(x, n)
    model.train()
    try:
        assert model.training and not any(m.training for m in model.clap.modules())
        with torch.inference_mode():
            # no dropout, no SpecAugment
            torch.testing.assert_close(model.embed_windows(x, n), ref, rtol=0, atol=0)
    finally:
        model.eval()
    other = tiny_non_reference.train()
    try:
        assert other.clap.training and other.clap.audio_branch.bn0.training
    finally:
        other.eval()


def test_bn0_gets_no_gradient_by_default(tiny, tiny_non_reference):
    model, _ = tiny
    assert not any(p.requires_grad for p in model.clap.audio_branch.bn0.parameters())
    assert all(p.requires_grad for p in tiny_non_reference.clap.audio_branch.bn0.parameters())
    assert model.provenance()["bn0_trainable"] is False


def test_text_is_split_on_commas_and_semicolons_and_rejoined(tiny, tiny_non_reference):
    assert split_and_join(" a dog, barks ;; loudly,,in the park ") == "a dog barks loudly in the park"
    assert split_and_join("") == "" and split_and_join(",;") == ""
    model, _ = tiny
    with torch.inference_mode():
        split = model.embed_text(["a dog,barks;rain falls", "a dog barks rain falls"])
        raw = tiny_non_reference.embed_text(["a dog,barks;rain falls", "a dog barks rain falls"])
    torch.testing.assert_close(split[0], split[1], rtol=0, atol=0)
    torch.testing.assert_close(raw[1], split[1], rtol=0, atol=0)  # same weights
    assert not torch.allclose(raw[0], raw[1])


def test_bad_configurations_fail_clearly(tokenizer_dir):
    with pytest.raises(CheckpointError, match="630k-audioset-fusion-best.pt"):
        build_backbone(
            BackboneConfig("laion-clap", variant="630k-audioset-fusion-best", tokenizer=tokenizer_dir)
        )
    with pytest.raises(KeyError, match="630k-audioset-best"):
        build_backbone(
            BackboneConfig("laion-clap", variant="music", random_init=True, tokenizer=tokenizer_dir)
        )
    with pytest.raises(ValueError, match="unknown override"):
        build_backbone(
            BackboneConfig(
                "laion-clap", random_init=True, tokenizer=tokenizer_dir, overrides={"window_seconds": 5}
            )
        )
    with pytest.raises(ValueError, match="padding must be one of zero, repeat"):
        build_backbone(
            BackboneConfig(
                "laion-clap", random_init=True, tokenizer=tokenizer_dir, overrides={**TINY, "padding": "loop"}
            )
        )
    assert set(VARIANTS) >= {"630k-audioset-best", "630k-audioset-fusion-best"}


@pytest.mark.slow
def test_fusion_variant_embeds_like_the_package(tokenizer_dir):
    torch.manual_seed(0)
    model = LaionCLAPBackbone(
        "630k-audioset-fusion-best", None, tokenizer_dir, random_init=True, overrides=TINY
    )
    x = waves(1, seed=4)
    _, data = import_laion_clap()
    with torch.inference_mode():
        inputs = model.audio_inputs(x, torch.tensor([200_000]))
        emb = model.embed_windows(x, torch.tensor([200_000]))
        # the default padding, as the reference
        zero_padded = torch.cat([x[0, :200_000], torch.zeros(280_000)])
        packaged = data.get_audio_features(
            {},
            quantize_int16(zero_padded),
            480_000,
            data_truncating="fusion",
            data_filling="repeatpad",
            audio_cfg=model.audio_cfg,
        )
        ref = model.clap.get_audio_embedding([packaged])
    assert inputs["mel_fusion"].shape == (1, 4, 1001, 64)
    assert emb.shape == (1, 512) and torch.isfinite(emb).all()
    torch.testing.assert_close(F.normalize(emb, dim=-1), ref, rtol=1e-5, atol=1e-6)
