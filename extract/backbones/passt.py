"""PaSST audio backbone (``hear21passt``), 32 kHz, 10 s windows, 768-d.

Two variants, selected by name:

- ``cpjku`` (default): the architecture the CP-JKU system used, ``passt_s_p16_s16_128_ap468``
  (16×16 patches, frequency and time stride 16), fed with a Kaldi fbank front-end
  (``extract.frontends.kaldi_fbank``: 128 bins, 25/10 ms, unnormalised, 998 frames per 10 s).
  As in the reference, the filterbank frames that do not lie fully inside the window's real
  samples are set to zero (the reference computed the fbank of the real samples and
  zero-filled it to 998 frames). Weights: ``passt-s-f128-p16-s16-ap.468.pt``.
- ``hear21``: hear21passt's default ``passt_s_swa_p16_128_ap476`` (stride 10) with
  hear21passt's own mel front-end (``AugmentMelSTFT`` with the settings of
  ``hear21passt.base.get_basic_model``; 1000 frames per 10 s).
  Weights: ``passt-s-f128-p16-s10-ap.476-swa.pt``.

The 768-d embedding is PaSST's own ``features`` output, as in the reference code
(``_logits, features = model(spectrogram)``): the mean of the class (cls) and distillation
(dist) tokens after the final LayerNorm, before the classification heads.

The network is built with ``hear21passt.models.passt.get_model(..., pretrained=False)``
(``get_basic_model`` would download weights) and the local file is loaded with a strict key
check. Structured patchout (``s_patchout_t``/``s_patchout_f``, default t=16, f=2) only acts in
training mode (fine-tuning); it is exposed through ``BackboneConfig.overrides``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import CheckpointError, load_state_dict_strict, torch_load
from ..frontends import frames_for, kaldi_fbank
from .base import Backbone, BackboneConfig, BackboneSpec, check_overrides, register_backbone
from .precision import float32_region

SAMPLE_RATE = 32000
EMBED_DIM = 768
N_MELS = 128
NUM_CLASSES = 527


@dataclass(frozen=True)
class PasstVariant:
    """Architecture and front-end of one released PaSST checkpoint."""

    arch: str
    stride: int
    front_end: str  # "kaldi" or "hear21-mel"
    checkpoint_file: str
    input_tdim: int = 998


VARIANTS: dict[str, PasstVariant] = {
    "cpjku": PasstVariant("passt_s_p16_s16_128_ap468", 16, "kaldi", "passt-s-f128-p16-s16-ap.468.pt"),
    "hear21": PasstVariant(
        "passt_s_swa_p16_128_ap476", 10, "hear21-mel", "passt-s-f128-p16-s10-ap.476-swa.pt"
    ),
}
DEFAULT_VARIANT = "cpjku"
RELEASE_URL = "https://github.com/kkoutini/PaSST/releases"

FRONT_END_TEXT = {
    "kaldi": "Kaldi fbank (torchaudio.compliance.kaldi): 128 bins, 25 ms frames, 10 ms shift, povey window, "
    "unnormalised; frames not fully inside the real samples set to 0; 998 frames per 10 s",
    "hear21-mel": "hear21passt AugmentMelSTFT: pre-emphasis, STFT n_fft 1024 / win 800 / hop 320, "
    "128 Kaldi mel bins 0-15000 Hz, (log(x + 1e-5) + 4.5) / 5; 1000 frames per 10 s",
}
EMBEDDING_TEXT = "mean of cls and dist tokens after the final LayerNorm (PaSST 'features', before the heads)"

PASST_OVERRIDES = (
    "depth",
    "window_seconds",
    "s_patchout_t",
    "s_patchout_f",
    "u_patchout",
    "mel_augment",
    "trust_pickle",
)


def build_passt_net(
    arch: str,
    stride: int,
    *,
    input_tdim: int = 998,
    s_patchout_t: int = 0,
    s_patchout_f: int = 0,
    u_patchout: int = 0,
    depth: int | None = None,
    empty: bool = False,
    init: bool = True,
) -> nn.Module:
    """The PaSST network of ``hear21passt``, built without any download.

    Built with ``get_model(..., pretrained=False)`` under ``accelerate.init_empty_weights``
    (parameters on the meta device; hear21passt calls ``.item()`` while building, so
    ``torch.device('meta')`` cannot be used). ``depth`` keeps only the first transformer blocks
    (tiny test configurations). ``empty`` returns the meta-device network (structure checks);
    otherwise the parameters are materialised on the CPU and, if ``init``, initialised by
    hear21passt's own ``init_weights`` (skip it only when a strict checkpoint load follows).
    """
    import hear21passt.models.passt as hear21passt_models
    from accelerate import init_empty_weights

    hear21passt_models.first_RUN = False  # it would print tensor shapes on the first forward pass
    get_model = hear21passt_models.get_model
    with init_empty_weights(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = get_model(
            arch=arch,
            pretrained=False,
            n_classes=NUM_CLASSES,
            in_channels=1,
            fstride=stride,
            tstride=stride,
            input_fdim=N_MELS,
            input_tdim=input_tdim,
            u_patchout=u_patchout,
            s_patchout_t=s_patchout_t,
            s_patchout_f=s_patchout_f,
        )
    if depth is not None:
        if not 1 <= int(depth) <= len(net.blocks):
            raise ValueError(f"PaSST depth override must be in 1..{len(net.blocks)}, got {depth}")
        net.blocks = nn.Sequential(*list(net.blocks)[: int(depth)])
    if empty:
        return net
    materialize_(net)
    if init:
        for module in net.modules():  # layers hear21passt leaves at PyTorch defaults (conv, norms)
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        net.init_weights()
    return net


def materialize_(module: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Replace meta-device parameters by uninitialised ones on ``device`` (buffers untouched)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_meta:
                sub._parameters[name] = nn.Parameter(
                    torch.empty_like(param, device=device), requires_grad=param.requires_grad
                )
    return module


def hear21_mel(freqm: int = 48, timem: int = 192) -> nn.Module:
    """hear21passt's mel front-end with the settings of ``hear21passt.base.get_basic_model``."""
    from hear21passt.models.preprocess import AugmentMelSTFT

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AugmentMelSTFT(
            n_mels=N_MELS,
            sr=SAMPLE_RATE,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=freqm,
            timem=timem,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )


