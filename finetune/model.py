"""Backbone + fusion head as one trainable module, and the weight files stages hand over.

The representation h of a clip is the backbone's pooling of its window embeddings
(``Backbone.pool_windows``: the mean over windows holding real samples, or a backbone's own
weighting such as M2D's ``reference`` pooling), concatenated with the text embedding for
audio–text backbones; ``heads.model.FusionHead`` turns h and the LLM prior into logits.

Parameters that no forward pass uses (e.g. projection layers of a CLAP checkpoint that the
audio path skips) and a frozen text tower are set to ``requires_grad=False`` *before* DDP
wraps the model, so DDP never waits for gradients that cannot come (the "unused parameter"
error) and no ``find_unused_parameters`` traversal is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from extract.backbones import Backbone, BackboneConfig, build_backbone
from extract.checkpoints import CheckpointError, load_state_dict_strict, torch_load
from heads.model import FusionHead

from .config import FinetuneConfig

WEIGHTS_FORMAT = "bst-hac finetune weights v1"


class FinetuneModel(nn.Module):
    """Backbone (audio, optionally text) + FusionHead, trained end to end."""

    def __init__(self, backbone: Backbone, head: FusionHead, use_text: bool, freeze_text: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.use_text = use_text
        self.freeze_text = freeze_text

    def clip_embeddings(
        self,
        windows: torch.Tensor,
        lengths: torch.Tensor,
        clip_of_window: torch.Tensor,
        n_clips: int,
        texts: list[str] | None = None,
    ) -> torch.Tensor:
        from extract.windowing import forward_windows

        emb = forward_windows(self.backbone, windows, lengths)  # trims padding where the backbone allows it
        h = self.backbone.pool_windows(emb, clip_of_window, lengths, n_clips)
        if self.use_text:
            if texts is None:
                raise ValueError("this model uses a text tower: pass texts")
            if self.freeze_text:
                with torch.no_grad():
                    t = self.backbone.embed_text(list(texts))
            else:
                t = self.backbone.embed_text(list(texts))
            h = torch.cat([h, t.to(h.dtype)], dim=1)
        return h

    def forward(
        self,
        windows: torch.Tensor,
        lengths: torch.Tensor,
        clip_of_window: torch.Tensor,
        n_clips: int,
        prior: torch.Tensor | None = None,
        prior_missing: torch.Tensor | None = None,
        texts: list[str] | None = None,
    ) -> torch.Tensor:
        h = self.clip_embeddings(windows, lengths, clip_of_window, n_clips, texts)
        return self.head(
            h,
            prior=prior if self.head.uses_prior else None,
            prior_missing=prior_missing if self.head.uses_prior else None,
        )

    def train(self, mode: bool = True) -> FinetuneModel:
        super().train(mode)
        if self.freeze_text:
            for m in _text_modules(self.backbone, self._text_params):
                m.eval()
        return self

    _text_params: frozenset[str] = frozenset()


def _text_modules(backbone: nn.Module, text_params: frozenset[str]) -> list[nn.Module]:
    """Sub-modules whose parameters all belong to the text tower (kept in eval mode when frozen)."""
    out = []
    for name, m in backbone.named_modules():
        own = [f"{name}.{n}" if name else n for n, _ in m.named_parameters()]
        if own and all(p in text_params for p in own):
            out.append(m)
    return out


@dataclass
class ParameterUse:
    audio: set[str] = field(default_factory=set)  # backbone parameters the audio path uses
    text: set[str] = field(default_factory=set)  # ... the text path uses
    unused: set[str] = field(default_factory=set)  # used by neither (frozen, reported)
    frozen_text: set[str] = field(default_factory=set)  # text-only parameters frozen by text_tower = freeze


def probe_parameter_use(backbone: Backbone, use_text: bool) -> tuple[set[str], set[str]]:
    """Names of backbone parameters that receive a gradient from the audio path and from the text path.

    One forward/backward on two quiet random windows (and two short texts), with torch's RNG
    state and the backbone's buffers (BatchNorm statistics) saved and restored, so the probe
    does not change a seeded run.
    """

    def grads_of(fn) -> set[str]:
        for p in backbone.parameters():
            p.grad = None
        out = fn()
        out.float().sum().backward()
        used = {n for n, p in backbone.named_parameters() if p.grad is not None}
        for p in backbone.parameters():
            p.grad = None
        return used

    spec = backbone.spec
    was_training = backbone.training
    buffers = {n: b.detach().clone() for n, b in backbone.named_buffers()}  # e.g. BatchNorm running stats
    backbone.train()
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(0)
        w = torch.randn(2, spec.window_samples, generator=g) * 0.01
        audio = grads_of(lambda: backbone.embed_windows(w, torch.full((2,), spec.window_samples)))
        text = (
            grads_of(lambda: backbone.embed_text(["a short probe sentence", "another one"]))
            if use_text
            else set()
        )
    with torch.no_grad():
        for n, b in backbone.named_buffers():
            b.copy_(buffers[n])
    backbone.train(was_training)
    return audio, text


def configure_patchout(backbone: nn.Module, t: int, f: int) -> int:
    """Set structured patchout (PaSST's ``s_patchout_t``/``s_patchout_f``, used in training mode only).

    Returns how many modules took it (0 = the backbone does not expose patchout).
    """
    n = 0
    for m in backbone.modules():
        if hasattr(m, "s_patchout_t") and hasattr(m, "s_patchout_f"):
            m.s_patchout_t, m.s_patchout_f = int(t), int(f)
            n += 1
    return n


def backbone_config(cfg: FinetuneConfig) -> BackboneConfig:
    b = cfg.backbone
    return BackboneConfig(
        name=b.name,
        variant=b.variant or None,
        checkpoint=Path(b.checkpoint) if b.checkpoint else None,
        tokenizer=Path(b.tokenizer) if b.tokenizer else None,
        allow_missing=tuple(b.allow_missing),
        allow_unexpected=tuple(b.allow_unexpected),
        random_init=b.random_init,
        overrides=dict(b.overrides),
    )


def uses_text(cfg: FinetuneConfig, backbone: Backbone) -> bool:
    """Whether h includes the text embedding; audio–text backbones need an explicit text source."""
    if backbone.spec.text_dim is None:
        if cfg.backbone.text_source not in ("", "none"):
            raise ValueError(
                f"backbone {backbone.spec.name!r} has no text tower; set backbone.text_source = 'none' or ''"
            )
        return False
    if cfg.backbone.text_source == "":
        raise ValueError(
            f"backbone {backbone.spec.name!r} has a text tower: set backbone.text_source to 'summary' "
            "(cached LLM summaries), 'metadata' (cleaned title/tags/description), 'tags' (the tags as "
            "keywords) or 'none' (audio only)"
        )
    return cfg.backbone.text_source != "none"


def build_model(cfg: FinetuneConfig, log=print) -> tuple[FinetuneModel, ParameterUse, dict[str, Any]]:
    """Backbone (+ patchout) and a fresh head; parameters no path uses and a frozen text tower get
    requires_grad=False."""
    backbone = build_backbone(backbone_config(cfg))
    use_text = uses_text(cfg, backbone)
    facts: dict[str, Any] = {
        "backbone_spec": backbone.spec.as_dict(),
        "backbone_provenance": backbone.provenance(),
    }
    if cfg.backbone.patchout_t or cfg.backbone.patchout_f:
        n = configure_patchout(backbone, cfg.backbone.patchout_t, cfg.backbone.patchout_f)
        facts["patchout"] = {"t": cfg.backbone.patchout_t, "f": cfg.backbone.patchout_f, "modules": n}
        if not n:
            log(
                f"warning: backbone {backbone.spec.name!r} exposes no structured patchout; "
                "patchout settings ignored"
            )
    audio, text = probe_parameter_use(backbone, use_text)
    names = {n for n, p in backbone.named_parameters() if p.requires_grad}
    use = ParameterUse(audio=audio & names, text=text & names)
    use.unused = names - audio - text
    if use_text and cfg.backbone.text_tower == "freeze":
        use.frozen_text = text - audio
    for n, p in backbone.named_parameters():
        if n in use.unused or n in use.frozen_text:
            p.requires_grad_(False)
    if use.unused:
        log(
            f"{len(use.unused)} backbone parameter tensor(s) used by no forward path are frozen: "
            + ", ".join(sorted(use.unused)[:8])
            + (" …" if len(use.unused) > 8 else "")
        )
    in_dim = backbone.spec.audio_dim + (backbone.spec.text_dim if use_text else 0)
    head = FusionHead(
        in_dim,
        preset=cfg.head.preset,
        dropout=cfg.head.dropout,
        missing_prior=cfg.head.missing_prior,
        hidden=cfg.head.hidden or None,
    )
    model = FinetuneModel(backbone, head, use_text, freeze_text=bool(use.frozen_text))
    model._text_params = frozenset(use.frozen_text)
    facts.update(
        {
            "use_text": use_text,
            "head": head.config(),
            "unused_parameters": sorted(use.unused),
            "frozen_text_parameters": len(use.frozen_text),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in model.parameters()),
        }
    )
    return model, use, facts


# ------------------------------------------------------------------------------------- weight files
def export_weights(model: FinetuneModel, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write backbone and head weights (+ JSON-able ``meta``) atomically; loadable with weights_only=True."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "format": WEIGHTS_FORMAT,
            "backbone": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
            "head_config": model.head.config(),
            "meta": meta,
        },
        tmp,
    )
    tmp.replace(path)
    return path


def weights_file(path: str | Path) -> Path:
    """A weights file, or ``<run folder>/best/model.pt``."""
    p = Path(path)
    return p / "best" / "model.pt" if p.is_dir() else p


def load_weights(model: FinetuneModel, path: str | Path, *, head: bool = True) -> dict[str, Any]:
    """Load exported weights strictly into ``model`` (backbone, and the head unless ``head=False``)."""
    f = weights_file(path)
    data = torch_load(f)
    if not isinstance(data, dict) or data.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{f} is not a fine-tune weights file (format {WEIGHTS_FORMAT!r})")
    load_state_dict_strict(model.backbone, data["backbone"], source=f"{f} [backbone]")
    if head:
        load_state_dict_strict(model.head, data["head"], source=f"{f} [head]")
    return dict(data.get("meta", {}))


def model_from_run(run: str | Path, log=lambda _m: None) -> tuple[FinetuneModel, FinetuneConfig]:
    """The best model of a finished run folder (its ``config.toml`` + ``best/model.pt``), in eval mode."""
    from .config import load_config

    run = Path(run)
    cfg = load_config(run / "config.toml")
    model, _, _ = build_model(cfg, log)
    load_weights(model, run / "best" / "model.pt")
    return model.eval(), cfg
