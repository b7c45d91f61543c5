"""Cached inputs of a head: features, priors, labels and pseudo-labels as tensors, joined by id.

``HeadData`` holds everything a head trains or predicts on for a list of clip ids. Inputs
from several embedding groups (backbones) are concatenated by clip id in the order given;
group names may be glob patterns (``embeddings/minilm@*``) resolved against the store.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cache.feature_matrix import read_features
from cache.splits import Split, make_split
from cache.store import Store
from cache.tables import EMBEDDINGS, PRIORS, priors_path, read_priors, read_pseudo_labels
from cache.taxonomy import NUM_CLASSES


class InputError(ValueError):
    """A store lacks the inputs a head asks for."""


@dataclass
class InputSpec:
    """What a head reads: embedding groups (patterns allowed), their columns, and a prior name."""

    groups: list[str] = field(default_factory=list)
    columns: list[str] | None = None  # e.g. ["audio"]; None = every matrix column (audio, then text)
    prior: str | None = None  # llm/priors/<prior>; None = no prior


@dataclass
class HeadData:
    ids: np.ndarray  # (N,) object
    X: Tensor  # (N, D) float32 (may be (N, 0) for prior-only heads)
    prior: Tensor | None  # (N, C) float32
    missing: Tensor | None  # (N,) bool
    labels: Tensor  # (N,) int64, -1 = no hard label
    pseudo: Tensor | None = None  # (N, C) float32
    has_pseudo: Tensor | None = None  # (N,) bool
    feature_ok: np.ndarray | None = None  # (N,) bool: every group had the clip
    groups: list[str] = field(default_factory=list)  # resolved group names

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    def subset(self, index) -> HeadData:
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        take = lambda t: None if t is None else t[idx]  # noqa: E731
        return replace(
            self,
            ids=self.ids[idx.numpy()],
            X=self.X[idx],
            prior=take(self.prior),
            missing=take(self.missing),
            labels=self.labels[idx],
            pseudo=take(self.pseudo),
            has_pseudo=take(self.has_pseudo),
            feature_ok=None if self.feature_ok is None else self.feature_ok[idx.numpy()],
        )

    def to(self, device) -> HeadData:
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            X=self.X.to(device),
            prior=mv(self.prior),
            missing=mv(self.missing),
            labels=self.labels.to(device),
            pseudo=mv(self.pseudo),
            has_pseudo=mv(self.has_pseudo),
        )

    def with_pseudo(
        self, probs: np.ndarray | Tensor | None, has: np.ndarray | Tensor | None = None
    ) -> HeadData:
        if probs is None:
            return replace(self, pseudo=None, has_pseudo=None)
        p = torch.as_tensor(np.asarray(probs), dtype=torch.float32)
        h = (
            torch.ones(len(p), dtype=torch.bool)
            if has is None
            else torch.as_tensor(np.asarray(has), dtype=torch.bool)
        )
        return replace(self, pseudo=p.to(self.X.device), has_pseudo=h.to(self.X.device))


def load_split(targets, split_file: str, preset: str, fold: int, seed: int | None, dataset: str) -> Split:
    """The saved split ``split_file`` or, when it is empty, split ``preset`` (fold, seed) of ``targets``
    (a manifest's target clips: ``ids``, ``labels``)."""
    if split_file:
        return Split.load(split_file)
    return make_split(targets.ids, targets.labels, preset=preset, fold=fold, seed=seed, dataset=dataset)


def split_indices(ids: Sequence[str], split: Split, where: str) -> dict[str, np.ndarray]:
    """Positions in ``ids`` of the split's train, val and test ids; ``where`` names ``ids`` in the
    error raised for split ids that are not among them."""
    pos = {i: k for k, i in enumerate(ids)}
    unknown = [i for i in split.train + split.val + split.test if i not in pos]
    if unknown:
        raise InputError(
            f"split has {len(unknown)} id(s) that are not target clips of {where}: {', '.join(unknown[:10])}"
        )
    return {p: np.array([pos[i] for i in split.part(p)], dtype=np.int64) for p in ("train", "val", "test")}


def _dataset_of(store: Store) -> str:
    return str(store.path.parent) if store.path.name == "cache.zarr" else "<dataset root>"


def extract_command(store: Store, pattern: str) -> str:
    """The command that writes an embedding group matching ``pattern`` into ``store``."""
    backbone, _, rest = pattern.split("/", 1)[-1].partition("@")
    text = rest.partition("~")[2]
    cmd = f"python -m extract embeddings --dataset {_dataset_of(store)} --backbone " + (
        backbone if backbone and not any(c in backbone for c in "*?[") else "<backbone>"
    )
    if store.path.name != "cache.zarr":
        cmd += f" --store {store.path}"
    if text and not any(c in text for c in "*?["):
        cmd += f" --text-source {text}"
    return cmd


def existing_store(path: str | Path, dataset: str | Path | None = None, write: bool = False) -> Store:
    """Open a cache store that must already exist (the head tier reads its inputs from it, so it
    never creates one); ``write`` opens it for adding logits or pseudo-label tables."""
    p = Path(path)
    if not p.exists():
        hint = (
            f"extract the inputs of {dataset} first (python -m extract embeddings --dataset {dataset} "
            "--backbone ...), or pass the right --store"
            if dataset
            else "pass an existing store"
        )
        raise InputError(f"cache store {p} does not exist: {hint}")
    return Store(p, mode="a" if write else "r")


def resolve_groups(store: Store, patterns: Sequence[str]) -> list[str]:
    """Exact embedding group names for ``patterns`` (each must match exactly one table)."""
    tables = store.tables(EMBEDDINGS)
    out = []
    for pat in patterns:
        if pat in tables:
            out.append(pat)
            continue
        hits = [t for t in tables if fnmatch.fnmatchcase(t, pat)]
        if len(hits) != 1:
            what = "no" if not hits else f"{len(hits)}"
            raise InputError(
                f"{store.path}: {what} embedding group(s) match {pat!r}"
                + (
                    f" ({', '.join(hits)}); name one exactly"
                    if hits
                    else f" (the store has: {', '.join(tables) or 'none'}); extract it with the same "
                    f"checkpoint as the heads: {extract_command(store, pat)}"
                )
            )
        out.append(hits[0])
    return out


def _check_finite(store: Store, what: str, ids: np.ndarray, values: np.ndarray) -> None:
    """Refuse NaN / infinite inputs, naming the table and a few clip ids."""
    bad = ~np.isfinite(values).all(axis=1) if values.ndim == 2 else ~np.isfinite(values)
    if bad.any():
        few = ", ".join(str(i) for i in ids[bad][:5]) + (" …" if bad.sum() > 5 else "")
        raise InputError(
            f"{store.path}: {what} holds NaN or infinite values for {int(bad.sum())} clip(s) ({few}); "
            "re-create that table (delete it and run its extract command again)"
        )


def read_finite_features(store: Store, groups: Sequence[str], ids: np.ndarray, columns=None):
    """``cache.feature_matrix.read_features`` with every block checked for NaN / infinite values."""
    feats = read_features(store, groups, ids, columns=columns)
    lo = 0
    for group, column, dim in feats.blocks:
        _check_finite(store, f"table '{group}' (column {column})", ids, feats.X[:, lo : lo + dim])
        lo += dim
    return feats


def load_head_data(
    store: Store,
    ids: Sequence[str],
    spec: InputSpec,
    labels: Sequence[int] | None = None,
    pseudo_name: str | None = None,
) -> HeadData:
    """Read features, prior and (optionally) pseudo-labels for ``ids`` from ``store``."""
    ids = np.asarray([str(i) for i in ids], dtype=object)
    groups = resolve_groups(store, spec.groups) if spec.groups else []
    if groups:
        feats = read_finite_features(store, groups, ids, columns=spec.columns)
        X, ok = torch.from_numpy(np.ascontiguousarray(feats.X, dtype=np.float32)), feats.ok
    else:
        X, ok = torch.zeros(len(ids), 0), np.ones(len(ids), dtype=bool)
    prior = missing = None
    if spec.prior:
        group = priors_path(spec.prior)
        if not store.has(group):
            raise InputError(
                f"{store.path}: no prior table '{group}' (priors there: "
                f"{', '.join(store.tables(PRIORS)) or 'none'}); make it with: python -m extract priors "
                f"--dataset {_dataset_of(store)} --provider ... (as for the training data)"
            )
        p, m = read_priors(store, spec.prior, ids)
        _check_finite(store, f"prior table '{group}'", ids, p)
        if p.shape[1] != NUM_CLASSES:
            raise InputError(
                f"{store.path} '{group}': prior has {p.shape[1]} columns, expected {NUM_CLASSES}"
            )
        prior, missing = torch.from_numpy(p), torch.from_numpy(m)
    y = (
        torch.full((len(ids),), -1, dtype=torch.long)
        if labels is None
        else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    )
    data = HeadData(ids=ids, X=X, prior=prior, missing=missing, labels=y, feature_ok=ok, groups=groups)
    if pseudo_name:
        data = data.with_pseudo(read_pseudo_labels(store, pseudo_name, ids))
    return data


@dataclass
class Standardizer:
    """Per-feature z-scoring fitted on training rows (stored with the head's weights)."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, X: Tensor, eps: float = 1e-6) -> Standardizer:
        if X.shape[1] == 0:
            return cls(X.new_zeros(0), X.new_ones(0))
        mean = X.mean(0)
        std = X.std(0, unbiased=False).clamp(min=eps)
        return cls(mean, std)

    def apply(self, data: HeadData) -> HeadData:
        if data.X.shape[1] != self.mean.shape[0]:
            raise InputError(
                f"features have {data.X.shape[1]} columns, the standardizer {self.mean.shape[0]}"
            )
        return replace(data, X=(data.X - self.mean.to(data.X.device)) / self.std.to(data.X.device))

    def state_dict(self) -> dict:
        return {"mean": self.mean.cpu(), "std": self.std.cpu()}

    @classmethod
    def from_state(cls, state: dict | None) -> Standardizer | None:
        return None if state is None else cls(state["mean"], state["std"])