def hear21_mel_forward(mel: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """(B, samples) → (B, 128, frames) through ``AugmentMelSTFT``, in float32 outside autocast
    (hear21passt switches autocast off for CUDA's mel matmul only), deprecation warnings muted."""
    with warnings.catch_warnings(), float32_region(windows.device):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="stft with return_complex=False")
        return mel(windows.float())


def passt_features(net: nn.Module, spec: torch.Tensor) -> torch.Tensor:
    """(B, 128, frames) spectrogram → (B, 768) PaSST features (mean of cls and dist tokens)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input image size")
        _logits, features = net(spec.unsqueeze(1))
    return features


def read_state_dict(
    path: str | Path, *, trust_pickle: bool = False, containers: tuple[str, ...] = ("state_dict", "model")
) -> tuple[dict[str, torch.Tensor], str]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict.

    Loads with ``torch.load(weights_only=True)`` unless ``trust_pickle`` (only for files from a
    trusted source that need full unpickling). A dict holding the weights under one of
    ``containers`` (Lightning's ``state_dict``, DeiT-style ``model``) is unwrapped. Returns the
    dict and the container used ("" for a flat file).
    """
    try:
        obj = torch_load(path, weights_only=not trust_pickle)
    except CheckpointError as e:
        if not trust_pickle and ("weights_only" in str(e).lower() or "weights only" in str(e).lower()):
            raise CheckpointError(
                f"{e}\n  {path} needs full unpickling; only if you trust its source, pass the override "
                "trust_pickle=true (BackboneConfig.overrides)"
            ) from e
        raise
    container = ""
    if isinstance(obj, Mapping):
        for key in containers:
            if isinstance(obj.get(key), Mapping):
                obj, container = obj[key], key
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    return dict(obj), container


def checkpoint_provenance(path: str | Path | None, random_init: bool) -> dict[str, Any]:
    """Checkpoint path and sha256 (None for a random-init model)."""
    if path is None:
        return {"checkpoint": None, "checkpoint_sha256": None, "random_init": bool(random_init)}
    from cache.provenance import sha256_file

    path = Path(path)
    return {"checkpoint": str(path.resolve()), "checkpoint_sha256": sha256_file(path), "random_init": False}


def require_checkpoint(name: str, checkpoint: Path | None, random_init: bool, expected: str) -> None:
    if checkpoint is not None and random_init:
        raise ValueError(f"{name}: give either a checkpoint or random_init, not both")
    if checkpoint is None and not random_init:
        raise CheckpointError(
            f"{name} needs a local checkpoint file (--checkpoint {expected}); weights are never "
            "downloaded (see docs/backbones_passt_clap.md)"
        )


