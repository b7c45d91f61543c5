"""Batching the windows of many clips into forward passes, and pooling each clip once all its windows ran.

Clips are added one at a time (:meth:`WindowBatcher.add`); their windows (``extract.windowing``)
wait in a queue and run ``batch_size`` at a time. Backbones that trim padding (``trims_padding``
with zero padding, e.g. ``logmel``) get full windows and partial (last) windows in separate
queues: partial windows are pooled up to ``8 × batch_size`` and run in order of length, each batch
cut to its longest real length. A clip's embedding is the mean over its windows with real samples
(:func:`extract.windowing.pool_windows`), so it does not depend on which clips share its batches.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .windowing import n_windows, pool_windows, split_windows

#: a queued window: (row, window index, samples, real length)
Window = tuple[int, int, torch.Tensor, int]


class WindowBatcher:
    """Queues of windows waiting for a forward pass; returns ``(row, pooled embedding)`` of finished clips.

    ``forward(windows (B, S), lengths (B,)) -> (B, D)`` float32 CPU embeddings (the caller applies
    inference mode, autocast and the device). ``pool(window_emb, clip_of_window, lengths, n_clips)``
    turns a clip's window embeddings into its embedding (default: the mean over windows that hold
    real samples; a backbone passes its own ``pool_windows``).
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        window_samples: int,
        padding: str,
        batch_size: int,
        trims_padding: bool = False,
        min_window_samples: int = 1,
        pool: Callable[..., torch.Tensor] = pool_windows,
    ):
        self.forward = forward
        self.pool = pool
        self.window_samples, self.padding, self.batch_size = int(window_samples), padding, int(batch_size)
        self.trims = bool(trims_padding) and padding == "zero"
        self.min_keep = int(min_window_samples)
        self.pool_size = self.batch_size * 8
        self.full: list[Window] = []
        self.partial: list[Window] = []
        self.row_embs: dict[int, list] = {}
        self.row_lengths: dict[int, torch.Tensor] = {}

    def add(self, row: int, wave: torch.Tensor) -> tuple[int, list[tuple[int, np.ndarray]]]:
        """Queue the windows of clip ``row``; ``(its number of windows, clips finished by the batches run
        now)``."""
        ws = self.window_samples
        if self.trims:  # no padded copy: full windows are views of the wave, partial ones short copies
            W = n_windows(len(wave), ws)
            lengths = torch.clamp(len(wave) - torch.arange(W, dtype=torch.long) * ws, min=0, max=ws)
        else:
            windows, lengths = split_windows(wave, ws, self.padding)
            W = len(windows)
        self.row_embs[row] = [None] * W
        self.row_lengths[row] = lengths
        for j in range(W):
            n = int(lengths[j])
            if not self.trims:
                self.full.append((row, j, windows[j], n))
            elif n == ws:
                self.full.append((row, j, wave[j * ws : (j + 1) * ws], n))
            else:
                self.partial.append((row, j, wave[j * ws : j * ws + n].clone(), n))
        done: list[tuple[int, np.ndarray]] = []
        if len(self.full) >= self.batch_size:
            done += self._flush(self.full)
        if len(self.partial) >= self.pool_size:
            done += self._flush(self.partial, everything=True)
        return W, done

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Run every queued window; the clips this finishes."""
        return self._flush(self.full, everything=True) + self._flush(self.partial, everything=True)

    @property
    def open_rows(self) -> list[int]:
        """Clips with windows still waiting."""
        return sorted(self.row_embs)

    def _flush(self, queue: list[Window], everything: bool = False) -> list[tuple[int, np.ndarray]]:
        done: list[tuple[int, np.ndarray]] = []
        if queue is self.partial:
            queue.sort(key=lambda b: -b[3])
        bs = self.batch_size
        while queue and (everything or len(queue) >= bs):
            done += self._run_batch(queue[:bs])
            del queue[:bs]
        if everything:
            queue.clear()
        return done

    def _run_batch(self, batch: list[Window]) -> list[tuple[int, np.ndarray]]:
        sizes = [b[2].shape[0] for b in batch]
        width = max(max(sizes), min(self.min_keep, self.window_samples))
        if all(n == width for n in sizes):
            windows = torch.stack([b[2] for b in batch])
        else:  # zero-pad the short (trimmed) windows to the batch's longest
            windows = torch.zeros(len(batch), width)
            for i, b in enumerate(batch):
                windows[i, : sizes[i]] = b[2]
        lengths = torch.tensor([b[3] for b in batch], dtype=torch.long)
        emb = self.forward(windows, lengths)
        for (row, j, _, _), e in zip(batch, emb, strict=True):
            self.row_embs[row][j] = e
        done = []
        for row in dict.fromkeys(b[0] for b in batch):
            if row in self.row_embs and all(e is not None for e in self.row_embs[row]):
                done.append((row, self._pool(row)))
        return done

    def _pool(self, row: int) -> np.ndarray:
        embs = torch.stack(self.row_embs.pop(row))
        lengths = self.row_lengths.pop(row)
        return self.pool(embs, torch.zeros(len(embs), dtype=torch.long), lengths, 1)[0].numpy()
