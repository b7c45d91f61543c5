"""Rank, world size, device and barrier of an extraction run (accelerate's PartialState under
``accelerate launch``, a single rank otherwise)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch


class Ranks:
    """Rank, world size, device and barrier: accelerate's PartialState under ``accelerate launch``."""

    def __init__(self, device: str = "auto"):
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            cpu = (
                os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
                or device == "cpu"
                or not torch.cuda.is_available()
            )
            self.state = PartialState(cpu=cpu)
        self.rank = self.state.process_index if self.state else 0
        self.world = self.state.num_processes if self.state else 1
        if device != "auto":
            self.device = torch.device(device)
        elif self.state is not None:
            self.device = self.state.device
        else:
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def logger(self) -> Callable[..., None]:
        """``log(*parts)``: prints to stderr on rank 0, does nothing on the other ranks."""
        if self.is_main:
            return lambda *a: print(*a, file=sys.stderr, flush=True)
        return lambda *a: None
