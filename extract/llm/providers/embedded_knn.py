"""``embedded-knn``: an offline supervised prior from the nearest labelled training clips.

For a clip, take the ``knn_k`` most similar labelled training clips in MiniLM space
(cosine of the cleaned metadata texts), weight them by softmax(similarity /
``knn_temperature``) and sum their one-hot labels: prior (23,) summing to 1.

Training clips = the ``train`` part of the split of ``train_dataset`` (the labelled clean
set). The prior is cross-fitted so no clip ever sees its own label: training clips are
assigned to ``knn_folds`` folds (by a seeded hash of the clip id, the same in every
dataset) and a training clip's neighbours come only from the other folds (out-of-fold);
every other clip — validation, test, other datasets — sees all training clips. A clip of
another dataset whose id is a training clip (BSD35k-CS shares clips with BSD10k) is treated
as that training clip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cache.taxonomy import NUM_CLASSES
from extract.text import clean_metadata

from .base import LocalOutput, LocalProvider, LocalTask, register_provider
from .embedded import MODEL_NAME, clip_texts, encode_clips, encoder_provenance, full_manifest, softmax


def fold_of(ids: list[str], n_folds: int, seed: int) -> np.ndarray:
    """Deterministic fold of each id: sha256(seed:id) mod n_folds."""
    return np.array(
        [int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:12], 16) % n_folds for i in ids],
        dtype=np.int64,
    )


def knn_prior(
    Q: np.ndarray,
    q_fold: np.ndarray,
    P: np.ndarray,
    p_labels: np.ndarray,
    p_fold: np.ndarray,
    k: int,
    temperature: float,
    block: int = 1024,
) -> np.ndarray:
    """(N, 23) priors of queries ``Q`` from pool ``P`` (both L2-normalised).

    ``q_fold[i] = f >= 0``: query i is a pool clip of fold f and sees only other folds;
    ``-1``: it sees the whole pool.
    """
    out = np.zeros((len(Q), NUM_CLASSES), dtype=np.float64)
    if len(P) == 0:
        return out.astype(np.float32)
    fold_cols = {int(f): np.flatnonzero(p_fold == f) for f in np.unique(p_fold) if f >= 0}
    kk = min(k, P.shape[0])
    for s in range(0, len(Q), block):
        sims = Q[s : s + block] @ P.T  # (B, M)
        qf = q_fold[s : s + block]
        for f, cols in fold_cols.items():  # a training query never sees its own fold
            rows = np.flatnonzero(qf == f)
            if len(rows):
                sims[np.ix_(rows, cols)] = -np.inf
        np.negative(sims, out=sims)  # in place: argpartition picks the k largest similarities
        idx = np.argpartition(sims, kk - 1, axis=1)[:, :kk]
        top = -np.take_along_axis(sims, idx, axis=1)
        w = softmax(np.where(np.isfinite(top), top / temperature, -np.inf), axis=1)
        w = np.nan_to_num(w)
        rows = np.arange(len(idx))
        lab = p_labels[idx]
        blk = out[s : s + block]
        for j in range(kk):  # the same additions, in the same order, as np.add.at over (row, j)
            blk[rows, lab[:, j]] += w[:, j]
    sums = out.sum(1, keepdims=True)
    out = np.where(sums > 0, out / np.where(sums > 0, sums, 1), 0.0)
    return out.astype(np.float32)


@register_provider("embedded-knn")
class EmbeddedKnnProvider(LocalProvider):
    """See module docstring."""

    @property
    def model(self) -> str:
        return MODEL_NAME

    def provenance(self) -> dict[str, Any]:
        c = self.config
        return {
            "provider": self.name,
            "model": MODEL_NAME,
            "knn_k": c.knn_k,
            "knn_temperature": c.knn_temperature,
            "knn_folds": c.knn_folds,
            "knn_seed": c.knn_seed,
        }

    def _split(self, train_manifest):
        from cache.splits import Split, split_manifest

        c = self.config
        if c.split:
            split = Split.load(c.split)
            where = c.split
        elif c.split_preset:
            split = split_manifest(train_manifest, preset=c.split_preset, fold=c.fold)
            where = f"preset {c.split_preset} fold {c.fold}"
        else:
            raise ValueError(
                "embedded-knn needs the training clips: pass --split FILE.json or --split-preset NAME "
                "[--fold K] (and --train-dataset DIR)"
            )
        known = set(train_manifest.ids.tolist())
        unknown = [i for i in split.train if i not in known]
        if unknown:
            raise ValueError(
                f"split {where}: {len(unknown)} training id(s) are not labelled target clips of "
                f"{train_manifest.root}: {', '.join(unknown[:10])}"
            )
        return split, where

    def priors(self, task: LocalTask) -> LocalOutput:
        c = self.config
        train_root = Path(c.train_dataset) if c.train_dataset else task.dataset_root
        train_all = full_manifest(task, train_root)
        train = train_all.targets()
        split, split_where = self._split(train)
        pos = {i: k for k, i in enumerate(train.ids.tolist())}
        pool_rows = [pos[i] for i in split.train]
        pool_ids = [train.ids[r] for r in pool_rows]
        pool_texts = [clean_metadata(train.title[r], train.tags[r], train.description[r]) for r in pool_rows]
        keep = [j for j, t in enumerate(pool_texts) if t]
        pool_ids = [pool_ids[j] for j in keep]
        pool_texts = [pool_texts[j] for j in keep]
        pool_labels = np.array([train.labels[pool_rows[j]] for j in keep], dtype=np.int64)
        pool_fold = fold_of(pool_ids, c.knn_folds, c.knn_seed)

        texts = clip_texts(task)
        missing = np.array([not t for t in texts], dtype=bool)
        P, reuse_pool = encode_clips(c, pool_texts, pool_ids, train_root, train_all.digest())
        Q, reuse_queries = encode_clips(c, texts, task.ids, task.dataset_root, full_manifest(task).digest())
        pool_pos = {i: j for j, i in enumerate(pool_ids)}
        q_fold = np.array([pool_fold[pool_pos[i]] if i in pool_pos else -1 for i in task.ids], dtype=np.int64)
        prior = knn_prior(Q, q_fold, P, pool_labels, pool_fold, c.knn_k, c.knn_temperature)
        prior[missing] = 0.0
        reason = ["empty metadata" if m else "" for m in missing]
        same = Path(train_root).resolve() == Path(task.dataset_root).resolve()
        parts = (
            {"train (out-of-fold)": list(split.train), "val": list(split.val), "test": list(split.test)}
            if same
            else {}
        )
        attrs = {
            "train_dataset": str(Path(train_root).resolve()),
            "split": split_where,
            "split_describe": split.describe(),
            "n_pool": len(pool_ids),
            "n_queries_out_of_fold": int((q_fold >= 0).sum()),
            "minilm_reuse": {"pool": reuse_pool, "queries": reuse_queries},
            **encoder_provenance(c),
        }
        return LocalOutput(missing=missing, reason=reason, prior=prior, attrs=attrs, evaluation_ids=parts)

    def summaries(self, task: LocalTask) -> LocalOutput:
        raise NotImplementedError("embedded-knn makes priors only; use --provider embedded for summaries")
