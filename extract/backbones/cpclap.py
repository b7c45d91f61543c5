"""CP-CLAP: the CP-JKU audio–text retrieval model (PaSST + RoBERTa-large), 32 kHz, 1024-d each.

Architecture and checkpoint layout of the CP-JKU retrieval model (DCASE 2024 Task 8 winner,
released as the CPJKU ``dcase2025_task6_baseline`` checkpoint and used by the CP-JKU DCASE 2026
system), a PyTorch Lightning ``state_dict`` with

- ``audio_embedding_model.model.model``: PaSST ``passt_s_p16_s16_128_ap468`` (stride 16,
  ``input_tdim=1000``, structured patchout t=15 / f=2 while training), fed by hear21passt's
  ``AugmentMelSTFT`` (no masking; ``audio_embedding_model.model.mel``, no weights);
  embedding = PaSST ``features`` (mean of cls and dist tokens);
- ``audio_projection``: Linear(768, 1024);
- ``text_embedding_model``: ``transformers.RobertaModel`` (roberta-large, no pooler, dropout 0.2),
  built from a config (no hub access); the text is lower-cased, punctuation removed, tokenised
  to 64 tokens, and the first (``<s>``) token's hidden state is used;
- ``text_projection``: Linear(1024, 1024); ``tau``: the contrastive temperature (unused here).

Both embeddings are returned before the unit-norm normalisation of the retrieval model.
Windows are 10 s, zero-padded (the reference pads shorter input to 10 s with zeros). The mel
front-end runs in float32 outside autocast.

Options (``BackboneConfig.overrides``; docs/parity.md): ``s_patchout_t`` / ``s_patchout_f``
(default 15 / 2, the reference's values; training mode only), ``mel_augment`` (default true: in
training mode the mel filterbank's fmin / fmax are jittered, by up to 10 Hz / ±1000 Hz, as the
reference's ``AugmentMelSTFT`` did while fine-tuning; no masking), ``split_text`` (default
false: split a text on ``,`` and ``;`` and rejoin the parts with spaces before the caption
cleaning, as the reference did with summaries).
Key normalisation on load (recorded in provenance): ``_orig_mod.`` path parts that
``torch.compile`` adds are removed, and the ``embeddings.position_ids`` buffer that
transformers < 4.31 saved is dropped.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..tokenizers import ROBERTA_VOCAB_SIZE, load_roberta_tokenizer, tokenizer_provenance
from .base import Backbone, BackboneConfig, BackboneSpec, check_overrides, register_backbone
from .passt import (
    EMBEDDING_TEXT,
    FRONT_END_TEXT,
    build_passt_net,
    checkpoint_provenance,
    hear21_mel,
    hear21_mel_forward,
    materialize_,
    passt_features,
    read_state_dict,
    require_checkpoint,
)
from .textprep import split_and_join

SAMPLE_RATE = 32000
PROJ_DIM = 1024
PASST_ARCH = "passt_s_p16_s16_128_ap468"
MAX_TEXT_TOKENS = 64
DEFAULT_VARIANT = "passt-roberta-large"
ROBERTA_LARGE: dict[str, Any] = dict(
    vocab_size=ROBERTA_VOCAB_SIZE,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    hidden_dropout_prob=0.2,
    attention_probs_dropout_prob=0.2,
)
CPCLAP_OVERRIDES = (
    "depth",
    "window_seconds",
    "s_patchout_t",
    "s_patchout_f",
    "mel_augment",
    "text_config",
    "expected_vocab",
    "trust_pickle",
    "split_text",
)
DROPPED_KEYS = ("text_embedding_model.embeddings.position_ids",)
FRONT_END = FRONT_END_TEXT["hear21-mel"].replace("1000 frames", "1000 frames (input_tdim 1000)")


class PaSSTTower(nn.Module):
    """Mirrors the reference ``PaSSTSNoOverlapWrapper``: ``model`` (PaSST) and ``mel``."""

    def __init__(self, model: nn.Module, mel: nn.Module):
        super().__init__()
        self.model = model
        self.mel = mel


class SegmentsWrapper(nn.Module):
    """Mirrors the reference ``CutInputIntoSegmentsWrapper`` (windowing is done by the caller)."""

    def __init__(self, model: PaSSTTower):
        super().__init__()
        self.model = model


class RetrievalLayout(nn.Module):
    """The module tree of the CP-JKU ``AudioRetrievalModel`` (same state-dict names)."""

    def __init__(self, passt: nn.Module, mel: nn.Module, roberta: nn.Module):
        super().__init__()
        self.audio_embedding_model = SegmentsWrapper(PaSSTTower(passt, mel))
        self.audio_projection = nn.Linear(768, PROJ_DIM)
        self.text_embedding_model = roberta
        self.text_projection = nn.Linear(roberta.config.hidden_size, PROJ_DIM)
        self.tau = nn.Parameter(torch.full((1,), 0.07), requires_grad=False)


def roberta_config(text_config: Mapping[str, Any] | None = None):
    """RoBERTa-large configuration of the reference (``text_config`` overrides fields)."""
    from transformers import RobertaConfig

    return RobertaConfig(**{**ROBERTA_LARGE, **dict(text_config or {})})


def build_retrieval_layout(
    *,
    depth: int | None = None,
    text_config: Mapping[str, Any] | None = None,
    s_patchout_t: int = 15,
    s_patchout_f: int = 2,
    empty: bool = False,
    init: bool = True,
) -> RetrievalLayout:
    """The CP-CLAP module tree, random init or (``empty``) on the meta device; no download.

    ``init=False`` leaves the parameters uninitialised (only when a strict load follows).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from accelerate import init_empty_weights
    from transformers import RobertaModel

    passt = build_passt_net(
        PASST_ARCH,
        16,
        input_tdim=1000,
        s_patchout_t=s_patchout_t,
        s_patchout_f=s_patchout_f,
        depth=depth,
        empty=empty,
        init=init,
    )
    config = roberta_config(text_config)
    if empty or not init:
        with init_empty_weights():
            roberta = RobertaModel(config, add_pooling_layer=False)
            layout = RetrievalLayout(passt, hear21_mel(freqm=0, timem=0), roberta)
        if not empty:
            materialize_(layout)
        return layout
    roberta = RobertaModel(config, add_pooling_layer=False)
    return RetrievalLayout(passt, hear21_mel(freqm=0, timem=0), roberta)


def normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove ``_orig_mod`` path parts (torch.compile) and drop the old ``position_ids`` buffer."""
    out, dropped = {}, []
    for key, value in state_dict.items():
        key = ".".join(part for part in key.split(".") if part != "_orig_mod")
        if key in DROPPED_KEYS:
            dropped.append(key)
            continue
        out[key] = value
    return out, dropped


def clean_caption(text: str) -> str:
    """The reference text preprocessing: lower case, ASCII punctuation removed."""
    return text.lower().translate(str.maketrans("", "", string.punctuation))


class CPCLAPBackbone(Backbone):
    """CP-CLAP windows → 1024-d audio embeddings, strings → 1024-d text embeddings (pre-norm)."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        tokenizer: str | Path | None = None,
        *,
        random_init: bool = False,
        allow_missing: tuple[str, ...] = (),
        allow_unexpected: tuple[str, ...] = (),
        overrides: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        ov = check_overrides("cpclap", overrides or {}, CPCLAP_OVERRIDES)
        checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        require_checkpoint("cpclap", checkpoint, random_init, "CP-CLAP .ckpt (PaSST + RoBERTa-large)")
        expected_vocab = int(ov.get("expected_vocab", ROBERTA_VOCAB_SIZE))
        self.tokenizer = load_roberta_tokenizer(tokenizer, expected_vocab=expected_vocab)
        self.mel_augment = bool(ov.get("mel_augment", True))
        self.split_text = bool(ov.get("split_text", False))
        self.layout = build_retrieval_layout(
            depth=ov.get("depth"),
            text_config=ov.get("text_config"),
            s_patchout_t=int(ov.get("s_patchout_t", 15)),
            s_patchout_f=int(ov.get("s_patchout_f", 2)),
            init=checkpoint is None or bool(allow_missing),
        )
        vocab = self.layout.text_embedding_model.config.vocab_size
        if vocab != len(self.tokenizer):
            raise ValueError(f"cpclap: tokenizer has {len(self.tokenizer)} tokens but the text tower {vocab}")
        window_seconds = float(ov.get("window_seconds", 10.0))
        if not 0 < window_seconds <= 10.0:
            raise ValueError(f"cpclap: window_seconds must be in (0, 10], got {window_seconds}")
        self.spec = BackboneSpec(
            name="cpclap",
            variant=DEFAULT_VARIANT,
            sample_rate=SAMPLE_RATE,
            audio_dim=PROJ_DIM,
            text_dim=PROJ_DIM,
            window_seconds=window_seconds,
            padding="zero",
            front_end=FRONT_END,
        )
        loaded: dict[str, Any] = {"missing": [], "unexpected": [], "dropped": [], "container": ""}
        if checkpoint is not None:
            sd, container = read_state_dict(checkpoint, trust_pickle=bool(ov.get("trust_pickle", False)))
            sd, dropped = normalise_keys(sd)
            loaded = load_state_dict_strict(
                self.layout,
                sd,
                source=f"CP-CLAP checkpoint {checkpoint}",
                allow_missing=allow_missing,
                allow_unexpected=allow_unexpected,
            )
            loaded.update(dropped=dropped, container=container)
        self._provenance = {
            **checkpoint_provenance(checkpoint, random_init),
            **tokenizer_provenance(tokenizer),
            "passt_arch": PASST_ARCH,
            "text_model": "roberta-large (transformers RobertaModel, no pooler)",
            "audio_embedding": f"audio_projection({EMBEDDING_TEXT}), before L2 normalisation",
            "text_embedding": "text_projection(hidden state of the first token), before L2 normalisation; "
            f"lower-cased, punctuation removed, {MAX_TEXT_TOKENS} tokens",
            "mel_augment": self.mel_augment,
            "split_text": self.split_text,
            "overrides": ov,
            "allowed_missing": loaded["missing"],
            "allowed_unexpected": loaded["unexpected"],
            "dropped_keys": loaded["dropped"],
            "container": loaded["container"],
        }
        self.eval()

    def train(self, mode: bool = True) -> CPCLAPBackbone:
        super().train(mode)
        self.layout.audio_embedding_model.model.mel.train(mode and self.mel_augment)
        return self

    @property
    def passt(self) -> nn.Module:
        return self.layout.audio_embedding_model.model.model

    def spectrogram(self, windows: torch.Tensor) -> torch.Tensor:
        return hear21_mel_forward(self.layout.audio_embedding_model.model.mel, windows)

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        param = self.layout.audio_projection.weight
        windows = windows.to(device=param.device, dtype=torch.float32)
        features = passt_features(self.passt, self.spectrogram(windows))
        return self.layout.audio_projection(features)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        device = self.layout.text_projection.weight.device
        texts = [split_and_join(t or "") if self.split_text else (t or "") for t in texts]
        batch = self.tokenizer(
            [clean_caption(t) for t in texts],
            add_special_tokens=True,
            padding="max_length",
            truncation=True,
            max_length=MAX_TEXT_TOKENS,
            return_tensors="pt",
        )
        hidden = self.layout.text_embedding_model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        )[0]
        return self.layout.text_projection(hidden[:, 0, :])


@register_backbone("cpclap")
def build(config: BackboneConfig) -> CPCLAPBackbone:
    if config.variant not in (None, DEFAULT_VARIANT):
        raise KeyError(f"unknown CP-CLAP variant {config.variant!r}; available: {DEFAULT_VARIANT}")
    return CPCLAPBackbone(
        config.checkpoint,
        config.tokenizer,
        random_init=config.random_init,
        allow_missing=tuple(config.allow_missing),
        allow_unexpected=tuple(config.allow_unexpected),
        overrides=config.overrides,
    )


__all__ = [
    "CPCLAPBackbone",
    "RetrievalLayout",
    "build_retrieval_layout",
    "clean_caption",
    "normalise_keys",
    "roberta_config",
]
