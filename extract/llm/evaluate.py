"""Scores of a prior used alone as a classifier (argmax): top-1 accuracy and macro hF
(the challenge metric of :mod:`cache.metric` with the CP-JKU convention for never-predicted
classes, hP_c = 0), the rows a run scores it on, and the ``id,class`` truth files it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.metric import hierarchical_scores
from cache.taxonomy import CLASS_TOP_INDEX

from .config import LLMConfig


def score_prior(prior: np.ndarray, missing: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy / top-level accuracy / hF of ``argmax(prior)`` on rows with a label (>= 0)
    and a prior (not missing); ``coverage`` = share of labelled rows that have a prior."""
    labels = np.asarray(labels, dtype=np.int64)
    labelled = labels >= 0
    use = labelled & ~np.asarray(missing, dtype=bool)
    out = {
        "n_labelled": int(labelled.sum()),
        "n_scored": int(use.sum()),
        "coverage": float(use.sum() / max(1, labelled.sum())),
    }
    if use.any():
        pred = np.asarray(prior)[use].argmax(1)
        t = labels[use]
        out.update(
            {
                "accuracy": float(np.mean(pred == t)),
                "top_accuracy": float(np.mean(CLASS_TOP_INDEX[pred] == CLASS_TOP_INDEX[t])),
                "hF": hierarchical_scores(t, pred, never_predicted="zero").hF,
            }
        )
    return out


def eval_parts(
    cfg: LLMConfig, ids: list[str], explicit: dict[str, list[str]], dataset_name: str
) -> dict[str, list[str]]:
    """Which rows to score the prior on: the provider's parts, else the split's parts when the
    split was made from this dataset, else all rows."""
    if explicit:
        return explicit
    if cfg.split:
        from cache.splits import Split

        split = Split.load(cfg.split)
        if split.dataset == dataset_name:
            known = set(ids)
            parts = {p: [i for i in split.part(p) if i in known] for p in ("train", "val", "test")}
            if any(parts.values()):
                return {k: v for k, v in parts.items() if v}
    return {"all": list(ids)}


def read_truth(path: str | Path) -> dict[str, int]:
    """``id,class`` CSV (e.g. the demo's ``*-truth.csv``) as {id: class index}; other labels are skipped."""
    import csv

    from cache.taxonomy import CLASS_INDEX

    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in reader.fieldnames or "class" not in reader.fieldnames:
            raise ValueError(f"{path}: truth file needs the columns id,class (has {reader.fieldnames})")
        for row in reader:
            code = (row.get("class") or "").strip().lower()
            if code in CLASS_INDEX:
                out[str(row["id"]).strip()] = CLASS_INDEX[code]
    return out
