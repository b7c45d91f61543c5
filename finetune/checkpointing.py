"""Crash-safe training-state folders, written in the background.

Layout under ``<output>/state/``: ``last`` (newest complete state), ``prev`` (the one before)
and, only while a save is being written, ``tmp``. A state folder holds ``state.pt`` (model,
optimizer, schedule, GradScaler, progress and the RNG states of every process) and
``complete.json``, written after ``state.pt``; a state is complete when ``complete.json``
exists. A kill at any moment leaves at least one complete state; :meth:`StateFolders.complete`
lists them newest first; :func:`resume_latest` loads the newest that every rank can read,
falling back to the next one when it cannot be loaded.

Saving copies the state into host memory on the training thread (every rank's RNG states are
gathered to the first process) and writes it from a background thread of the first process,
so training goes on while a gigabyte of model and optimizer state reaches the disk; the next
save, and the end of the run, wait for the write. Folders written by ``Accelerator.save_state``
(before ``state.pt`` existed) are still loaded.
The output folder must be visible to every process (shared filesystem on several nodes).
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError

COMPLETE = "complete.json"
STATE_FILE = "state.pt"
STATE_FORMAT = 1


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


class HostCopies:
    """Copies of state dicts in host memory, into buffers kept from one save to the next.

    After the first save no memory is allocated, page-faulted or pinned again; tensors on a GPU
    are copied into pinned buffers asynchronously, and :meth:`ready` waits for those copies (the
    writer thread calls it, so the training thread never waits for them). A buffer is reused
    only after the write that read it has finished (:meth:`StateFolders.save` waits for it).
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._event: Any = None

    def copy(self, value: Any, key: tuple = ()) -> Any:
        """``value`` with every tensor copied to host memory (containers rebuilt, other values
        deep-copied); ``key`` names the place of ``value`` in the snapshot."""
        if isinstance(value, torch.Tensor):
            src = value.detach()
            buf = self._buffers.get(key)
            if buf is None or buf.shape != src.shape or buf.dtype != src.dtype:
                buf = torch.empty(src.shape, dtype=src.dtype, pin_memory=src.is_cuda)
                self._buffers[key] = buf
            buf.copy_(src, non_blocking=src.is_cuda)
            if src.is_cuda and self._event is None:
                self._event = torch.cuda.Event()  # recorded once the whole snapshot is queued
            return buf
        if isinstance(value, dict):
            return {k: self.copy(v, (*key, k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.copy(v, (*key, i)) for i, v in enumerate(value))
        return copy.deepcopy(value)

    def queued(self) -> None:
        """Mark the end of a snapshot's copies (call on the thread that queued them)."""
        if self._event is not None:
            self._event.record()

    def ready(self) -> None:
        """Wait until the copies from a GPU have arrived."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class StateFolders:
    """Save/restore training states under one folder, atomically; writes run in the background."""

    def __init__(self, root: str | Path, accelerator, background: bool = True):
        self.root = Path(root)
        self.acc = accelerator
        self.background = background
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self._host = HostCopies()

    def save(self, info: dict[str, Any], model, optimizer, objects: list) -> None:
        """Snapshot model, optimizer, GradScaler, ``objects`` (``state_dict()``/``load_state_dict()``)
        and every rank's RNG states; the first process writes them to ``tmp``, marks it complete and
        renames it to ``last`` (in a background thread unless ``background`` is off). Collective:
        every rank calls it."""
        from accelerate.utils import gather_object

        acc = self.acc
        self.wait()  # the previous state is complete before this one is written
        rngs = gather_object([_rng_state()])
        if not acc.is_main_process:
            return
        host = self._host.copy
        snapshot = {
            "format": STATE_FORMAT,
            "model": host(acc.get_state_dict(model, unwrap=True), ("model",)),
            "optimizer": host(optimizer.state_dict(), ("optimizer",)),
            "scaler": host(acc.scaler.state_dict(), ("scaler",)) if acc.scaler is not None else None,
            "objects": host([o.state_dict() for o in objects], ("objects",)),
            "rng": rngs,
        }
        self._host.queued()
        if not self.background:
            self._write(snapshot, info)
            return
        self._writer = threading.Thread(target=self._write_caught, args=(snapshot, info), name="state-writer")
        self._writer.start()

    def wait(self) -> None:
        """Wait for the state being written (if any); re-raise the error that stopped its write."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_caught(self, snapshot: dict[str, Any], info: dict[str, Any]) -> None:
        try:
            self._write(snapshot, info)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = e

    def _write(self, snapshot: dict[str, Any], info: dict[str, Any]) -> None:
        tmp, last, prev = self.root / "tmp", self.root / "last", self.root / "prev"
        self.root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        self._host.ready()
        torch.save(snapshot, tmp / STATE_FILE)
        (tmp / COMPLETE).write_text(json.dumps(info))
        if last.exists():
            if prev.exists():
                shutil.rmtree(prev)
            last.rename(prev)
        tmp.rename(last)

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


def load_state(acc, folder: Path, model, optimizer, objects: list) -> None:
    """Restore what :meth:`StateFolders.save` wrote into ``folder`` (or an ``Accelerator.save_state``
    folder of an older version, with ``objects`` registered for checkpointing)."""
    file = folder / STATE_FILE
    if not file.is_file() and (folder / "pytorch_model.bin").is_file():
        acc.load_state(str(folder))
        return
    # our own file: it holds the RNG states (numpy arrays, Python tuples), which weights_only refuses
    snap = torch.load(file, map_location="cpu", weights_only=False)
    if snap.get("format") != STATE_FORMAT:
        raise ValueError(f"{file}: state format {snap.get('format')!r}, this version reads {STATE_FORMAT}")
    acc.unwrap_model(model).load_state_dict(snap["model"])
    optimizer.load_state_dict(snap["optimizer"])
    if acc.scaler is not None and snap["scaler"] is not None:
        acc.scaler.load_state_dict(snap["scaler"])
    if len(snap["objects"]) != len(objects):
        raise ValueError(f"{file}: {len(snap['objects'])} saved objects, expected {len(objects)}")
    for obj, sd in zip(objects, snap["objects"], strict=True):
        obj.load_state_dict(sd)
    if acc.process_index < len(snap["rng"]):  # another number of processes: each keeps its seeded RNG
        _set_rng_state(snap["rng"][acc.process_index])


def resume_latest(
    acc, folders: StateFolders, state: TrainState, log: Callable[[str], None], model, optimizer, objects: list
) -> None:
    """Load the newest training state that every rank can read into ``model``, ``optimizer`` and
    ``objects`` (``state`` among them); an unreadable one falls back to the one before."""
    candidates = folders.complete()
    if not candidates:
        log("--resume: no saved training state yet, starting from the beginning")
        return
    for k, folder in enumerate(candidates):
        error = ""
        try:
            load_state(acc, folder, model, optimizer, objects)
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
