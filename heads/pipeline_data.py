"""The pipeline's data: the clean, noisy and evaluation sets with the split, and each model's inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cache.manifest import load_manifest
from cache.metric import HierarchicalScores, hierarchical_scores
from cache.provenance import sha256_json
from cache.splits import Split
from cache.store import Store, default_store_path

from .data import (
    HeadData,
    InputError,
    InputSpec,
    Standardizer,
    existing_store,
    load_head_data,
    load_split,
    resolve_groups,
    split_indices,
)
from .ensemble import decode
from .pipeline_config import ModelSpec, PipelineConfig

SETS = ("clean", "noisy", "eval")


@dataclass(frozen=True)
class PipelineData:
    """Clip ids and labels of every configured set, their stores, and the clean set's split."""

    split: Split
    idx: dict[str, np.ndarray]  # train/val/test -> positions in the clean set
    stores: dict[str, Store]  # clean, and noisy / eval when configured
    ids: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # eval: all −1
    noisy_train_idx: np.ndarray | None  # the noisy clips stage 2 trains on
    noisy_overlap: int  # noisy clips that are in the clean validation/test split
    excluded_noisy: int  # of them, left out of stage 2 (all with data.exclude_noisy_overlap, else 0)
    exclude_noisy_overlap: bool  # the switch they were read with
    digest: str  # of the split, the sets' ids and the noisy clips trained on

    def noisy_summary(self) -> dict:
        """What every stage-2 result records about the noisy/clean overlap."""
        return {
            "noisy_in_clean_eval": self.noisy_overlap,
            "excluded_noisy_in_clean_eval": self.excluded_noisy,
            "exclude_noisy_overlap": self.exclude_noisy_overlap,
        }

    def scores(
        self, logits: np.ndarray, part: str, never_predicted: str, rule: str = "argmax"
    ) -> HierarchicalScores:
        """Scores of clean-set logits restricted to ``part`` (val or test) against the labels."""
        pred, _ = decode(logits, rule)
        return hierarchical_scores(self.labels["clean"][self.idx[part]], pred, never_predicted)


def _non_targets(manifest) -> int:
    """Rows dropped from a manifest as non-targets (top-level-only, *-other, empty labels)."""
    return int(sum(v for k, v in manifest.report.counts.items() if str(k).startswith("non_target")))


def load_pipeline_data(cfg: PipelineConfig, log: Callable[[str], None] = print) -> PipelineData:
    """Read the configured datasets' manifests and the split; noisy clips in the clean validation or
    test split are counted and, with ``data.exclude_noisy_overlap`` (the default), left out of stage 2."""
    d = cfg.data
    clean_manifest = load_manifest(d.clean.root, require_audio=False)
    clean = clean_manifest.targets()
    split = load_split(clean, d.split_file, d.split_preset, d.fold, d.split_seed, clean_manifest.name)
    idx = split_indices(clean.ids, split, d.clean.root)
    stores = {"clean": existing_store(d.clean.store or default_store_path(d.clean.root), d.clean.root, True)}
    ids, labels = {"clean": clean.ids}, {"clean": clean.labels}
    log(
        f"[data] {clean_manifest.name}: {len(clean)} target clips "
        f"({_non_targets(clean_manifest)} non-target rows "
        f"dropped); {split.describe()}"
    )
    noisy_train_idx, overlap, excluded = None, 0, 0
    if d.noisy.root:
        noisy = load_manifest(d.noisy.root, require_audio=False)
        nt = noisy.targets()
        stores["noisy"] = existing_store(
            d.noisy.store or default_store_path(d.noisy.root), d.noisy.root, True
        )
        ids["noisy"], labels["noisy"] = nt.ids, nt.labels
        held_out = split.evaluation_ids()
        in_eval = np.array([i in held_out for i in nt.ids], dtype=bool)
        overlap = int(in_eval.sum())
        excluded = overlap if d.exclude_noisy_overlap else 0
        noisy_train_idx = np.flatnonzero(~in_eval) if d.exclude_noisy_overlap else np.arange(len(nt))
        shared = len(set(nt.ids.tolist()) & set(clean.ids.tolist()))
        log(
            f"[data] {noisy.name}: {len(nt)} target clips ({_non_targets(noisy)} non-target rows dropped); "
            f"{shared} shared with {clean_manifest.name}, "
            f"{overlap} of them in the clean validation/test split: "
            + (
                "excluded from training"
                if d.exclude_noisy_overlap
                else "kept for training (data.exclude_noisy_overlap = false, the reference's behaviour)"
            )
        )
    if d.eval.root:
        ev = load_manifest(d.eval.root, require_audio=False)
        stores["eval"] = existing_store(d.eval.store or default_store_path(d.eval.root), d.eval.root, True)
        ids["eval"] = ev.ids
        labels["eval"] = np.full(len(ev), -1, dtype=np.int64)
        log(f"[data] {ev.name}: {len(ev)} clips to predict")
    digest = sha256_json(
        {
            "split": split.ids_sha256,
            "train": split.train,
            "val": split.val,
            "test": split.test,
            "clean": clean_manifest.digest(),
            "noisy": ids.get("noisy", np.array([])).tolist(),
            "eval": ids.get("eval", np.array([])).tolist(),
            "noisy_train": [] if noisy_train_idx is None else noisy_train_idx.tolist(),
        }
    )
    return PipelineData(
        split, idx, stores, ids, labels, noisy_train_idx, overlap, excluded, d.exclude_noisy_overlap, digest
    )


@dataclass(frozen=True)
class ModelData:
    """One model's inputs on every set, standardised with clean-training-split statistics."""

    spec: ModelSpec
    groups: list[str]  # the embedding groups the patterns resolved to (the same in every store)
    standardizer: Standardizer | None
    sets: dict[str, HeadData]  # clean (all target ids), noisy (all target ids), eval (all ids)


def load_model_data(data: PipelineData, spec: ModelSpec, log: Callable[[str], None] = print) -> ModelData:
    """Read a model's inputs from every store; all stores must resolve its groups alike."""
    inputs = spec.inputs()
    sets, groups = {}, None
    for s, store in data.stores.items():
        sg = resolve_groups(store, inputs.groups) if inputs.groups else []
        if groups is None:
            groups = sg
        elif sg != groups:
            raise InputError(
                f"model {spec.name}: the {s} store resolves {inputs.groups} to {sg}, the clean store "
                f"to {groups}; all sets must use the same embeddings (same checkpoint)"
            )
        hd = load_head_data(store, data.ids[s], InputSpec(sg, inputs.columns, inputs.prior), data.labels[s])
        bad = int((~hd.feature_ok).sum()) if hd.feature_ok is not None else 0
        miss = int(hd.missing.sum()) if hd.missing is not None else 0
        log(
            f"[data] {spec.name} / {s}: {len(hd)} clips, dim {hd.dim}"
            + (f", {bad} with failed features (zeros)" if bad else "")
            + (f", {miss} with a missing prior" if inputs.prior else "")
        )
        sets[s] = hd
    std = None
    if spec.standardize and sets["clean"].dim:
        std = Standardizer.fit(sets["clean"].X[torch.as_tensor(data.idx["train"])])
        sets = {s: std.apply(v) for s, v in sets.items()}
    return ModelData(spec, groups or [], std, sets)
