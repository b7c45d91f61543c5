"""The data of one fine-tuning stage: manifests, the split, and the clip sets read from the cache stores.

:func:`load_datasets` joins priors, text and pseudo-labels by clip id (``finetune.data.clip_set``)
and returns the training/validation/test clip sets, every dataset's clips with its store path (for
the logits tables), and the facts that ``config.json`` records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache.manifest import load_manifest
from cache.splits import Split, split_manifest
from cache.store import Store
from cache.tables import pseudo_labels_path

from .config import ConfigError, FinetuneConfig
from .data import ClipSet, clip_set, store_for


@dataclass
class Datasets:
    """The clip sets of one stage and the facts about them."""

    split: Split
    train: ClipSet
    val: ClipSet
    test: ClipSet
    all_sets: dict[str, tuple[ClipSet, Path | None]]  # name → (every clip, store path) for the logits
    facts: dict[str, Any]


def open_store(root: str, store: str) -> tuple[Store | None, Path]:
    """The dataset's cache store opened read-only (None when it does not exist yet), and its path."""
    path = store_for(root, store)
    return (Store(path, mode="r") if path.exists() else None), path


def load_datasets(cfg: FinetuneConfig, log=print) -> Datasets:
    """Manifests, split, and the clip sets of the stage (priors, text, pseudo-labels joined by id)."""
    d, stage = cfg.data, cfg.train.stage
    text = cfg.backbone.text_source if cfg.backbone.text_source not in ("",) else "none"
    pseudo = d.pseudo_labels if cfg.train.lam > 0 else ""
    facts: dict[str, Any] = {}
    clean_m = load_manifest(d.clean)
    if not clean_m.labelled:
        raise ConfigError(f"data.clean = {d.clean} is not a labelled dataset")
    split = (
        Split.load(d.split_file)
        if d.split_file
        else split_manifest(
            clean_m,
            preset=d.split_preset,
            fold=d.fold,
            seed=d.split_seed if d.split_preset == "custom" else None,
        )
    )
    clean_store, clean_path = open_store(d.clean, d.clean_store)
    clean_all = clip_set(
        clean_m,
        clean_store,
        prior=d.prior,
        summary=d.summary,
        text_source=text,
        pseudo_labels=pseudo if stage in (1, 3) else "",
    )
    val, test = clean_all.select_ids(split.val), clean_all.select_ids(split.test)
    sets: dict[str, tuple[ClipSet, Path | None]] = {clean_m.name: (clean_all, clean_path)}
    facts["clean"] = {
        "name": clean_m.name,
        "root": str(clean_m.root),
        "manifest_sha256": clean_m.digest(),
        "clips": len(clean_m),
    }
    if d.noisy:
        noisy_m = load_manifest(d.noisy)
        noisy_store, noisy_path = open_store(d.noisy, d.noisy_store)
        noisy_all = clip_set(
            noisy_m,
            noisy_store,
            prior=d.prior,
            summary=d.summary,
            text_source=text,
            pseudo_labels=pseudo if stage == 2 else "",
        )
        sets[noisy_m.name] = (noisy_all, noisy_path)
        facts["noisy"] = {
            "name": noisy_m.name,
            "root": str(noisy_m.root),
            "manifest_sha256": noisy_m.digest(),
            "clips": len(noisy_m),
        }
    if stage == 2:
        held_out = split.evaluation_ids()
        overlap = np.array([str(i) in held_out for i in noisy_all.ids], dtype=bool)
        keep = ~overlap if d.exclude_noisy_overlap else np.ones(len(overlap), dtype=bool)
        facts["noisy"]["overlap_clean_val_test"] = int(overlap.sum())
        facts["noisy"]["excluded_clean_val_test"] = int((~keep).sum())
        facts["noisy"]["exclude_noisy_overlap"] = bool(d.exclude_noisy_overlap)
        log(
            f"stage 2: {int(overlap.sum())} noisy-set clip(s) are in the clean validation/test split and are "
            + ("excluded" if d.exclude_noisy_overlap else "kept (data.exclude_noisy_overlap = false)")
        )
        train = noisy_all.subset(np.flatnonzero(keep & (noisy_all.labels >= 0)))
    else:
        train = clean_all.select_ids(split.train)
    for k, root in enumerate(d.extra):
        m = load_manifest(root)
        st, path = open_store(root, d.extra_stores[k] if d.extra_stores else "")
        name = m.name if m.name not in sets else f"{m.name}#{k}"
        sets[name] = (clip_set(m, st, prior=d.prior, summary=d.summary, text_source=text), path)
        facts.setdefault("extra", []).append({"name": name, "root": str(m.root), "clips": len(m)})
    if cfg.train.lam > 0:
        facts["train_with_pseudo_label"] = int(train.has_pseudo.sum())
        if not train.has_pseudo.any():
            raise ConfigError(
                f"λ = {cfg.train.lam} but no training clip has a pseudo-label in "
                f"{pseudo_labels_path(d.pseudo_labels)}"
            )
    facts["split"] = {
        "preset": split.preset,
        "fold": split.fold,
        "train": len(split.train),
        "val": len(split.val),
        "test": len(split.test),
    }
    facts["train_clips"] = len(train)
    if train.prior_missing is not None and d.prior:
        facts["train_prior_missing"] = int(train.prior_missing.sum())
    return Datasets(split, train, val, test, sets, facts)
