"""``m2d``: the M2D / M2D-CLAP audio encoder (Niizumi et al.), our implementation on timm ViT blocks.

It loads the official weight files (e.g. ``m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly/
weights_ep67it3124-0.48558.pth`` from the nttcslab/m2d releases) as they are. As in the official
runtime, the architecture is read from the name of the folder holding the file:
``<model>-<F>x<T>p<pf>x<pt>[p<rate>]-…`` (input F mel bins × T frames, patch pf × pt, rate 16k by
default; ``vit_base`` = 768-d, 12 blocks, 12 heads; ``vit_large`` = 1024-d, 24 blocks, 16 heads).
The state dict follows the official encoder (a timm VisionTransformer without head):
``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.*``, ``norm`` and ``norm_stats``
(the log-mel mean and std used for normalisation, read from the file). Files saved by an EVAR
fine-tuning carry the prefix ``module.ar.runtime.backbone.``, which is removed as the official
loader does. Keys the audio features do not use are named in the explicit allow-list
:data:`UNUSED_KEY_PATTERNS` (the CLAP projections ``audio_proj.*`` / ``text_proj.*``, the EVAR
task head ``module.head.*`` and the EVAR runtime's front-end buffers); any other unexpected or
missing key fails.

Front-end (docs/backbones_beats_m2d.md): power-2 mel spectrogram (Hann 400, hop 160, centred with reflect
padding, 80 Slaney-normalised Slaney-scale filters 50–8000 Hz; torchaudio), ``log(x + eps)`` with the float32
eps, ``(x - mean) / std`` with ``norm_stats``. 10 s → 1001 frames → 5 frequency × 62 time patches;
each time step's 5 patch embeddings are concatenated (f-major, 5 × 768 = 3840) and averaged over
time. The front-end runs in float32 outside autocast.

Pooling (option ``pooling``, docs/parity.md). Both modes average only the time steps that hold
real samples (a time step counts when its first frame's centre lies within the real samples):

- ``"masked"`` (default): time steps made only of padding are also excluded as attention keys;
  a clip's embedding is the mean of its window embeddings (``extract.windowing.pool_windows``).
- ``"reference"``: as the CP-JKU reference runs: no attention mask (padded patches are attended
  to); the real time steps of all a clip's windows are pooled as one sequence, i.e. the window
  means are weighted by their number of real time steps (:meth:`M2DBackbone.pool_windows`).

``BackboneConfig.overrides``: ``pooling``, and (tiny test configs) ``embed_dim``, ``depth``,
``num_heads``, ``mlp_ratio``, ``input_size`` [F, T], ``patch_size`` [pf, pt].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import nn

from ..checkpoints import CheckpointError, load_state_dict_strict, torch_load
from .base import Backbone, BackboneConfig, BackboneSpec, register_backbone
from .precision import float32_region

DEFAULT_FOLDER = "m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly"
EVAR_PREFIX = "module.ar.runtime.backbone."
DEFAULT_NORM_STATS = (-7.1, 4.2)  # the official fallback for 2022 files without ``norm_stats``
UNUSED_KEY_PATTERNS = (
    # M2D-CLAP projections to the shared audio–text space
    "audio_proj.*",
    "text_proj.*",
    "module.head.*",  # EVAR fine-tuning task head (AudioSet tagger)
    # EVAR runtime's nnAudio front-end buffers (recomputed here with torchaudio)
    "module.ar.runtime.to_spec.*",
)
FRONT_ENDS = {  # rate tag in the folder name → (sample_rate, n_fft/window, hop, f_min, f_max)
    "16k": (16000, 400, 160, 50.0, 8000.0),
}
_SIZES = {"vit_base": (768, 12, 12), "vit_large": (1024, 24, 16)}
POOLINGS = ("masked", "reference")


@dataclass(frozen=True)
class M2DArch:
    """Architecture of an M2D encoder (from the weight folder's name, plus overrides)."""

    model: str = "m2d_clap_vit_base"
    input_size: tuple[int, int] = (80, 1001)
    patch_size: tuple[int, int] = (16, 16)
    rate: str = "16k"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> tuple[int, int]:
        return self.input_size[0] // self.patch_size[0], self.input_size[1] // self.patch_size[1]

    @property
    def audio_dim(self) -> int:
        return self.embed_dim * self.grid[0]


_NAME_RE = re.compile(
    r"^(?P<model>[A-Za-z0-9_]+)-(?P<f>\d+)x(?P<t>\d+)p(?P<pf>\d+)x(?P<pt>\d+)(?:p(?P<rate>\d+k))?(?:p[^-]*)?(?:-|$)"
)


def arch_from_name(name: str) -> M2DArch:
    """Parse ``m2d_clap_vit_base-80x1001p16x16-…`` (the official folder naming) into an :class:`M2DArch`."""
    m = _NAME_RE.match(name)
    if not m:
        raise CheckpointError(
            f"cannot read the M2D architecture from the folder name {name!r}; expected "
            f"'<model>-<F>x<T>p<pf>x<pt>-…', e.g. {DEFAULT_FOLDER!r} (keep the release's folder name)"
        )
    model = m["model"]
    size = next((s for s in _SIZES if s in model), None)
    if size is None:
        raise CheckpointError(
            f"M2D folder {name!r}: model {model!r} names no known size ({', '.join(_SIZES)})"
        )
    rate = m["rate"] or "16k"
    if rate not in FRONT_ENDS:
        raise CheckpointError(
            f"M2D folder {name!r}: sample-rate tag {rate!r} not supported "
            f"(supported: {', '.join(FRONT_ENDS)})"
        )
    dim, depth, heads = _SIZES[size]
    return M2DArch(
        model=model,
        input_size=(int(m["f"]), int(m["t"])),
        patch_size=(int(m["pf"]), int(m["pt"])),
        rate=rate,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
    )


def _with_overrides(arch: M2DArch, overrides: Mapping[str, Any]) -> M2DArch:
    allowed = {"embed_dim", "depth", "num_heads", "mlp_ratio", "input_size", "patch_size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"m2d: unknown override(s) {unknown}; known: {sorted(allowed | {'pooling'})}")
    kw = dict(overrides)
    for k in ("input_size", "patch_size"):
        if k in kw:
            kw[k] = tuple(int(v) for v in kw[k])
    arch = replace(arch, **kw)
    if arch.embed_dim % arch.num_heads or arch.grid[0] < 1 or arch.grid[1] < 1:
        raise ValueError(f"m2d: inconsistent architecture {asdict(arch)}")
    return arch


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: tuple[int, int], dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, D, F', T')


class M2DEncoder(nn.Module):
    """The official M2D encoder layout: patch embedding, [CLS] + fixed positions, ViT blocks, final norm."""

    def __init__(self, arch: M2DArch):
        from timm.models.vision_transformer import Block  # imported here: timm takes seconds to import

        super().__init__()
        self.arch = arch
        n_patches = arch.grid[0] * arch.grid[1]
        self.patch_embed = _PatchEmbed(arch.patch_size, arch.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, arch.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, arch.embed_dim), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(arch.embed_dim, arch.num_heads, arch.mlp_ratio, qkv_bias=True, norm_layer=norm)
            for _ in range(arch.depth)
        )
        self.norm = norm(arch.embed_dim)
        self.register_buffer("norm_stats", torch.tensor(DEFAULT_NORM_STATS, dtype=torch.float32))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward_chunk(self, x: torch.Tensor, valid_steps: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, F, T) normalised log-mel → (B, T', F' * D): per time step, the F' patch embeddings
        concatenated.

        ``valid_steps`` (B,) = number of leading time steps that hold real input; the others are
        not attended to (their outputs are still returned).
        """
        x = self.patch_embed(x)  # (B, D, F', T')
        b, d, fp, tp = x.shape
        grid_f, grid_t = self.arch.grid
        if fp != grid_f or tp > grid_t:
            raise ValueError(
                f"m2d: input of {fp}x{tp} patches exceeds the {grid_f}x{grid_t} grid of the weights"
            )
        pos = self.pos_embed[:, 1:, :].reshape(1, grid_f, grid_t, d)[:, :, :tp, :].reshape(1, fp * tp, d)
        x = x.flatten(2).transpose(1, 2) + pos  # (B, F'*T', D), f-major
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(b, -1, -1)
        x = torch.cat([cls, x], dim=1)
        attn_mask = None
        if valid_steps is not None:
            keep_t = torch.arange(tp, device=x.device)[None, :] < valid_steps[:, None]  # (B, T')
            keep = torch.cat(
                [torch.ones(b, 1, dtype=torch.bool, device=x.device), keep_t.repeat(1, fp)], dim=1
            )
            attn_mask = keep[:, None, None, :]  # True = may be attended to
        for blk in self.blocks:
            x = blk(x, attn_mask=attn_mask)
        x = self.norm(x)[:, 1:, :]
        return x.reshape(b, fp, tp, d).permute(0, 2, 1, 3).reshape(b, tp, fp * d)


class M2DBackbone(Backbone):
    """M2D encoder + log-mel front-end; ``embed_windows`` → (B, F' × embed_dim) = (B, 3840) for the
    release."""

    def __init__(self, arch: M2DArch, variant: str = DEFAULT_FOLDER, pooling: str = "masked"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"m2d: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.arch = arch
        self.pooling = pooling
        sr, n_fft, hop, f_min, f_max = FRONT_ENDS[arch.rate]
        self.hop = hop
        self.spec = BackboneSpec(
            name="m2d",
            variant=variant,
            sample_rate=sr,
            audio_dim=arch.audio_dim,
            padding="zero",
            front_end=(
                f"log(mel power + eps): Hann {n_fft}, hop {hop}, centred (reflect), {arch.input_size[0]} "
                f"Slaney mel {f_min:g}-{f_max:g} Hz; (x - mean) / std with the file's norm_stats; "
                f"{arch.patch_size[0]}x{arch.patch_size[1]} patches; per time step the {arch.grid[0]} "
                "frequency patches concatenated; "
                + (
                    "mean over the real time steps of all windows (reference)"
                    if pooling == "reference"
                    else "padded time steps masked in attention; mean over real time steps"
                )
            ),
        )
        self.encoder = M2DEncoder(arch)
        self.melspec = torchaudio.transforms.MelSpectrogram(
            sample_rate=sr,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=hop,
            f_min=f_min,
            f_max=f_max,
            n_mels=arch.input_size[0],
            window_fn=torch.hann_window,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )
        self._provenance: dict[str, Any] = {
            "architecture": asdict(arch),
            "checkpoint": None,
            "random_init": True,
            "pooling": pooling,
        }

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, samples) → (B, 1, n_mels, frames) normalised log-mel, computed in float32."""
        if windows.dim() != 2:
            raise ValueError(f"m2d expects windows (B, samples), got shape {tuple(windows.shape)}")
        with float32_region(windows.device):
            x = torch.log(self.melspec(windows.float()) + torch.finfo(torch.float32).eps)
            mean, std = self.encoder.norm_stats.float()
            return ((x - mean) / std).unsqueeze(1)

    def valid_frames(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Centred frames whose centre lies within the real samples (a full window keeps all of them)."""
        frames = 1 + torch.div(lengths.clamp(min=0), self.hop, rounding_mode="floor")
        return torch.where(lengths > 0, frames, torch.ones_like(frames)).clamp(max=n_frames)

    def chunk_steps(self, n_frames: int) -> list[int]:
        """Time steps of each chunk the encoder sees for ``n_frames`` frames (tail padded to whole
        patches)."""
        unit, patch_t = self.arch.input_size[1], self.arch.patch_size[1]
        padded = n_frames + (patch_t - (n_frames % unit % patch_t)) % patch_t
        steps = [min(unit, padded - start) // patch_t for start in range(0, n_frames, unit)]
        if min(steps) < 1:
            raise ValueError(f"m2d needs at least {patch_t} frames per chunk, got {n_frames} frames")
        return steps

    def real_steps(
        self, lengths: torch.Tensor | None, n_frames: int, batch: int, device: torch.device
    ) -> list[torch.Tensor]:
        """Per chunk, the (B,) number of leading time steps that hold real samples."""
        unit, patch_t = self.arch.input_size[1], self.arch.patch_size[1]
        steps = self.chunk_steps(n_frames)
        if lengths is None:
            return [torch.full((batch,), s, dtype=torch.long, device=device) for s in steps]
        frames_real = self.valid_frames(lengths.to(device), n_frames)
        return [
            torch.div(
                (frames_real - c * unit).clamp(min=0) + patch_t - 1, patch_t, rounding_mode="floor"
            ).clamp(max=s)
            for c, s in enumerate(steps)
        ]

    def embed_frames(
        self, windows: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, samples) → time-step features (B, T', F'·D) and a (B, T') bool mask of the real steps."""
        x = self.features(windows)
        unit, patch_t = self.arch.input_size[1], self.arch.patch_size[1]
        n_frames = x.shape[-1]
        steps = self.chunk_steps(n_frames)
        # as the official runtime: pad the tail to whole patches
        pad = (patch_t - (n_frames % unit % patch_t)) % patch_t
        if pad:
            x = nn.functional.pad(x, (0, pad))
        outs, reals = [], []
        for c, (n_steps, valid) in enumerate(
            zip(steps, self.real_steps(lengths, n_frames, x.shape[0], x.device), strict=True)
        ):
            chunk = x[..., c * unit : (c + 1) * unit]
            masked = self.pooling == "masked" and bool((valid < n_steps).any())
            outs.append(self.encoder.forward_chunk(chunk, valid if masked else None))
            reals.append(torch.arange(n_steps, device=x.device)[None, :] < valid[:, None])
        return torch.cat(outs, dim=1), torch.cat(reals, dim=1)

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        frames, real = self.embed_frames(windows, lengths)
        w = real.to(frames.dtype).unsqueeze(-1)
        return (frames * w).sum(1) / w.sum(1).clamp(min=1.0)

    @property
    def pooling_description(self) -> str:
        if self.pooling == "reference":
            return "reference: mean over the real time steps of all windows (windows weighted by real steps)"
        return "mean over windows with real samples"

    def window_weights(self, lengths: torch.Tensor) -> torch.Tensor:
        """(W,) weight of each window in its clip's mean: its number of real time steps ("reference"
        pooling) or 1 ("masked"); 0 for windows without real samples."""
        if self.pooling != "reference":
            return (lengths > 0).float()
        n_frames = 1 + self.spec.window_samples // self.hop  # centred frames of a full window
        counts = sum(self.real_steps(lengths, n_frames, len(lengths), lengths.device))
        return counts.float() * (lengths > 0).float()

    def pool_windows(
        self, window_emb: torch.Tensor, clip_of_window: torch.Tensor, lengths: torch.Tensor, n_clips: int
    ) -> torch.Tensor:
        """Weighted mean of each clip's window embeddings (:meth:`window_weights`): (Wtot, D) → (n_clips,
        D)."""
        weight = self.window_weights(lengths.to(window_emb.device)).to(window_emb.dtype)
        index = clip_of_window.to(window_emb.device, torch.long)
        sums = window_emb.new_zeros(n_clips, window_emb.shape[1]).index_add(
            0, index, window_emb * weight[:, None]
        )
        counts = window_emb.new_zeros(n_clips).index_add(0, index, weight)
        return sums / counts.clamp(min=1e-12)[:, None]


def read_m2d_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official M2D weight file (``weights_only=True``), EVAR prefix removed."""
    data = torch_load(path, weights_only=True)
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping):
        raise CheckpointError(
            f"{path} is not an M2D weight file (expected a state dict, found {type(data).__name__})"
        )
    return {(k[len(EVAR_PREFIX) :] if k.startswith(EVAR_PREFIX) else k): v for k, v in data.items()}


def load_m2d(config: BackboneConfig) -> M2DBackbone:
    """Build from a config: architecture from the weight folder's name (+ overrides), weights loaded
    strictly."""
    overrides = dict(config.overrides)
    pooling = str(overrides.pop("pooling", "masked"))
    if config.checkpoint is None:
        if not config.random_init:
            raise CheckpointError(
                f"m2d needs --checkpoint (the .pth inside the release folder, e.g. {DEFAULT_FOLDER}/"
                "weights_ep67it3124-0.48558.pth; see docs/backbones_beats_m2d.md) or random_init=True"
            )
        arch = _with_overrides(arch_from_name(config.variant or DEFAULT_FOLDER), overrides)
        model = M2DBackbone(arch, config.variant or DEFAULT_FOLDER, pooling)
        model._provenance["overrides"] = dict(config.overrides)
        return model
    path = Path(config.checkpoint)
    folder = path.parent.name
    arch = _with_overrides(arch_from_name(folder), overrides)
    model = M2DBackbone(arch, config.variant or folder, pooling)
    model._provenance.update({"overrides": dict(config.overrides), "checkpoint": str(path)})
    if config.random_init:
        return model
    state = read_m2d_state(path)
    allowed = load_state_dict_strict(
        model.encoder,
        state,
        source=str(path),
        allow_missing=config.allow_missing,
        allow_unexpected=tuple(UNUSED_KEY_PATTERNS) + tuple(config.allow_unexpected),
    )
    from cache.provenance import sha256_file

    model._provenance.update(
        {
            "checkpoint_sha256": sha256_file(path),
            "random_init": False,
            "norm_stats": [float(v) for v in model.encoder.norm_stats],
            "ignored_keys": allowed["unexpected"],
            "missing_allowed": allowed["missing"],
        }
    )
    return model


@register_backbone("m2d")
def build(config: BackboneConfig) -> M2DBackbone:
    return load_m2d(config)
