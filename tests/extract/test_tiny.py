"""The tiny test/debug backbone: registry, shapes, gradients, text tower, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from extract.backbones import BackboneConfig, available_backbones, build_backbone
from extract.backbones.tiny import TinyBackbone, hash_tokens, save_tiny_checkpoint
from extract.checkpoints import CheckpointError

SMALL = {"sample_rate": 8000, "window_seconds": 0.5}


def _tiny(variant: str = "audio", seed: int = 0, **overrides) -> TinyBackbone:
    torch.manual_seed(seed)
    return build_backbone(BackboneConfig(name="tiny", variant=variant, overrides={**SMALL, **overrides}))


def test_registered_and_spec_follows_overrides():
    assert "tiny" in available_backbones()
    m = _tiny(dim=24)
    assert (m.spec.sample_rate, m.spec.window_samples, m.spec.audio_dim, m.spec.text_dim) == (
        8000,
        4000,
        24,
        None,
    )
    assert m.spec.padding == "zero"
    clap = _tiny("clap")
    assert clap.spec.text_dim == 32 and clap.spec.variant == "clap"
    with pytest.raises(ValueError, match="unknown override"):
        _tiny(n_layers=3)
    with pytest.raises(ValueError, match="unknown variant"):
        build_backbone(BackboneConfig(name="tiny", variant="huge"))


def test_embed_windows_shape_gradient_and_masking():
    m = _tiny()
    w = torch.randn(3, 4000) * 0.1
    lengths = torch.tensor([4000, 2000, 4000])
    out = m.embed_windows(w, lengths)
    assert out.shape == (3, 32)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    # masking: samples past the real length of window 1 do not change its embedding much less
    # than without mask; exactly: a window's embedding with all-valid lengths equals lengths=None
    with torch.no_grad():
        assert torch.allclose(m.embed_windows(w, torch.full((3,), 4000)), m.embed_windows(w), atol=1e-6)
        # content far beyond the valid region (after the receptive field) is ignored
        w2 = w.clone()
        w2[1, 3000:] = 0.9
        a = m.embed_windows(w[1:2], torch.tensor([1000]))
        b = m.embed_windows(w2[1:2], torch.tensor([1000]))
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(m.embed_windows(w[1:2]), m.embed_windows(w2[1:2]), atol=1e-4)


def test_text_tower_is_a_bag_of_words():
    m = _tiny("clap")
    with torch.no_grad():
        e = m.embed_text(["Dog barking loudly", "loudly, barking DOG!", "", "rain on a roof"])
    assert e.shape == (4, 32)
    assert torch.allclose(e[0], e[1], atol=1e-6)  # same words, another order
    assert torch.equal(e[2], torch.zeros(32))
    assert not torch.allclose(e[0], e[3])
    assert hash_tokens("Dog dog", 4096)[0] == hash_tokens("dog", 4096)[0]
    with pytest.raises(NotImplementedError):
        _tiny().embed_text(["x"])


def test_checkpoint_round_trip_and_strict_loading(tmp_path):
    m = _tiny("clap", seed=1, dim=16)
    path = save_tiny_checkpoint(m, tmp_path / "tiny.pt")
    torch.manual_seed(99)  # a different random init, overwritten by the checkpoint
    loaded = build_backbone(BackboneConfig(name="tiny", checkpoint=path))
    assert loaded.spec == m.spec
    w = torch.randn(2, 4000)
    with torch.no_grad():
        assert torch.equal(loaded.embed_windows(w), m.embed_windows(w))
        assert torch.equal(loaded.embed_text(["a b"]), m.embed_text(["a b"]))
    prov = loaded.provenance()
    assert (
        prov["checkpoint"] == str(path)
        and len(prov["checkpoint_sha256"]) == 64
        and prov["random_init"] is False
    )

    with pytest.raises(CheckpointError, match="contradict"):
        build_backbone(BackboneConfig(name="tiny", checkpoint=path, overrides={"dim": 32}))
    # a checkpoint with an extra key fails, naming it, unless allow-listed
    data = torch.load(path, weights_only=True)
    data["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="extra.weight"):
        build_backbone(BackboneConfig(name="tiny", checkpoint=tmp_path / "bad.pt"))
    ok = build_backbone(
        BackboneConfig(name="tiny", checkpoint=tmp_path / "bad.pt", allow_unexpected=("extra.*",))
    )
    with torch.no_grad():
        assert torch.equal(ok.embed_windows(w), m.embed_windows(w))
