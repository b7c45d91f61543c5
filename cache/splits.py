"""Deterministic development splits of a labelled set (docs/task.md §3).

A split = stratified K-fold test split (``StratifiedKFold(shuffle=True)``) and, inside the
chosen fold's remainder, a stratified validation split (``StratifiedShuffleSplit``).
Two named presets: ``baseline`` (official baseline, both seeds 1821) and ``cpjku``
(566182 / 566193). Splits are saved as JSON next to every result and reloaded from there
so all tools agree on the same fold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .provenance import sha256_json
from .taxonomy import CLASSES

PRESETS: dict[str, tuple[int, int]] = {
    "baseline": (1821, 1821),
    "cpjku": (566182, 566193),
}


@dataclass
class Split:
    preset: str
    fold_seed: int
    val_seed: int
    fold: int
    n_folds: int
    val_size: float
    dataset: str
    ids_sha256: str  # digest of the ids the split was made from (in order)
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def part(self, name: str) -> list[str]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split part must be train, val or test, not {name!r}")
        return getattr(self, name)

    def evaluation_ids(self) -> set[str]:
        """Ids that must never be trained on (validation + test)."""
        return set(self.val) | set(self.test)

    def describe(self) -> str:
        return (
            f"{self.dataset} split '{self.preset}' fold {self.fold}/{self.n_folds} "
            f"(seeds {self.fold_seed}/{self.val_seed}): train {len(self.train)}, val {len(self.val)}, "
            f"test {len(self.test)}"
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        data = json.loads(Path(path).read_text())
        return cls(**data)


def resolve_seeds(preset: str, seed: int | None = None) -> tuple[int, int]:
    """Seeds of a named preset, or (seed, seed) for ``preset='custom'``."""
    if preset == "custom":
        if seed is None:
            raise ValueError("preset 'custom' needs a seed")
        return seed, seed
    if preset not in PRESETS:
        raise ValueError(f"unknown split preset {preset!r}; choose one of {', '.join(PRESETS)} or 'custom'")
    return PRESETS[preset]


def make_split(
    ids: Sequence[str],
    labels: Sequence[int],
    *,
    preset: str = "cpjku",
    fold: int = 0,
    seed: int | None = None,
    n_folds: int = 5,
    val_size: float = 0.2,
    dataset: str = "",
) -> Split:
    """Split target rows (labels >= 0) into train/val/test for one fold."""
    ids = np.asarray([str(i) for i in ids], dtype=object)
    labels = np.asarray(labels, dtype=np.int64)
    if len(ids) != len(labels):
        raise ValueError("ids and labels differ in length")
    if (labels < 0).any():
        raise ValueError("make_split takes target rows only (drop non-target rows first: Manifest.targets())")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    fold_seed, val_seed = resolve_seeds(preset, seed)
    # imported here: reading a split needs no sklearn
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=fold_seed)
    train_full, test = list(skf.split(np.zeros(len(labels)), labels))[fold]
    sss = StratifiedShuffleSplit(n_splits=1, test_size=val_size, random_state=val_seed)
    try:
        tr, va = next(sss.split(np.zeros(len(train_full)), labels[train_full]))
    except ValueError as e:
        counts = np.bincount(labels, minlength=len(CLASSES))
        few = [f"{CLASSES[c]} ({counts[c]})" for c in np.flatnonzero((counts > 0) & (counts < n_folds))]
        raise ValueError(
            f"cannot make a stratified split of {dataset or 'the dataset'}: {e}"
            + (f"; classes with fewer than {n_folds} clips: {', '.join(few)}" if few else "")
        ) from None
    return Split(
        preset=preset,
        fold_seed=fold_seed,
        val_seed=val_seed,
        fold=fold,
        n_folds=n_folds,
        val_size=val_size,
        dataset=dataset,
        ids_sha256=sha256_json(ids.tolist()),
        train=ids[train_full[tr]].tolist(),
        val=ids[train_full[va]].tolist(),
        test=ids[test].tolist(),
    )


def split_manifest(manifest, *, preset: str = "cpjku", fold: int = 0, seed: int | None = None, **kw) -> Split:
    """Split a labelled manifest's target rows (see :func:`make_split`)."""
    t = manifest.targets()
    return make_split(t.ids, t.labels, preset=preset, fold=fold, seed=seed, dataset=manifest.name, **kw)