class PaSSTBackbone(Backbone):
    """PaSST windows → 768-d embeddings; see the module docstring for the variants."""

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        checkpoint: str | Path | None = None,
        *,
        random_init: bool = False,
        allow_missing: tuple[str, ...] = (),
        allow_unexpected: tuple[str, ...] = (),
        overrides: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise KeyError(f"unknown PaSST variant {variant!r}; available: {', '.join(VARIANTS)}")
        ov = check_overrides("passt", overrides or {}, PASST_OVERRIDES)
        v = VARIANTS[variant]
        checkpoint = Path(checkpoint).expanduser() if checkpoint is not None else None
        require_checkpoint("passt", checkpoint, random_init, v.checkpoint_file)
        self.variant = v
        self.mel_augment = bool(ov.get("mel_augment", False))
        self.net = build_passt_net(
            v.arch,
            v.stride,
            input_tdim=v.input_tdim,
            s_patchout_t=int(ov.get("s_patchout_t", 16)),
            s_patchout_f=int(ov.get("s_patchout_f", 2)),
            u_patchout=int(ov.get("u_patchout", 0)),
            depth=ov.get("depth"),
            init=checkpoint is None or bool(allow_missing),
        )
        self.mel = hear21_mel() if v.front_end == "hear21-mel" else None
        window_seconds = float(ov.get("window_seconds", 10.0))
        if not 0 < window_seconds <= 10.0:
            raise ValueError(f"passt: window_seconds must be in (0, 10], got {window_seconds}")
        self.spec = BackboneSpec(
            name="passt",
            variant=variant,
            sample_rate=SAMPLE_RATE,
            audio_dim=EMBED_DIM,
            window_seconds=window_seconds,
            padding="zero",
            front_end=FRONT_END_TEXT[v.front_end],
        )
        loaded: dict[str, Any] = {}
        if checkpoint is not None:
            sd, container = read_state_dict(checkpoint, trust_pickle=bool(ov.get("trust_pickle", False)))
            loaded = load_state_dict_strict(
                self.net,
                sd,
                source=f"PaSST checkpoint {checkpoint}",
                allow_missing=allow_missing,
                allow_unexpected=allow_unexpected,
            )
            loaded["container"] = container
        self._provenance = {
            **checkpoint_provenance(checkpoint, random_init),
            "arch": v.arch,
            "fstride": v.stride,
            "tstride": v.stride,
            "front_end": v.front_end,
            "embedding": EMBEDDING_TEXT,
            "s_patchout_t": self.net.s_patchout_t,
            "s_patchout_f": self.net.s_patchout_f,
            "overrides": ov,
            "allowed_missing": loaded.get("missing", []),
            "allowed_unexpected": loaded.get("unexpected", []),
        }
        self.eval()

    def train(self, mode: bool = True) -> PaSSTBackbone:
        super().train(mode)
        if self.mel is not None:  # mel augmentation (random fmin/fmax, masking) only when asked for
            self.mel.train(mode and self.mel_augment)
        return self

    def spectrogram(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, samples) at 32 kHz → (B, 128, frames) float32 input of the network, computed in
        float32 outside autocast (fp16 filterbank energies of loud high tones overflow)."""
        windows = windows.float()
        if self.mel is not None:
            return hear21_mel_forward(self.mel, windows)
        with float32_region(windows.device):
            feats = kaldi_fbank(windows, SAMPLE_RATE, N_MELS)  # (B, frames, 128)
        if lengths is not None:
            n_real = frames_for(lengths.to(torch.long).cpu(), SAMPLE_RATE).clamp(min=1).to(feats.device)
            keep = torch.arange(feats.shape[1], device=feats.device)[None, :] < n_real[:, None]
            feats = torch.where(
                keep[..., None], feats, torch.zeros((), dtype=feats.dtype, device=feats.device)
            )
        return feats.transpose(1, 2)

    def embed_windows(self, windows: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        param = next(self.net.parameters())
        windows = windows.to(device=param.device, dtype=torch.float32)
        return passt_features(self.net, self.spectrogram(windows, lengths))


@register_backbone("passt")
def build(config: BackboneConfig) -> PaSSTBackbone:
    return PaSSTBackbone(
        config.variant or DEFAULT_VARIANT,
        config.checkpoint,
        random_init=config.random_init,
        allow_missing=tuple(config.allow_missing),
        allow_unexpected=tuple(config.allow_unexpected),
        overrides=config.overrides,
    )


__all__ = [
    "PaSSTBackbone",
    "VARIANTS",
    "DEFAULT_VARIANT",
    "build_passt_net",
    "hear21_mel",
    "hear21_mel_forward",
    "passt_features",
    "read_state_dict",
    "materialize_",
]
