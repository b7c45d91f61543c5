"""LAION-CLAP via the ``laion_clap`` package: 48 kHz, HTSAT-tiny audio + RoBERTa-base text, 512-d each.

Variants (the released checkpoints): ``630k-audioset-best`` (default, no fusion),
``630k-audioset-fusion-best`` (feature fusion, ``aff_2d``), and the same two architectures
trained on LAION-630k only, ``630k-best`` / ``630k-fusion-best``.

Offline by construction: ``laion_clap`` downloads three tokenizers when imported
(``laion_clap.training.data``) and ``roberta-base`` when its model is built
(``RobertaModel.from_pretrained``). Here the import runs with those tokenizer loaders replaced
by inert placeholders, and ``create_model`` runs with ``RobertaModel.from_pretrained`` answered
by a ``RobertaModel`` built from the roberta-base configuration (random weights, replaced by
the checkpoint). Text is tokenised by the user's local RoBERTa tokenizer folder.

Audio follows the package's own path (``get_audio_features`` as in
``CLAP_Module.get_audio_embedding_from_data``): the waveform is int16-quantised (straight-through
for gradients) and the fusion variant gets its ``mel_fusion`` input. Both embeddings are the
projection outputs before the package's L2 normalisation.

Options (``BackboneConfig.overrides``; defaults follow the CP-JKU reference runs, docs/parity.md):

- ``padding``: ``"zero"`` (default; the window is zero-padded to 10 s before
  ``get_audio_features``, so the package's repeat-padding never triggers, as in the reference)
  or ``"repeat"`` (the package's ``repeatpad`` of the window's real samples: whole repeats,
  then zeros).
- ``eval_in_training`` (default true): the CLAP model stays in eval mode when the backbone is
  put in training mode (no dropout, no HTSAT SpecAugment, no drop-path, BatchNorm statistics
  frozen), as the reference, which called ``eval()`` in every forward pass.
- ``bn0_trainable`` (default false): HTSAT's input BatchNorm ``bn0`` gets no gradient, as in the
  reference (it ran the step after ``bn0``, ``reshape_wav2img``, without gradient).
- ``split_text`` (default true): a text is split on ``,`` and ``;`` and its stripped, non-empty
  parts rejoined with single spaces before tokenising, as the reference did with summaries.

The spectrogram (torchlibrosa ``spectrogram_extractor`` / ``logmel_extractor``), HTSAT's
``reshape_wav2img`` and the fusion variant's ``mel_fusion`` are computed in float32 outside
autocast (``extract.backbones.precision``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..tokenizers import ROBERTA_VOCAB_SIZE, load_roberta_tokenizer, tokenizer_provenance
from .base import Backbone, BackboneConfig, BackboneSpec, check_overrides, register_backbone
from .passt import checkpoint_provenance, read_state_dict, require_checkpoint
from .precision import float32_region, run_in_float32
from .textprep import split_and_join

SAMPLE_RATE = 48000
EMBED_DIM = 512
MAX_SAMPLES = 480_000  # 10 s, the package's clip length
MAX_TEXT_TOKENS = 77
AUDIO_MODEL = "HTSAT-tiny"
VARIANTS: dict[str, bool] = {  # variant -> enable_fusion
    "630k-audioset-best": False,
    "630k-audioset-fusion-best": True,
    "630k-best": False,
    "630k-fusion-best": True,
}
DEFAULT_VARIANT = "630k-audioset-best"
ROBERTA_BASE: dict[str, Any] = dict(
    vocab_size=ROBERTA_VOCAB_SIZE,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
LAION_OVERRIDES = (
    "text_config",
    "expected_vocab",
    "quantize",
    "trust_pickle",
    "padding",
    "eval_in_training",
    "bn0_trainable",
    "split_text",
)
PADDINGS = ("zero", "repeat")
DROPPED_KEYS = ("text_branch.embeddings.position_ids",)  # the package deletes it before loading, too
FRONT_END = {
    False: "int16 quantisation, {padding} to 10 s; HTSAT log-mel inside the model (torchlibrosa, 64 bins, "
    "n_fft 1024, hop 480, 50-14000 Hz), float32",
    True: "int16 quantisation, {padding} to 10 s; mel_fusion from laion_clap get_mel (torchaudio, 64 bins, "
    "n_fft 1024, hop 480, 50-14000 Hz), float32",
}
PADDING_TEXT = {"zero": "zero-padding", "repeat": "repeatpad"}

_LOCK = threading.RLock()


class _Unavailable:
    """Stands in for the tokenizers laion_clap would download at import time."""

    def __init__(self, what: str):
        self._what = what

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"{self._what} was not loaded (no hub access); text goes through extract.tokenizers"
        )

    __call__ = _fail

    def __getattr__(self, name: str) -> Any:
        self._fail()


@contextlib.contextmanager
def _tokenizer_downloads_disabled():
    from transformers import BartTokenizer, BertTokenizer, RobertaTokenizer

    def placeholder(cls, name: Any = None, *args: Any, **kwargs: Any) -> _Unavailable:
        return _Unavailable(f"{cls.__name__}.from_pretrained({name!r})")

    patched = []
    for cls in {BertTokenizer, RobertaTokenizer, BartTokenizer}:  # a set: aliases are patched once
        patched.append((cls, cls.__dict__.get("from_pretrained")))
        cls.from_pretrained = classmethod(placeholder)
    try:
        yield
    finally:
        for cls, own in patched:
            if own is None:
                delattr(cls, "from_pretrained")
            else:
                cls.from_pretrained = own


def import_laion_clap() -> tuple[Any, Any]:
    """Import ``laion_clap`` without hub access; returns its ``clap_module`` and ``training.data``."""
    with _LOCK:
        if "laion_clap" not in sys.modules:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            with (
                _tokenizer_downloads_disabled(),
                contextlib.redirect_stdout(io.StringIO()),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", FutureWarning)  # timm.models.layers deprecation
                importlib.import_module("laion_clap")
        # laion_clap puts its folder on sys.path and imports its model code as top-level `clap_module`
        return importlib.import_module("clap_module"), importlib.import_module("laion_clap.training.data")


class _OfflineRoberta:
    """Answers ``RobertaModel.from_pretrained('roberta-base')`` with a config-built model."""

    def __init__(self, text_config: Mapping[str, Any] | None, meta: bool):
        self.fields = {**ROBERTA_BASE, **dict(text_config or {})}
        self.meta = meta

    def from_pretrained(self, name: str, *args: Any, **kwargs: Any) -> nn.Module:
        if name != "roberta-base":
            raise RuntimeError(f"laion_clap asked for {name!r}; only roberta-base is provided offline")
        from transformers import RobertaConfig, RobertaModel

        with torch.device("meta") if self.meta else contextlib.nullcontext():
            return RobertaModel(RobertaConfig(**self.fields))


def build_clap_model(
    variant: str = DEFAULT_VARIANT, *, text_config: Mapping[str, Any] | None = None, meta: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """``laion_clap``'s ``create_model('HTSAT-tiny', 'roberta', ...)`` with random weights, offline.

    ``meta`` moves the model to the meta device (structure checks; the RoBERTa tower is built
    there directly, HTSAT on the CPU first because torchlibrosa writes its STFT and mel weights
    through ``.data``, which meta tensors do not allow).
    """
    if variant not in VARIANTS:
        raise KeyError(f"unknown LAION-CLAP variant {variant!r}; available: {', '.join(VARIANTS)}")
    clap_module, _ = import_laion_clap()
    fusion = VARIANTS[variant]
    model_code = sys.modules["clap_module.model"]
    with _LOCK:
        original = model_code.RobertaModel
        model_code.RobertaModel = _OfflineRoberta(text_config, meta)
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.meshgrid")
                model, model_cfg = clap_module.create_model(
                    AUDIO_MODEL,
                    "roberta",
                    precision="fp32",
                    device=torch.device("meta" if meta else "cpu"),
                    enable_fusion=fusion,
                    fusion_type="aff_2d" if fusion else "None",
                )
        finally:
            model_code.RobertaModel = original
    return model, model_cfg


def quantize_int16(x: torch.Tensor) -> torch.Tensor:
    """The package's int16 round trip (clip, ×32767, truncate, ÷32767), straight-through gradient."""
    q = torch.trunc(x.clamp(-1.0, 1.0) * 32767.0) / 32767.0
    return x + (q - x).detach()


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Remove the DDP ``module.`` prefix when the file has it (as ``laion_clap`` does)."""
    keys = list(state_dict)
    if keys and keys[0].startswith("module."):
        return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()}, True
    return dict(state_dict), False


class LaionCLAPBackbone(Backbone):
    """LAION-CLAP windows → 512-d audio embeddings, strings → 512-d text embeddings (pre-norm)."""

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        checkpoint: str | Path | None = None,
        tokenizer: str | Path | None = None,
        *,
        random_init: bool = False,
        allow_missing: tuple[str, ...] = (),
        allow_unexpected: tuple[str, ...] = (),
        overrides: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise KeyError(f"unknown LAION-CLAP variant {variant!r}; available: {', '.join(VARIANTS)}")
        ov = check_overrides("laion-clap", overrides or {}, LAION_OVERRIDES)
        checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        require_checkpoint("laion-clap", checkpoint, random_init, f"{variant}.pt")
        self.tokenizer = load_roberta_tokenizer(
            tokenizer, expected_vocab=int(ov.get("expected_vocab", ROBERTA_VOCAB_SIZE))
        )
        self.fusion = VARIANTS[variant]
        self.quantize = bool(ov.get("quantize", True))
        self.padding = str(ov.get("padding", "zero"))
        if self.padding not in PADDINGS:
            raise ValueError(
                f"laion-clap: padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}"
            )
        self.eval_in_training = bool(ov.get("eval_in_training", True))
        self.split_text = bool(ov.get("split_text", True))
        self.clap, model_cfg = build_clap_model(variant, text_config=ov.get("text_config"))
        branch = self.clap.audio_branch
        run_in_float32(branch.spectrogram_extractor)
        run_in_float32(branch.logmel_extractor)
        run_in_float32(branch, "reshape_wav2img")
        self.audio_cfg = dict(model_cfg["audio_cfg"])
        _, self._data = import_laion_clap()
        vocab = self.clap.text_branch.config.vocab_size
        if vocab != len(self.tokenizer):
            raise ValueError(
                f"laion-clap: tokenizer has {len(self.tokenizer)} tokens but the text tower {vocab}"
            )
        self.spec = BackboneSpec(
            name="laion-clap",
            variant=variant,
            sample_rate=SAMPLE_RATE,
            audio_dim=EMBED_DIM,
            text_dim=EMBED_DIM,
            window_seconds=MAX_SAMPLES / SAMPLE_RATE,
            padding=self.padding,
            front_end=FRONT_END[self.fusion].format(padding=PADDING_TEXT[self.padding]),
        )
        loaded: dict[str, Any] = {"missing": [], "unexpected": []}
        dropped, container, stripped = [], "", False
        if checkpoint is not None:
            sd, container = read_state_dict(
                checkpoint, trust_pickle=bool(ov.get("trust_pickle", False)), containers=("state_dict",)
            )
            sd, stripped = strip_module_prefix(sd)
            dropped = [k for k in DROPPED_KEYS if sd.pop(k, None) is not None]
            loaded = load_state_dict_strict(
                self.clap,
                sd,
                source=f"LAION-CLAP checkpoint {checkpoint}",
                allow_missing=allow_missing,
                allow_unexpected=allow_unexpected,
            )
        if not bool(ov.get("bn0_trainable", False)):
            branch.bn0.requires_grad_(False)
        self._provenance = {
            **checkpoint_provenance(checkpoint, random_init),
            **tokenizer_provenance(tokenizer),
            "laion_clap_model": f"{AUDIO_MODEL} + roberta",
            "enable_fusion": self.fusion,
            "audio_embedding": "audio_projection(HTSAT 'embedding'), before L2 normalisation",
            "text_embedding": f"text_projection(RoBERTa pooler output), before L2 normalisation; "
            f"{MAX_TEXT_TOKENS} tokens",
            "padding": (
                "zero: the window zero-padded to 480000 samples before get_audio_features"
                if self.padding == "zero"
                else "repeatpad (laion_clap get_audio_features): real samples repeated floor(480000/n) "
                "times, then zero-filled"
            ),
            "eval_in_training": self.eval_in_training,
            "bn0_trainable": bool(ov.get("bn0_trainable", False)),
            "split_text": self.split_text,
            "quantize_int16": self.quantize,
            "overrides": ov,
            "allowed_missing": loaded["missing"],
            "allowed_unexpected": loaded["unexpected"],
            "dropped_keys": dropped,
            "container": container,
            "module_prefix_stripped": stripped,
        }
        self.eval()

    def train(self, mode: bool = True) -> LaionCLAPBackbone:
        super().train(mode)
        if self.eval_in_training:
            self.clap.eval()
        return self

    def audio_inputs(
        self, windows: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The package's model input for each window, 10 s long, computed in float32 outside autocast.

        ``padding="zero"``: the window's real samples (``lengths``) followed by zeros up to 480000
        samples. ``padding="repeat"``: the package's ``repeatpad`` applied to the real samples
        themselves (whatever padding the window carries after them is ignored).
        """
        if windows.shape[-1] > MAX_SAMPLES:
            raise ValueError(
                f"laion-clap windows hold at most {MAX_SAMPLES} samples, got {windows.shape[-1]}"
            )
        n_real = [windows.shape[-1]] * len(windows) if lengths is None else [int(n) for n in lengths]
        windows = windows.float()
        if self.quantize:
            windows = quantize_int16(windows)
        items = []
        with float32_region(windows.device):
            for i, (wave, n) in enumerate(zip(windows, n_real, strict=True)):
                if not 0 <= n <= windows.shape[-1]:
                    raise ValueError(
                        f"laion-clap: window {i} has {n} real samples (must be 0..{windows.shape[-1]})"
                    )
                if self.padding == "zero":
                    if n < wave.shape[-1]:  # whatever follows the real samples becomes zeros
                        wave = torch.cat([wave[:n], wave.new_zeros(wave.shape[-1] - n)])
                    audio, filling = wave, "pad"
                else:  # a window without real samples (ignored by the pooling) is passed as it is
                    audio, filling = (wave[:n] if n > 0 else wave), "repeatpad"
                items.append(
                    self._data.get_audio_features(
                        {},
                        audio,
                        MAX_SAMPLES,
                        data_truncating="fusion" if self.fusion else "rand_trunc",
                        data_filling=filling,
                        audio_cfg=self.audio_cfg,
                        require_grad=torch.is_grad_enabled(),
                    )
                )
        return {k: torch.cat([item[k].unsqueeze(0) for item in items]).to(windows.device) for k in items[0]}

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        param = self.clap.audio_projection[0].weight
        windows = windows.to(device=param.device, dtype=torch.float32)
        features = self.clap.encode_audio(self.audio_inputs(windows, lengths), device=param.device)[
            "embedding"
        ]
        return self.clap.audio_projection(features)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        device = self.clap.audio_projection[0].weight.device
        texts = [split_and_join(t or "") if self.split_text else (t or "") for t in texts]
        batch = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt"
        )
        return self.clap.encode_text(
            {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, device=device
        )


@register_backbone("laion-clap")
def build(config: BackboneConfig) -> LaionCLAPBackbone:
    return LaionCLAPBackbone(
        config.variant or DEFAULT_VARIANT,
        config.checkpoint,
        config.tokenizer,
        random_init=config.random_init,
        allow_missing=tuple(config.allow_missing),
        allow_unexpected=tuple(config.allow_unexpected),
        overrides=config.overrides,
    )


__all__ = [
    "LaionCLAPBackbone",
    "VARIANTS",
    "DEFAULT_VARIANT",
    "build_clap_model",
    "import_laion_clap",
    "quantize_int16",
    "split_and_join",
    "strip_module_prefix",
]
