"""``beats``: BEATs (Chen et al., ICML 2023), our implementation of the published architecture.

It loads the official release files (e.g. ``BEATs_iter3_plus_AS2M.pt`` from microsoft/unilm
``beats``) as they are: a dict with the architecture configuration under ``cfg`` and the weights
under ``model``. The model is built from the file's ``cfg``, so any BEATs release (and a tiny test
configuration) loads. Parameter names and shapes follow the release: ``patch_embedding``,
``layer_norm``, ``post_extract_proj``, ``encoder.pos_conv.0.{weight_g,weight_v,bias}`` (the
weight-normalised positional convolution, normalised over all but the kernel axis),
``encoder.layers.N.*`` (post-LN "deep norm" blocks with a bucketed relative position bias shared
by all layers and a per-layer gate), ``encoder.layer_norm``.

``BEATs_iter3_plus_AS2M.pt`` is the self-supervised model (``finetuned_model: False``), so its
``model`` is exactly the encoder. The AudioSet fine-tuned releases (``*_finetuned_on_AS2M_cpt*.pt``,
``finetuned_model: True``) also carry the tagging head ``predictor.{weight,bias}``, which the
official code applies on top of the encoder; we use the encoder only, so those two keys are in
the explicit allow-list :data:`UNUSED_KEYS` (any other unexpected or missing key fails).

Front-end (docs/backbones_beats_m2d.md): Kaldi fbank of ``waveform * 2**15`` (128 bins, 25 ms / 10 ms, povey
window;
:func:`extract.frontends.kaldi_fbank`), then ``(x - 15.41663) / (2 * 6.55582)``; 16×16 patches
(10 s → 998 frames → 62 time × 8 frequency patches); the final token features averaged → 768-d.
With ``lengths``, patches made only of padding are zeroed before the positional convolution,
excluded as attention keys and left out of the average.

``BackboneConfig.overrides`` takes keys of the official ``cfg`` (:class:`BEATsArch`): without a
checkpoint they update the default full configuration (tiny test configs); over a file's ``cfg``
only the training-only rates (:data:`TRAINING_FIELDS`, e.g. dropout for fine-tuning) may change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointError, load_state_dict_strict, torch_load
from ..frontends import kaldi_fbank
from .base import Backbone, BackboneConfig, BackboneSpec, register_backbone

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
FRAME_SHIFT = 160  # samples (10 ms)
FRAME_LENGTH = 400  # samples (25 ms)
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
DEFAULT_VARIANT = "BEATs_iter3_plus_AS2M"
# AudioSet tagging head of the fine-tuned releases (allow-list)
UNUSED_KEYS = ("predictor.weight", "predictor.bias")
FRONT_END = (
    "Kaldi fbank (torchaudio.compliance.kaldi, povey window) of waveform*2**15, 128 bins, 25 ms / 10 ms, "
    f"(x - {FBANK_MEAN}) / (2 * {FBANK_STD}); 16x16 patches; mean of the final token features"
)


@dataclass(frozen=True)
class BEATsArch:
    """The official ``BEATsConfig`` fields, with the official class defaults."""

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any], source: str = "cfg") -> BEATsArch:
        """Read an official ``cfg`` dict; keys the architecture does not use are ignored (as the official code
        does)."""
        known = {f.name for f in fields(cls)}
        arch = cls(**{k: v for k, v in cfg.items() if k in known})
        problems = []
        if arch.input_patch_size <= 0:
            problems.append(f"input_patch_size={arch.input_patch_size}")
        if arch.encoder_embed_dim % arch.encoder_attention_heads:
            problems.append("encoder_embed_dim not divisible by encoder_attention_heads")
        if arch.deep_norm and arch.layer_norm_first:
            problems.append("deep_norm together with layer_norm_first")
        if arch.activation_fn not in _ACTIVATIONS:
            problems.append(f"activation_fn={arch.activation_fn!r} (supported: {', '.join(_ACTIVATIONS)})")
        if problems:
            raise CheckpointError(f"{source}: unsupported BEATs configuration: {'; '.join(problems)}")
        return arch


# The configuration stored in BEATs_iter3_plus_AS2M.pt, the default full-size architecture (the fields
# that shape the weights are facts of the release; the training-only rates are read from the file when
# loading).
BEATS_ITER3_PLUS_AS2M_CFG: dict[str, Any] = {
    "input_patch_size": 16,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 0.6,
    "layer_norm_first": False,
    "deep_norm": True,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": True,
    "num_buckets": 320,
    "max_distance": 800,
    "gru_rel_pos": True,
    "finetuned_model": False,
    "predictor_dropout": 0.0,
    "predictor_class": 527,
}

_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x.float()).type_as(x),
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


class _GradMultiply(torch.autograd.Function):
    """Identity forward; scales the gradient (BEATs' layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x, scale):  # noqa: D102
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad * ctx.scale, None


class WeightNormConv1d(nn.Module):
    """Grouped ``Conv1d`` with weight = g · v / ‖v‖, the norm taken over all but the kernel axis (dim 2).

    Stores ``weight_g`` (1, 1, K), ``weight_v`` (C, C / groups, K) and ``bias`` (C), the layout of
    ``torch.nn.utils.weight_norm(conv, dim=2)`` in the released files.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel_size // 2, groups
        std = math.sqrt(4.0 / (kernel_size * channels))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel_size) * std)
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        if self.weight_v.device.type != "meta":
            with torch.no_grad():
                self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def weight(self) -> torch.Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class _TrimLast(nn.Module):
    """Drop the last output step of an even-kernel 'same' convolution."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : -self.remove] if self.remove else x


def relative_position_buckets(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5-style buckets of ``key - query`` offsets (BEATs/WavLM convention).

    Half of the buckets for positive offsets; within each half, exact buckets below a quarter of
    ``num_buckets`` and logarithmic ones up to ``max_distance`` (clipped to the last bucket).
    """
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    log_part = (
        torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)
    )
    large = (exact + log_part.long()).clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, large)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with the BEATs gated relative position bias."""

    def __init__(self, arch: BEATsArch):
        super().__init__()
        dim, self.heads = arch.encoder_embed_dim, arch.encoder_attention_heads
        self.head_dim = dim // self.heads
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = arch.attention_dropout
        self.gru_rel_pos = arch.gru_rel_pos
        if arch.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor | None, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, t, c = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        bias = None
        if position_bias is not None:  # (H, T, T)
            bias = position_bias.unsqueeze(0)
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias  # (B, H, T, T)
        if key_padding_mask is not None:
            pad = torch.zeros(b, 1, 1, t, dtype=q.dtype, device=q.device)
            pad = pad.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            bias = pad if bias is None else bias + pad
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c))


