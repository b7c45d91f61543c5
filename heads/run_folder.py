"""Saved runs: weights + metrics JSON + resolved config + split + provenance in one folder.

A run folder holds ``head.pt`` (head config, state dict, feature standardizer, the inputs it
reads), ``metrics.json``, ``config.json``, ``split.json`` (when a split was used) and
``provenance.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cache.provenance import base_provenance
from cache.splits import Split

from .data import InputSpec, Standardizer
from .json_files import read_json, write_json
from .model import FusionHead
from .training import RunResult


def save_run(
    out_dir: str | Path,
    result: RunResult,
    *,
    inputs: InputSpec,
    groups: Sequence[str],
    standardizer: Standardizer | None = None,
    split: Split | None = None,
    metrics: dict | None = None,
    config: dict | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write one trained head and everything needed to trust and reuse it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "head_config": result.head_config,
        "state_dict": result.state_dict,
        "standardizer": None if standardizer is None else standardizer.state_dict(),
        "inputs": dataclasses.asdict(inputs),
        "groups": list(groups),
    }
    tmp = out / "head.pt.tmp"
    torch.save(payload, tmp)
    tmp.replace(out / "head.pt")
    m = {
        "best_epoch": result.best_epoch,
        "val": result.best_val,
        "history": result.history,
        "n_parameters": result.n_parameters,
        "n_parameters_counts": "trainable parameters of this head "
        "(prior embedding included; frozen feature extractors not counted)",
    }
    m.update(metrics or {})
    write_json(out / "metrics.json", m)
    write_json(
        out / "config.json",
        {
            "train": dataclasses.asdict(result.config),
            "inputs": dataclasses.asdict(inputs),
            "groups": list(groups),
            **(config or {}),
        },
    )
    if split is not None:
        split.save(out / "split.json")
    write_json(out / "provenance.json", base_provenance("heads", **(provenance or {})))
    return out


@dataclass
class LoadedRun:
    path: Path
    head: FusionHead
    standardizer: Standardizer | None
    inputs: InputSpec
    groups: list[str]
    metrics: dict


def run_parameters(path: str | Path) -> int:
    """Trainable parameters of a saved run's head, from its ``metrics.json``; the weights are read
    only for folders that lack that record."""
    path = Path(path)
    folder = path.parent if path.name == "head.pt" else path
    n = (read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else {}).get("n_parameters")
    return int(n) if n else load_run(folder).head.n_parameters()


def load_run(path: str | Path) -> LoadedRun:
    """A saved run folder (or its ``head.pt``) back as a head in evaluation mode."""
    path = Path(path)
    folder = path.parent if path.name == "head.pt" else path
    file = folder / "head.pt"
    if not file.exists():
        raise FileNotFoundError(f"no trained head at {file}")
    payload = torch.load(file, map_location="cpu", weights_only=True)
    head = FusionHead(**payload["head_config"])
    head.load_state_dict(payload["state_dict"])
    head.eval()
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else {}
    return LoadedRun(
        folder,
        head,
        Standardizer.from_state(payload.get("standardizer")),
        InputSpec(**payload["inputs"]),
        list(payload["groups"]),
        metrics,
    )
