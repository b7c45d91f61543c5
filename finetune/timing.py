"""Wall-clock time per phase of a run (train steps, data wait, evaluation, state saving, ...).

:class:`PhaseTimer` adds up ``time.perf_counter`` intervals under phase names; the trainer
records one breakdown per epoch in ``metrics.json`` and the whole run's in ``result.json``,
so a benchmark can say where the time of ``finetune/run.py`` goes. GPU work is asynchronous:
without synchronisation a phase's time is the host's, and queued GPU work shows up in the
next phase that waits for it. ``FINETUNE_SYNC_TIMING=1`` synchronises the device at every
phase boundary (exact attribution, slightly slower runs; for benchmarks only).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Iterator

import torch

SYNC_ENV = "FINETUNE_SYNC_TIMING"


class PhaseTimer:
    """Accumulates seconds per phase name; ``with timer.phase("eval"): ...``."""

    def __init__(self, device: torch.device | str | None = None, sync: bool | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        if sync is None:
            sync = os.environ.get(SYNC_ENV, "") not in ("", "0")
        self._sync = bool(sync) and torch.device(device or "cpu").type == "cuda" and torch.cuda.is_available()

    def sync(self) -> None:
        if self._sync:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] += time.perf_counter() - t0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def take(self) -> dict[str, float]:
        """The accumulated seconds per phase (rounded to 0.1 ms), and reset."""
        out = {k: round(v, 4) for k, v in self.seconds.items()}
        self.seconds = defaultdict(float)
        return out
