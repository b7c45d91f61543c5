"""Tiny randomly initialised backbones and the mixed-precision probe, shared by the tests and the GPU checks.

``CASES`` names each audio backbone's tiny configuration (same architecture, few layers);
``write_tiny_tokenizer`` writes a 300-token byte-level BPE in the RoBERTa file format (no RoBERTa
vocabulary exists offline); ``autocast_errors`` embeds a full-scale tone and near-silence under
fp16 and bf16 autocast and reports the relative error to float32 (docs/parity.md, "Front-ends and
mixed precision").
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from extract.backbones import BackboneConfig, build_backbone

TINY_ROBERTA_VOCAB = 300
TINY_TEXT = dict(
    vocab_size=TINY_ROBERTA_VOCAB,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
)
LAION_TEXT = {"vocab_size": TINY_ROBERTA_VOCAB, "num_hidden_layers": 1, "intermediate_size": 64}
#: case: (backbone, variant, architecture overrides, needs a tokenizer)
CASES = {
    "passt-cpjku": ("passt", "cpjku", {"depth": 1, "window_seconds": 1.0}, False),
    "passt-hear21": ("passt", "hear21", {"depth": 1, "window_seconds": 1.0}, False),
    "cpclap": (
        "cpclap",
        None,
        {"depth": 1, "window_seconds": 1.0, "text_config": TINY_TEXT, "expected_vocab": TINY_ROBERTA_VOCAB},
        True,
    ),
    "beats": (
        "beats",
        None,
        dict(
            encoder_embed_dim=24,
            encoder_ffn_embed_dim=32,
            encoder_attention_heads=3,
            encoder_layers=2,
            conv_pos=16,
            conv_pos_groups=4,
            num_buckets=32,
            max_distance=64,
        ),
        False,
    ),
    "m2d": ("m2d", None, {"embed_dim": 32, "depth": 2, "num_heads": 2}, False),
    "logmel": ("logmel", None, {}, False),
    "tiny": ("tiny", None, {}, False),
    "laion-clap": (
        "laion-clap",
        None,
        {"text_config": LAION_TEXT, "expected_vocab": TINY_ROBERTA_VOCAB},
        True,
    ),
}
#: the largest relative error to float32 allowed under autocast, from measurement on these tiny models
#: (worst seen: 1.2e-3 in fp16 and 9.4e-3 in bf16, laion-clap on near-silence; bounds about twice that)
TOLERANCE = {torch.float16: 3e-3, torch.bfloat16: 2e-2}
SENTENCES = [
    "a dog barks loudly in the park",
    "rain falls on a tin roof",
    "the engine of a car idles",
    "birds sing at dawn near the river",
    "footsteps on gravel and a door slams",
]


def write_tiny_tokenizer(folder: Path) -> Path:
    """A 300-token byte-level BPE (vocab.json + merges.txt) in ``folder``, loadable by RoBERTa tokenizers."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        SENTENCES,
        vocab_size=TINY_ROBERTA_VOCAB,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    return folder


def build_case(case: str, tokenizer: Path | None = None):
    """The tiny, randomly initialised backbone of ``case`` (seeded), in eval mode."""
    name, variant, overrides, needs_tokenizer = CASES[case]
    torch.manual_seed(0)
    config = BackboneConfig(
        name,
        variant=variant,
        random_init=True,
        overrides=overrides,
        tokenizer=tokenizer if needs_tokenizer else None,
    )
    return build_backbone(config).eval()


def probe_signals(sample_rate: int, n: int) -> dict[str, torch.Tensor]:
    """A full-scale tone at a quarter of the sample rate (its filterbank energies exceed float16's range)
    and near-silence (white noise at 1e-5, below float16's smallest normal value), ``n`` samples each."""
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    g = torch.Generator().manual_seed(0)
    return {
        "full-scale tone": torch.sin(2 * math.pi * (sample_rate / 4 + 3.0) * t).float(),
        "near-silence": 1e-5 * torch.randn(n, generator=g),
    }


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a.float() - ref) / torch.linalg.vector_norm(ref).clamp(min=1e-12))


def autocast_errors(backbone, device: torch.device) -> list[tuple[str, torch.dtype, bool, bool, float]]:
    """``(signal, dtype, float32 finite, autocast finite, relative error)`` for both probe signals
    (two windows: one full, one half padding) under fp16 and bf16 autocast on ``device``."""
    ws = backbone.spec.window_samples
    rows = []
    for label, wave in probe_signals(backbone.spec.sample_rate, ws).items():
        windows = torch.stack([wave, wave * 0.5])
        windows[1, ws // 2 :] = 0.0
        windows, lengths = windows.to(device), torch.tensor([ws, ws // 2], device=device)
        with torch.inference_mode():
            ref = backbone.embed_windows(windows, lengths).float()
            ref_ok = ref.dtype == torch.float32 and bool(torch.isfinite(ref).all())
            for dtype in TOLERANCE:
                with torch.autocast(device.type, dtype=dtype):
                    out = backbone.embed_windows(windows, lengths).float()
                finite = bool(torch.isfinite(out).all())
                rows.append(
                    (label, dtype, ref_ok, finite, relative_error(out, ref) if finite else float("nan"))
                )
    return rows
