"""Backbone + head: unused/frozen parameters, the probe's side effects, patchout, weight files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from extract.checkpoints import CheckpointError
from finetune.config import FinetuneConfig, load_config
from finetune.model import build_model, configure_patchout, export_weights, load_weights

TINY = [
    "backbone.name=tiny",
    "backbone.overrides={sample_rate=8000, window_seconds=0.5, dim=8, channels=4}",
    "data.clean=/unused",
    "head.preset=no-prior",
]


def _cfg(*extra: str) -> FinetuneConfig:
    return load_config(None, [*TINY, *extra])


def _batch(model):
    n = model.backbone.spec.window_samples
    w = torch.randn(3, n, generator=torch.Generator().manual_seed(1)) * 0.1
    return dict(
        windows=w,
        lengths=torch.tensor([n, n, n // 2]),
        clip_of_window=torch.tensor([0, 0, 1]),
        n_clips=2,
        texts=["a dog", "rain"],
    )


def test_unused_and_frozen_text_parameters():
    quiet = dict(log=lambda _m: None)
    m, use, facts = build_model(_cfg("backbone.variant=clap", "backbone.text_source=none"), **quiet)
    assert use.unused == {"text_tower.weight"} and not m.backbone.text_tower.weight.requires_grad
    assert facts["head"]["in_dim"] == 8 and not m.use_text
    m, use, facts = build_model(
        _cfg("backbone.variant=clap", "backbone.text_source=metadata", "backbone.text_tower=freeze"), **quiet
    )
    assert use.frozen_text == {"text_tower.weight"} and not use.unused and facts["head"]["in_dim"] == 8 + 32
    m.train()
    # a frozen tower stays in eval mode
    assert m.backbone.conv.training and not m.backbone.text_tower.training
    m(**_batch(m)).sum().backward()
    assert m.backbone.text_tower.weight.grad is None and m.backbone.proj.weight.grad is not None
    m, use, _ = build_model(_cfg("backbone.variant=clap", "backbone.text_source=metadata"), **quiet)
    assert use.text == {"text_tower.weight"} and m.backbone.text_tower.weight.requires_grad
    with pytest.raises(ValueError, match="text_source"):
        build_model(_cfg("backbone.variant=clap"), **quiet)  # a text tower needs an explicit choice


def test_probe_leaves_rng_and_buffers_alone():
    from extract.backbones import build_backbone
    from finetune.model import backbone_config
    from heads.model import FusionHead

    cfg = _cfg()
    torch.manual_seed(5)
    model, _, _ = build_model(cfg, log=lambda _m: None)  # builds, probes (forward + backward), adds a head
    after_build = torch.get_rng_state()
    torch.manual_seed(5)
    backbone = build_backbone(backbone_config(cfg))  # the same modules without the probe
    head = FusionHead(8, preset="no-prior")
    assert torch.equal(after_build, torch.get_rng_state())
    ref = {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in head.state_dict().items()},
    }
    got = model.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(got[k], ref[k]), k


def test_patchout_is_set_where_exposed():
    class FakePasst(nn.Module):
        def __init__(self):
            super().__init__()
            self.s_patchout_t, self.s_patchout_f = 0, 0

    wrapper = nn.Sequential(nn.Linear(2, 2), FakePasst())
    assert configure_patchout(wrapper, 16, 2) == 1
    assert (wrapper[1].s_patchout_t, wrapper[1].s_patchout_f) == (16, 2)
    m, _, facts = build_model(_cfg("backbone.patchout_t=16", "backbone.patchout_f=2"), log=lambda _m: None)
    assert facts["patchout"]["modules"] == 0  # the tiny backbone has none: reported, not fatal


def test_weight_files_round_trip_and_strict(tmp_path):
    a, _, _ = build_model(_cfg(), log=lambda _m: None)
    path = export_weights(a, tmp_path / "best" / "model.pt", {"epoch": 3})
    torch.manual_seed(123)
    b, _, _ = build_model(_cfg(), log=lambda _m: None)
    assert load_weights(b, tmp_path) == {"epoch": 3}  # a run folder resolves to best/model.pt
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(**_batch(a)), b(**_batch(b)))
    c, _, _ = build_model(_cfg("head.preset=workshop", "data.prior=p"), log=lambda _m: None)
    load_weights(c, path, head=False)  # backbone only (stages 1-2 with init_from)
    with pytest.raises(CheckpointError, match="head"):
        load_weights(c, path)


def test_clip_embedding_uses_the_backbones_pooling():
    """M2D's reference pooling weights a clip's windows by their real time steps, in fine-tuning too."""
    cfg = load_config(
        None,
        [
            "backbone.name=m2d",
            "backbone.random_init=true",
            "data.clean=/unused",
            "head.preset=no-prior",
            'backbone.overrides={embed_dim=32, depth=1, num_heads=2, pooling="reference"}',
        ],
    )
    torch.manual_seed(0)
    m, _, _ = build_model(cfg, log=lambda _m: None)
    m.eval()
    ws = m.backbone.spec.window_samples
    w = torch.randn(2, ws, generator=torch.Generator().manual_seed(2)) * 0.1
    w[1, 48_000:] = 0
    lengths, clip_of_window = torch.tensor([ws, 48_000]), torch.tensor([0, 0])
    with torch.no_grad():
        h = m.clip_embeddings(w, lengths, clip_of_window, 1)
        e = m.backbone.embed_windows(w, lengths)
    torch.testing.assert_close(h[0], (62 * e[0] + 19 * e[1]) / 81, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(h[0], e.mean(0))