class _EncoderLayer(nn.Module):
    def __init__(self, arch: BEATsArch):
        super().__init__()
        dim = arch.encoder_embed_dim
        self.self_attn = _SelfAttention(arch)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, arch.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(arch.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.activation = _ACTIVATIONS[arch.activation_fn]
        self.dropout, self.activation_dropout = arch.dropout, arch.activation_dropout
        self.layer_norm_first = arch.layer_norm_first
        self.alpha = math.pow(2 * arch.encoder_layers, 0.25) if arch.deep_norm else 1.0

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.activation(self.fc1(x)), self.activation_dropout, self.training)
        return F.dropout(self.fc2(x), self.dropout, self.training)

    def forward(
        self, x: torch.Tensor, position_bias: torch.Tensor | None, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + F.dropout(
                self.self_attn(self.self_attn_layer_norm(x), position_bias, key_padding_mask),
                self.dropout,
                self.training,
            )
            return x + self._ffn(self.final_layer_norm(x))
        attn = F.dropout(self.self_attn(x, position_bias, key_padding_mask), self.dropout, self.training)
        x = self.self_attn_layer_norm(x * self.alpha + attn)
        return self.final_layer_norm(x * self.alpha + self._ffn(x))


class _TransformerEncoder(nn.Module):
    def __init__(self, arch: BEATsArch):
        super().__init__()
        dim = arch.encoder_embed_dim
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(dim, arch.conv_pos, arch.conv_pos_groups), _TrimLast(arch.conv_pos), nn.GELU()
        )
        self.layers = nn.ModuleList(_EncoderLayer(arch) for _ in range(arch.encoder_layers))
        self.layer_norm = nn.LayerNorm(dim)
        self.arch = arch
        if arch.relative_position_embedding:
            # one table, registered in every layer (so every layer's key exists in the released files)
            table = nn.Embedding(arch.num_buckets, arch.encoder_attention_heads)
            for layer in self.layers:
                layer.self_attn.relative_attention_bias = table

    def position_bias(self, t: int, device: torch.device) -> torch.Tensor | None:
        if not self.arch.relative_position_embedding:
            return None
        pos = torch.arange(t, device=device)
        buckets = relative_position_buckets(
            pos[None, :] - pos[:, None], self.arch.num_buckets, self.arch.max_distance
        )
        return self.layers[0].self_attn.relative_attention_bias(buckets).permute(2, 0, 1)  # (H, T, T)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.arch.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, self.arch.dropout, self.training)
        bias = self.position_bias(x.shape[1], x.device)
        decay = self.arch.layer_wise_gradient_decay_ratio
        for layer in self.layers:
            if decay != 1.0 and torch.is_grad_enabled():
                x = _GradMultiply.apply(x, decay)
            if (
                self.training
                and self.arch.encoder_layerdrop > 0
                and torch.rand(()) < self.arch.encoder_layerdrop
            ):
                continue
            x = layer(x, bias, padding_mask)
        if self.arch.layer_norm_first:
            x = self.layer_norm(x)
        return x


