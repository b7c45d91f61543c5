"""WindowBatcher: windows of many clips batched into forward passes; each clip pooled once all its windows
ran."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.window_batches import WindowBatcher
from extract.windowing import pool_windows, split_windows

WS = 8  # samples per window
LENGTHS = [3, 8, 20, 1, 16, 9, 5, 30, 2]  # clips of 1 to 4 windows, full and partial last windows


def _waves() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(n, generator=g) - 0.5 for n in LENGTHS]


def _embed(windows: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A window 'embedding' that depends only on its real samples: (sum, sum of squares, length)."""
    real = windows * (torch.arange(windows.shape[1])[None, :] < lengths[:, None])
    return torch.stack([real.sum(1), (real**2).sum(1), lengths.float()], 1)


def _expected(wave: torch.Tensor, padding: str) -> np.ndarray:
    windows, lengths = split_windows(wave, WS, padding)
    return pool_windows(_embed(windows, lengths), torch.zeros(len(lengths), dtype=torch.long), lengths, 1)[
        0
    ].numpy()


@pytest.mark.parametrize("trims", [False, True])
@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_every_clip_pooled_once_over_its_real_windows(trims, batch_size):
    widths: list[int] = []

    def forward(windows, lengths):
        widths.append(windows.shape[1])
        if trims:  # a trimmed batch is cut to its longest real length
            assert windows.shape[1] == max(int(lengths.max()), 1)
        return _embed(windows, lengths)

    batcher = WindowBatcher(forward, WS, "zero", batch_size, trims_padding=trims)
    got: dict[int, np.ndarray] = {}
    for row, wave in enumerate(_waves()):
        n, done = batcher.add(row, wave)
        assert n == -(-len(wave) // WS)
        got.update(done)
    done = batcher.finish()
    assert len(done) + len(got) == len(LENGTHS) and not batcher.open_rows
    got.update(done)
    for row, wave in enumerate(_waves()):
        np.testing.assert_allclose(got[row], _expected(wave, "zero"), rtol=1e-6, atol=1e-6)
    assert trims or set(widths) == {WS}


def test_repeat_padding_is_not_trimmed():
    """Only zero padding may be trimmed: repeat-padded windows keep their full width."""
    batcher = WindowBatcher(
        lambda w, n: _embed(w, torch.full_like(n, WS)), WS, "repeat", 4, trims_padding=True
    )
    got = dict(batcher.add(0, _waves()[0])[1] + batcher.finish())
    windows, _ = split_windows(_waves()[0], WS, "repeat")
    np.testing.assert_allclose(got[0], _embed(windows, torch.tensor([WS]))[0].numpy(), rtol=1e-6)
