"""Decoding clips ahead of the model: in the main process, in a thread pool, or in DataLoader worker
processes. Items come back in the order of the rows given, as ``(row, value, error)``: a clip that
cannot be read gives ``value = None`` and the reason (naming the file), never an exception."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import AudioDecodeError, load_audio_checked
from .backbones.base import Backbone


class ClipSource(torch.utils.data.Dataset):
    """Map-style dataset of (row, clip, error) in processing order; decoding happens in workers."""

    def __init__(self, rows: Sequence[int], load: Callable[[int], Any]):
        self.rows = list(rows)
        self.load = load

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, Any, str]:
        row = self.rows[i]
        try:
            return row, self.load(row), ""
        except (AudioDecodeError, ValueError, OSError, RuntimeError) as e:
            return row, None, str(e) if isinstance(e, AudioDecodeError) else f"{type(e).__name__}: {e}"


class AudioLoader:
    """Row -> ((T,) float32 mono waveform at ``sample_rate``, warning or "") (picklable for worker
    processes)."""

    def __init__(self, paths: Sequence[Path], sample_rate: int):
        self.paths, self.sample_rate = list(paths), int(sample_rate)

    def __call__(self, row: int) -> tuple[torch.Tensor, str]:
        return load_audio_checked(self.paths[row], self.sample_rate)


class PrecomputedLoader:
    """Row -> the precomputed vectors of a clip (``shipped``: ``{"audio": …, "text": …}``)."""

    def __init__(self, backbone: Backbone, root: Path, ids: Sequence[str]):
        self.backbone, self.root, self.ids = backbone, root, list(ids)

    def __call__(self, row: int) -> dict[str, np.ndarray]:
        return self.backbone.read_clip(self.root, self.ids[row])


def _identity(x):
    return x


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _iterate_threads(
    source: ClipSource, num_workers: int, prefetch: int = 4
) -> Iterator[tuple[int, Any, str]]:
    """Items in order, loaded by a pool of threads (soundfile and torch release the GIL).

    Each decode thread runs torch single-threaded, as DataLoader workers do (torch's thread count is
    per OS thread): otherwise every decode thread opens its own team of intra-op threads next to the
    model's, and on a small CPU the teams stall each other (measured: resampling a 10 s clip took
    25 ms instead of 1 ms on 2 cores).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(
        num_workers, thread_name_prefix="decode", initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        todo = iter(range(len(source)))
        queue = deque(
            pool.submit(source.__getitem__, i)
            for _, i in zip(range(num_workers * prefetch), todo, strict=False)
        )
        while queue:
            item = queue.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                queue.append(pool.submit(source.__getitem__, nxt))
            yield item


def resolve_loader(loader: str) -> str:
    """The decode loader actually used: ``auto`` means threads.

    Measured (benchmarks/extract_bench.py): DataLoader worker processes were slower than threads on
    a 2-core CPU and slower than decoding in the main process on a 16-core H200 host (moving every
    waveform between processes costs more than it saves); soundfile and torch release the GIL, so
    threads overlap decoding with the model. ``--loader processes`` keeps worker processes.
    """
    if loader != "auto":
        return loader
    return "threads"


def iterate_clips(
    source: ClipSource, num_workers: int, loader: str = "threads"
) -> Iterator[tuple[int, Any, str]]:
    """Items of ``source`` in order: in this process (``num_workers`` 0), in threads, or in DataLoader
    worker processes (``loader`` as resolved by :func:`resolve_loader`)."""
    if num_workers == 0:
        return (source[i] for i in range(len(source)))
    if loader == "threads":
        return _iterate_threads(source, num_workers)
    return iter(
        torch.utils.data.DataLoader(
            source,
            batch_size=None,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_identity,
            worker_init_fn=_worker_init,
            prefetch_factor=4,
        )
    )
