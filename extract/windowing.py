"""Windowing and pooling shared by the extraction runner and the fine-tune tier.

Every backbone sees non-overlapping windows of ``spec.window_samples`` samples at its rate;
the last window of a clip is padded ("zero": zeros; "repeat": the window's own audio tiled
as laion-clap's ``data_filling="repeatpad"`` does, then zeros). A clip's embedding is the
mean of its window embeddings over windows that hold real audio (length > 0).

Backbones whose window embedding depends only on the first ``lengths[i]`` samples of a
zero-padded window (exact frame masking, e.g. ``logmel``) may set the class attribute
``trims_padding = True`` (and ``min_window_samples``): batches of windows are then cut to
their longest real length before the forward pass, which is much cheaper for short clips
and gives the same embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PADDINGS = ("zero", "repeat")


def n_windows(n_samples: int, window_samples: int) -> int:
    """W = max(1, ceil(T / window_samples))."""
    return max(1, -(-int(n_samples) // int(window_samples)))


def split_windows(
    wave: torch.Tensor, window_samples: int, padding: str = "zero"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a (T,) waveform into (W, window_samples) non-overlapping windows and (W,) real lengths.

    The last window is zero-padded (``padding="zero"``) or repeat-padded (``"repeat"``: its
    real samples tiled ``window_samples // length`` times, the rest zeros, like laion-clap's
    ``repeatpad``). ``lengths[i]`` counts the real (non-tiled, non-zero-padded) samples.
    An empty wave gives one all-zero window of length 0.
    """
    if wave.dim() != 1:
        raise ValueError(f"split_windows expects a (T,) waveform, got shape {tuple(wave.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
    T, ws = int(wave.shape[0]), int(window_samples)
    W = n_windows(T, ws)
    out = wave.new_zeros(W * ws)
    out[:T] = wave
    windows = out.view(W, ws)
    lengths = torch.clamp(T - torch.arange(W, dtype=torch.long) * ws, min=0, max=ws)
    last = int(lengths[-1])
    if padding == "repeat" and 0 < last < ws:
        reps = ws // last
        tail = wave[(W - 1) * ws :]
        windows = windows.clone()
        windows[-1, : reps * last] = tail.repeat(reps)
    return windows, lengths


def pool_windows(
    window_emb: torch.Tensor, clip_of_window: torch.Tensor, lengths: torch.Tensor, n_clips: int
) -> torch.Tensor:
    """Mean of each clip's window embeddings over windows with length > 0: (Wtot, D) -> (n_clips, D).

    A clip without any real window gets zeros (callers treat it as a failed clip).
    """
    clip_of_window = clip_of_window.to(window_emb.device, torch.long)
    weight = (lengths.to(window_emb.device) > 0).to(window_emb.dtype)
    sums = window_emb.new_zeros(n_clips, window_emb.shape[1])
    sums = sums.index_add(0, clip_of_window, window_emb * weight[:, None])
    counts = window_emb.new_zeros(n_clips).index_add(0, clip_of_window, weight)
    return sums / counts.clamp(min=1)[:, None]


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter or buffer (CPU for modules without any)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def forward_windows(backbone, windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """One forward pass ``backbone.embed_windows`` on a batch, cut to the longest real length
    when the backbone allows it (``trims_padding``) and the padding is zero."""
    if getattr(backbone, "trims_padding", False) and backbone.spec.padding == "zero" and len(lengths):
        keep = max(int(lengths.max()), int(getattr(backbone, "min_window_samples", 1)))
        if keep < windows.shape[1]:
            windows = windows[:, :keep]
    device = module_device(backbone)
    return backbone.embed_windows(windows.to(device, non_blocking=True), lengths.to(device))


def embed_clips(backbone, waves: Sequence[torch.Tensor], max_windows_per_batch: int = 32) -> torch.Tensor:
    """Embed clips (list of (T_i,) waves at the backbone's rate) -> (n_clips, audio_dim).

    Splits every clip with the backbone's window and padding policy, runs ``embed_windows`` on
    at most ``max_windows_per_batch`` windows at a time and pools per clip with the backbone's
    ``pool_windows``. Differentiable: no inference mode here (the runner wraps it; fine-tuning
    trains through it). Windows are batched in order of real length so trimming backbones waste
    little; the result does not depend on the order or on which clips share a batch.
    """
    spec = backbone.spec
    parts = [split_windows(w, spec.window_samples, spec.padding) for w in waves]
    if not parts:
        return torch.zeros(0, spec.audio_dim or 0)
    windows = torch.cat([p[0] for p in parts])
    lengths = torch.cat([p[1] for p in parts])
    clip_of_window = torch.cat([torch.full((len(p[1]),), i, dtype=torch.long) for i, p in enumerate(parts)])
    order = torch.argsort(lengths, descending=True, stable=True)
    outs = []
    for s in range(0, len(order), max(1, int(max_windows_per_batch))):
        idx = order[s : s + max_windows_per_batch]
        outs.append(forward_windows(backbone, windows[idx], lengths[idx]))
    emb = torch.cat(outs)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    emb = emb[inverse.to(emb.device)]
    return backbone.pool_windows(emb, clip_of_window, lengths, len(parts))
