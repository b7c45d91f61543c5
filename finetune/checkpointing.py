"""Crash-safe training-state folders: ``save_state`` into ``tmp``, then rename; the previous one kept.

Layout under ``<output>/state/``: ``last`` (newest complete state), ``prev`` (the one before)
and, only while a save is running, ``tmp``. A state is complete when its ``complete.json``
(written after ``Accelerator.save_state`` returned on every rank) exists. A kill at any
moment leaves at least one complete state; :meth:`StateFolders.complete` lists them newest
first; :func:`resume_latest` loads the newest that every rank can read, falling back to the
next one when it cannot be loaded.
The output folder must be visible to every process (shared filesystem on several nodes).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

COMPLETE = "complete.json"


@dataclass
class TrainState:
    """Progress of a run, saved with every training state (registered for checkpointing)."""

    epoch: int = 0  # current epoch (0-based)
    next_batch: int = 0  # next global batch of the current epoch
    global_step: int = 0  # optimizer updates done
    loss_sum: float = 0.0  # sum of global-batch losses in the current epoch
    loss_updates: int = 0
    finished: bool = False
    early: dict[str, Any] = field(default_factory=dict)  # heads.early_stopping.EarlyStopping state
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics

    def state_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class StateFolders:
    """Save/restore Accelerate training states under one folder, atomically."""

    def __init__(self, root: str | Path, accelerator):
        self.root = Path(root)
        self.acc = accelerator

    def save(self, info: dict[str, Any]) -> Path:
        acc, tmp, last, prev = self.acc, self.root / "tmp", self.root / "last", self.root / "prev"
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        acc.wait_for_everyone()
        # torch serialisation, not safetensors: safetensors refuses buffers that view part of a
        # storage (e.g. torch's periodic Hann windows inside mel front-ends) when loading back
        acc.save_state(str(tmp), safe_serialization=False)
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / COMPLETE).write_text(json.dumps(info))
            if last.exists():
                if prev.exists():
                    shutil.rmtree(prev)
                last.rename(prev)
            tmp.rename(last)
        acc.wait_for_everyone()
        return last

    def complete(self) -> list[Path]:
        """The complete state folders, newest first (``last``, or ``tmp``/``prev`` after a kill mid-save)."""
        found = []
        for order, name in enumerate(("last", "tmp", "prev")):
            f = self.root / name / COMPLETE
            if f.is_file():
                try:
                    step = int(json.loads(f.read_text()).get("global_step", -1))
                except (ValueError, AttributeError, json.JSONDecodeError):
                    continue
                found.append((-step, order, f.parent))
        return [folder for _, _, folder in sorted(found)]

    def latest(self) -> Path | None:
        """The newest complete state folder, or None."""
        found = self.complete()
        return found[0] if found else None

    def exists(self) -> bool:
        return self.latest() is not None


def resume_latest(acc, folders: StateFolders, state: TrainState, log: Callable[[str], None]) -> None:
    """Load the newest training state that every rank can read; an unreadable one falls back to the one
    before."""
    candidates = folders.complete()
    if not candidates:
        log("--resume: no saved training state yet, starting from the beginning")
        return
    for k, folder in enumerate(candidates):
        error = ""
        try:
            acc.load_state(str(folder))
        except Exception as e:  # noqa: BLE001 - a truncated or corrupt file of any kind
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        failed = int(acc.reduce(torch.tensor(float(bool(error)), device=acc.device), reduction="sum"))
        if not failed:
            log(
                f"resumed from {folder} (epoch {state.epoch}, batch {state.next_batch}, "
                f"update {state.global_step})"
            )
            return
        if k + 1 < len(candidates):
            log(
                f"--resume: {folder} cannot be loaded ({error or 'on another process'}); "
                f"falling back to {candidates[k + 1]} (the unloadable one is kept as {_set_aside(folder)})"
            )
            if acc.is_main_process:  # else the next save would rotate it over the good state it falls back to
                aside = _set_aside(folder)
                if aside.exists():
                    shutil.rmtree(aside)
                folder.rename(aside)
            acc.wait_for_everyone()
    raise ConfigError(
        f"--resume: no training state under {folders.root} can be loaded (last error: "
        f"{error or 'on another process'}); remove that folder to start from the beginning"
    )


def _set_aside(folder: Path) -> Path:
    """Where an unloadable state folder is moved (out of :meth:`StateFolders.complete`'s sight)."""
    return folder.with_name(folder.name + ".unloadable")
