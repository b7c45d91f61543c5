"""A fine-tune run's output folder: its writer lock and the files written there (docs/finetune.md, "Outputs").

:func:`hold_output_lock` refuses a second run into a folder while the first holds it;
``metrics.json``, ``result.json``, ``logits.npz`` and the ``logits/<run>`` tables of the cache
stores are written here. Everything except the lock is called on rank 0 only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cache.locks import LockedError, acquire, describe_holder
from cache.provenance import base_provenance
from cache.store import Store
from cache.tables import write_logits
from heads.early_stopping import EarlyStopping
from heads.json_files import write_json

from .config import ConfigError, FinetuneConfig
from .datasets import Datasets


@contextlib.contextmanager
def hold_output_lock(folder: Path):
    """Hold the writer lock of an output folder (``<folder>/.lock``, :mod:`cache.locks`) for the block.

    A folder another live run holds raises ConfigError naming that run (pid, host, command). The
    lock goes with the process (also on a kill), so a stale lock file never blocks. Rank 0 only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        lease = acquire(folder / ".lock", f"fine-tune output folder {folder}")
    except LockedError as e:
        raise ConfigError(
            f"{folder} is in use by another fine-tune run ({describe_holder(e.holder)}): wait for it "
            "to end, or choose another output.dir"
        ) from None
    try:
        yield
    finally:
        lease.release()


def write_metrics(
    folder: Path,
    run: str,
    history: list[dict[str, Any]],
    early: EarlyStopping,
    stop: bool,
    phase_log: list[dict[str, Any]],
) -> None:
    """metrics.json: the per-epoch history, the best epoch, and the time per phase of every epoch."""
    write_json(
        folder / "metrics.json",
        {
            "run": run,
            "history": history,
            "best_epoch": None if early.best_epoch is None else early.best_epoch + 1,
            "best_val_hF": early.best,
            "stopped_early": bool(stop),
            "phase_seconds": phase_log,
        },
    )


def previous_phase_log(folder: Path, epochs_done: int) -> list[dict[str, Any]]:
    """The per-epoch phase times of the epochs a resumed run already did (from its metrics.json)."""
    try:
        old = json.loads((folder / "metrics.json").read_text()).get("phase_seconds", [])
    except (OSError, ValueError):
        return []
    return [e for e in old if isinstance(e, dict) and e.get("epoch", 0) <= epochs_done]


def sum_phases(log: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per phase summed over the epochs of a phase log."""
    out: dict[str, float] = {}
    for entry in log:
        for k, v in entry.items():
            if k != "epoch":
                out[k] = round(out.get(k, 0.0) + float(v), 4)
    return out


def save_logits_npz(folder: Path, all_logits: dict[str, np.ndarray], data: Datasets) -> None:
    """logits.npz: ``<dataset>__ids`` and ``<dataset>__logits`` of every predicted dataset."""
    np.savez_compressed(
        folder / "logits.npz",
        **{f"{k}__ids": data.all_sets[k][0].ids.astype(str) for k in all_logits},
        **{f"{k}__logits": v for k, v in all_logits.items()},
    )


def write_logits_tables(
    cfg: FinetuneConfig,
    data: Datasets,
    backbone_provenance: Any,
    all_logits: dict[str, np.ndarray],
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """``logits/<run>`` in every dataset's cache store, with the run's provenance."""
    for name, logits in all_logits.items():
        clips, path = data.all_sets[name]
        prov = base_provenance(
            "finetune",
            run=cfg.run_name,
            stage=cfg.train.stage,
            backbone=cfg.backbone.name,
            variant=cfg.backbone.variant,
            backbone_provenance=backbone_provenance,
            seed=cfg.train.seed,
            lr=cfg.train.lr,
            lam=cfg.train.lam,
            split={"preset": data.split.preset, "fold": data.split.fold},
            dataset=name,
            best_epoch=result["best_epoch"],
            val=result["val"],
            test=result["test"],
            weights_sha256=result["weights_sha256"],
            config=cfg.as_dict(),
            decode_failures=sorted(result["decode_failures"].get(name, {})),
        )
        table = write_logits(Store(path, mode="a"), cfg.run_name, clips.ids, logits, attrs=prov)
        log(f"wrote {table} for {len(clips)} clips of {name} into {path}")