class BEATsModel(nn.Module):
    """Patch embedding + transformer encoder; its state dict is the release's ``model`` minus the head."""

    def __init__(self, arch: BEATsArch):
        super().__init__()
        self.arch = arch
        p = arch.input_patch_size
        self.patch_embedding = nn.Conv2d(1, arch.embed_dim, kernel_size=p, stride=p, bias=arch.conv_bias)
        self.layer_norm = nn.LayerNorm(arch.embed_dim)
        self.post_extract_proj = (
            nn.Linear(arch.embed_dim, arch.encoder_embed_dim)
            if arch.embed_dim != arch.encoder_embed_dim
            else None
        )
        self.encoder = _TransformerEncoder(arch)

    def forward(self, fbank: torch.Tensor, time_padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, frames, mel) normalised fbank → (B, time_patches * freq_patches, D) tokens, time-major.

        ``time_padding`` (B, time_patches) marks patch columns made only of padding.
        """
        x = self.patch_embedding(fbank.unsqueeze(1))  # (B, E, Tp, Fp)
        freq_patches = x.shape[-1]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        x = F.dropout(x, self.arch.dropout_input, self.training)
        mask = None if time_padding is None else time_padding.repeat_interleave(freq_patches, dim=1)
        return self.encoder(x, mask)


def normalised_fbank(waves: torch.Tensor) -> torch.Tensor:
    """(B, samples) at 16 kHz → (B, frames, 128): Kaldi fbank of waves·2^15, normalised as in the release."""
    fbank = kaldi_fbank(waves, SAMPLE_RATE, NUM_MEL_BINS, scale=2**15)
    return (fbank - FBANK_MEAN) / (2 * FBANK_STD)


def valid_time_patches(lengths: torch.Tensor, n_frames: int, patch: int) -> torch.Tensor:
    """Patch columns holding at least one frame that touches a real sample (≥ 1 per window)."""
    frames = torch.div(lengths.clamp(min=0) + FRAME_SHIFT - 1, FRAME_SHIFT, rounding_mode="floor").clamp(
        max=n_frames
    )
    steps = torch.div(frames + patch - 1, patch, rounding_mode="floor")
    return steps.clamp(min=1, max=max(n_frames // patch, 1))


class BEATsBackbone(Backbone):
    """BEATs encoder + release front-end; ``embed_windows`` → (B, encoder_embed_dim)."""

    def __init__(self, arch: BEATsArch, variant: str = DEFAULT_VARIANT):
        super().__init__()
        self.arch = arch
        self.spec = BackboneSpec(
            name="beats",
            variant=variant,
            sample_rate=SAMPLE_RATE,
            audio_dim=arch.encoder_embed_dim,
            padding="zero",
            front_end=FRONT_END,
        )
        self.model = BEATsModel(arch)
        self._provenance: dict[str, Any] = {
            "architecture": asdict(arch),
            "checkpoint": None,
            "random_init": True,
        }

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, samples) → (B, frames, 128) normalised fbank, computed in float32."""
        if windows.dim() != 2:
            raise ValueError(f"beats expects windows (B, samples), got shape {tuple(windows.shape)}")
        with torch.autocast(device_type=windows.device.type, enabled=False):
            return normalised_fbank(windows.float())

    def embed_frames(
        self, windows: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, samples) → tokens (B, N, D) and a (B, N) bool mask of the real (non-padding) tokens."""
        fbank = self.features(windows)
        p = self.arch.input_patch_size
        n_time = fbank.shape[1] // p
        if n_time < 1:
            raise ValueError(
                f"beats needs at least {p} fbank frames "
                f"(~{(FRAME_LENGTH + (p - 1) * FRAME_SHIFT) / SAMPLE_RATE:.2f} s) "
                f"per window, got {fbank.shape[1]}"
            )
        time_padding = None
        if lengths is not None:
            valid = valid_time_patches(lengths.to(fbank.device), fbank.shape[1], p)
            time_padding = torch.arange(n_time, device=fbank.device)[None, :] >= valid[:, None]
            if not time_padding.any():
                time_padding = None
        tokens = self.model(fbank, time_padding)
        freq = tokens.shape[1] // n_time
        real = (
            torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
            if time_padding is None
            else ~time_padding.repeat_interleave(freq, dim=1)
        )
        return tokens, real

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        tokens, real = self.embed_frames(windows, lengths)
        w = real.to(tokens.dtype).unsqueeze(-1)
        return (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)


TRAINING_FIELDS = (
    "dropout",
    "attention_dropout",
    "activation_dropout",
    "encoder_layerdrop",
    "dropout_input",
    "layer_wise_gradient_decay_ratio",
    "predictor_dropout",
)


def _apply_overrides(
    cfg: dict[str, Any], overrides: Mapping[str, Any], source: str | None = None
) -> dict[str, Any]:
    """``cfg`` updated with ``overrides``; over a checkpoint's cfg (``source``) only training-only fields may
    change."""
    known = {f.name for f in fields(BEATsArch)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"beats: unknown override(s) {unknown}; known: {sorted(known)}")
    if source is not None:
        clash = {
            k: (v, cfg.get(k)) for k, v in overrides.items() if k not in TRAINING_FIELDS and cfg.get(k) != v
        }
        if clash:
            raise CheckpointError(
                f"{source}: overrides contradict the file's cfg (override, file): {clash}; only "
                f"{', '.join(TRAINING_FIELDS)} may be overridden"
            )
    return {**cfg, **overrides}


def read_beats_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The (cfg, model state dict) of an official BEATs file, loaded with ``weights_only=True``."""
    data = torch_load(path, weights_only=True)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("cfg"), Mapping)
        or not isinstance(data.get("model"), Mapping)
    ):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not a BEATs release file: expected a dict with 'cfg' (dict) and "
            f"'model' (state dict), found {keys}"
        )
    return dict(data["cfg"]), dict(data["model"])


