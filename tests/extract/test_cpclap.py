"""CP-CLAP backbone and the RoBERTa tokenizer-folder loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from extract.backbones import BackboneConfig, build_backbone
from extract.backbones.cpclap import CPCLAPBackbone, build_retrieval_layout, clean_caption
from extract.checkpoints import CheckpointError
from extract.tokenizers import TokenizerError, load_roberta_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
TINY_VOCAB = 300  # the size of conftest's tokenizer_dir
TINY_TEXT = dict(
    vocab_size=TINY_VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
)
TINY = {"depth": 1, "window_seconds": 1.0, "text_config": TINY_TEXT, "expected_vocab": TINY_VOCAB}


@pytest.fixture(scope="module")
def tiny(tokenizer_dir, tmp_path_factory) -> tuple[CPCLAPBackbone, Path]:
    """A random tiny CP-CLAP and its weights saved as a compiled-model Lightning checkpoint."""
    torch.manual_seed(0)
    model = build_backbone(
        BackboneConfig("cpclap", tokenizer=tokenizer_dir, random_init=True, overrides=TINY)
    )
    state = {}
    for key, value in model.layout.state_dict().items():  # the names torch.compile gives
        for compiled in ("text_embedding_model.", "audio_embedding_model.model.model."):
            if key.startswith(compiled):
                key = compiled + "_orig_mod." + key[len(compiled) :]
        state[key] = value
    state["text_embedding_model._orig_mod.embeddings.position_ids"] = torch.arange(514)[None]
    path = tmp_path_factory.mktemp("cpclap") / "passt_roberta.ckpt"
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.5.0",
            "state_dict": state,
            "hyper_parameters": {"s_patchout_t": 15, "s_patchout_f": 2, "roberta_base": False},
        },
        path,
    )
    return model, path


def waves(n: int, samples: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, samples, generator=torch.Generator().manual_seed(seed))


# --- tokenizer folder --------------------------------------------------------------------------


def test_tokenizer_loads_through_from_pretrained_and_checks_size(tokenizer_dir):
    tok = load_roberta_tokenizer(tokenizer_dir, expected_vocab=TINY_VOCAB)
    assert len(tok) == TINY_VOCAB
    ids = tok(["a dog barks"])["input_ids"][0]
    assert ids[0] == tok.bos_token_id == 0 and ids[-1] == tok.eos_token_id == 2
    with pytest.raises(TokenizerError, match=f"has {TINY_VOCAB} tokens, expected 50265"):
        load_roberta_tokenizer(tokenizer_dir)


def test_tokenizer_folder_errors_are_clear(tmp_path):
    with pytest.raises(TokenizerError, match="--tokenizer DIR"):
        load_roberta_tokenizer(None)
    with pytest.raises(TokenizerError, match="not found"):
        load_roberta_tokenizer(tmp_path / "absent")
    with pytest.raises(TokenizerError, match="lacks vocab.json, merges.txt"):
        load_roberta_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    # transformers happily builds a tokenizer of special tokens only: the size check catches it
    with pytest.raises(TokenizerError, match="expected 50265"):
        load_roberta_tokenizer(tmp_path)


# --- structure and loading ---------------------------------------------------------------------


def test_full_size_structure_matches_official_checkpoint_keys():
    layout = build_retrieval_layout(empty=True)
    state = layout.state_dict()
    assert all(t.is_meta for t in state.values())
    expected = json.loads((FIXTURES / "cpclap_keys.json").read_text())["keys"]
    assert {k: list(t.shape) for k, t in state.items()} == expected


def test_release_format_checkpoint_loads_and_embeds(tiny, tokenizer_dir):
    original, path = tiny
    model = build_backbone(BackboneConfig("cpclap", checkpoint=path, tokenizer=tokenizer_dir, overrides=TINY))
    s = model.spec
    assert (s.name, s.sample_rate, s.audio_dim, s.text_dim, s.padding) == (
        "cpclap",
        32000,
        1024,
        1024,
        "zero",
    )
    x = waves(2, s.window_samples)
    texts = ["A dog barks!", "Rain falls on a tin roof."]
    with torch.inference_mode():
        audio, text = model.embed_windows(x), model.embed_text(texts)
        torch.testing.assert_close(audio, original.embed_windows(x), rtol=0, atol=0)
        torch.testing.assert_close(text, original.embed_text(texts), rtol=0, atol=0)
        torch.testing.assert_close(model.embed_windows(x), audio, rtol=0, atol=0)
    assert audio.shape == (2, 1024) and text.shape == (2, 1024)
    assert torch.isfinite(audio).all() and torch.isfinite(text).all()
    prov = model.provenance()
    assert prov["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["dropped_keys"] == ["text_embedding_model.embeddings.position_ids"]
    assert prov["container"] == "state_dict" and prov["tokenizer"] == str(tokenizer_dir.resolve())


def test_strict_loading_names_keys(tiny, tokenizer_dir, tmp_path):
    _, path = tiny
    ckpt = torch.load(path, weights_only=True)
    del ckpt["state_dict"]["audio_projection.bias"]
    ckpt["state_dict"]["text_embedding_model.pooler.dense.weight"] = torch.zeros(32, 32)
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError) as err:
        CPCLAPBackbone(bad, tokenizer_dir, overrides=TINY)
    assert "audio_projection.bias" in str(err.value)
    assert "text_embedding_model.pooler.dense.weight" in str(err.value)


def test_needs_checkpoint_and_matching_tokenizer(tokenizer_dir):
    with pytest.raises(CheckpointError, match="--checkpoint"):
        CPCLAPBackbone(None, tokenizer_dir, overrides=TINY)
    with pytest.raises(TokenizerError, match="--tokenizer"):
        CPCLAPBackbone(None, None, random_init=True, overrides=TINY)
    with pytest.raises(ValueError, match="tokenizer has 300 tokens but the text tower 310"):
        CPCLAPBackbone(
            None,
            tokenizer_dir,
            random_init=True,
            overrides={**TINY, "text_config": {**TINY_TEXT, "vocab_size": 310}},
        )


# --- embeddings ----------------------------------------------------------------------------------


def test_text_embedding_is_projected_first_token_before_normalisation(tiny):
    model, _ = tiny
    assert clean_caption("A Dog, barks!  (Loud)") == "a dog barks  loud"
    with torch.inference_mode():
        emb = model.embed_text(["A dog barks!", "rain falls"])
        same = model.embed_text(["a dog barks"])  # case and punctuation do not matter
        alone = model.embed_text(["rain falls"])
        batch = model.tokenizer(["a dog barks"], padding="max_length", max_length=64, return_tensors="pt")
        hidden = model.layout.text_embedding_model(**batch)[0]
        manual = model.layout.text_projection(hidden[:, 0])
    torch.testing.assert_close(emb[:1], same, rtol=1e-5, atol=1e-6)  # batch size only changes rounding
    torch.testing.assert_close(emb[1:], alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb[:1], manual)
    assert not torch.allclose(emb.norm(dim=-1), torch.ones(2))


def test_audio_embedding_is_projected_passt_features(tiny):
    model, _ = tiny
    x = waves(2, model.spec.window_samples, seed=1)
    with torch.inference_mode():
        spec = model.spectrogram(x)
        cls, dist = model.passt.forward_features(spec.unsqueeze(1))
        manual = model.layout.audio_projection((cls + dist) / 2)
        emb = model.embed_windows(x)
        alone = model.embed_windows(x[1:])
    assert spec.shape == (2, 128, 100)  # AugmentMelSTFT: 100 frames per second
    torch.testing.assert_close(emb, manual)
    torch.testing.assert_close(emb[1:], alone, rtol=1e-5, atol=1e-6)


def test_embeddings_are_differentiable(tokenizer_dir):
    torch.manual_seed(1)
    model = CPCLAPBackbone(
        None, tokenizer_dir, random_init=True, overrides={**TINY, "s_patchout_t": 1, "s_patchout_f": 1}
    ).train()
    loss = model.embed_windows(waves(2, model.spec.window_samples, seed=2)).pow(2).mean()
    loss = loss + model.embed_text(["a dog barks", "rain"]).pow(2).mean()
    loss.backward()
    layout = model.layout
    for p in (
        layout.audio_projection.weight,
        model.passt.blocks[0].attn.qkv.weight,
        layout.text_projection.weight,
        layout.text_embedding_model.encoder.layer[0].attention.self.query.weight,
    ):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# --- reference-parity defaults (docs/parity.md) -------------------------------------------------


def test_patchout_and_mel_augmentation_defaults_follow_the_reference(tiny, tokenizer_dir):
    model, _ = tiny
    assert (model.passt.s_patchout_t, model.passt.s_patchout_f) == (15, 2)
    mel = model.layout.audio_embedding_model.model.mel
    assert (mel.fmin_aug_range, mel.fmax_aug_range) == (10, 2000)
    assert model.provenance()["mel_augment"] is True
    x = waves(1, model.spec.window_samples, seed=5)
    with torch.inference_mode():
        evaluated = model.spectrogram(x)
        model.train()
        try:
            assert mel.training
            torch.manual_seed(0)
            jittered = [model.spectrogram(x) for _ in range(4)]  # random fmin / fmax per call
        finally:
            model.eval()
        torch.testing.assert_close(model.spectrogram(x), evaluated, rtol=0, atol=0)  # no jitter in eval mode
    assert any(not torch.equal(j, evaluated) for j in jittered)
    off = CPCLAPBackbone(
        None, tokenizer_dir, random_init=True, overrides={**TINY, "mel_augment": False}
    ).train()
    assert not off.layout.audio_embedding_model.model.mel.training


def test_split_text_option_rejoins_parts_before_cleaning(tokenizer_dir):
    torch.manual_seed(0)
    model = CPCLAPBackbone(None, tokenizer_dir, random_init=True, overrides={**TINY, "split_text": True})
    with torch.inference_mode():
        split = model.embed_text(["a dog,barks;rain", "a dog barks rain"])
    torch.testing.assert_close(split[0], split[1], rtol=1e-5, atol=1e-6)
    assert clean_caption("a dog,barks;rain") == "a dogbarksrain"  # what the default (no split) tokenises