def load_beats(config: BackboneConfig) -> BEATsBackbone:
    """Build from a config: the architecture from the file's ``cfg`` (+ overrides), weights loaded
    strictly."""
    if config.checkpoint is None:
        if not config.random_init:
            raise CheckpointError(
                "beats needs --checkpoint (e.g. BEATs_iter3_plus_AS2M.pt; see docs/backbones_beats_m2d.md) "
                "or random_init=True"
            )
        cfg = _apply_overrides(dict(BEATS_ITER3_PLUS_AS2M_CFG), config.overrides)
        model = BEATsBackbone(BEATsArch.from_cfg(cfg, "default BEATs cfg"), config.variant or DEFAULT_VARIANT)
        model._provenance.update({"cfg": cfg, "overrides": dict(config.overrides)})
        return model
    path = Path(config.checkpoint)
    cfg, state = read_beats_checkpoint(path)
    cfg = _apply_overrides(cfg, config.overrides, str(path))
    model = BEATsBackbone(BEATsArch.from_cfg(cfg, str(path)), config.variant or path.stem)
    model._provenance.update({"cfg": cfg, "overrides": dict(config.overrides), "checkpoint": str(path)})
    if config.random_init:
        return model
    allowed = load_state_dict_strict(
        model.model,
        state,
        source=str(path),
        allow_missing=config.allow_missing,
        allow_unexpected=tuple(UNUSED_KEYS) + tuple(config.allow_unexpected),
    )
    from cache.provenance import sha256_file

    model._provenance.update(
        {
            "checkpoint_sha256": sha256_file(path),
            "random_init": False,
            "ignored_keys": allowed["unexpected"],
            "missing_allowed": allowed["missing"],
        }
    )
    return model


@register_backbone("beats")
def build(config: BackboneConfig) -> BEATsBackbone:
    return load_beats(config)
