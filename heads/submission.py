"""Challenge submission files (docs/heads.md; :mod:`heads.score` reads and scores them).

``<label>.output.csv``: ``id,predicted_bst_second_level_class,prediction_score`` (id =
anonymous_id, score in [0, 1]). ``<label>.meta.yaml``: the system's description, its
parameter count (and what it counts) and the development results under
``results.development_datasets.bsd10k-v1.2.{overall,class_wise}.{hP,hR,hF}`` with the
metric convention named.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from cache.metric import HierarchicalScores
from cache.taxonomy import CLASSES

HEADER = ("id", "predicted_bst_second_level_class", "prediction_score")


def write_output_csv(path: str | Path, ids: Sequence[str], pred: np.ndarray, score: np.ndarray) -> Path:
    pred, score = np.asarray(pred), np.asarray(score, dtype=np.float64)
    if not (len(ids) == len(pred) == len(score)):
        raise ValueError("ids, predictions and scores differ in length")
    nan = np.isnan(score)
    if nan.any():
        raise ValueError(
            f"{path}: the logits hold NaN for {int(nan.sum())} clip(s) (first: {ids[int(np.argmax(nan))]}); "
            "check the heads' input tables for NaN features"
        )
    if len(score) and (score.min() < 0 or score.max() > 1):
        raise ValueError(f"{path}: prediction scores must lie in [0, 1]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i, p, s in zip(ids, pred, score, strict=True):
            w.writerow([str(i), CLASSES[int(p)], f"{float(s):.6f}"])
    return path


def dev_results(scores: HierarchicalScores) -> dict:
    """``{overall: {hP,hR,hF}, class_wise: {code: {hP,hR,hF}}, metric convention}``."""
    r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return {
        "overall": {"hP": r(scores.hP), "hR": r(scores.hR), "hF": r(scores.hF)},
        "class_wise": {
            c: {"hP": r(v["hP"]), "hR": r(v["hR"]), "hF": r(v["hF"])} for c, v in scores.per_class.items()
        },
        "metric": "macro hierarchical precision/recall/F (credit 1 exact, 0.375 same top level, "
        "0 otherwise); "
        f"never-predicted-class convention: '{scores.never_predicted}'",
        "n_items": scores.n_items,
    }


def write_meta_yaml(
    path: str | Path,
    *,
    label: str,
    name: str,
    abbreviation: str,
    description: str,
    dev_scores: HierarchicalScores,
    dev_split: str,
    n_parameters: int,
    parameters_count: str,
    members: Sequence[str] = (),
    extra: dict | None = None,
) -> Path:
    meta = {
        "submission": {"label": label, "name": name, "abbreviation": abbreviation},
        "system": {
            "description": description,
            "complexity": {
                "total_parameters": int(n_parameters),
                "total_parameters_counts": parameters_count,
            },
            "ensemble_members": list(members),
        },
        "results": {"development_datasets": {"bsd10k-v1.2": {**dev_results(dev_scores), "split": dev_split}}},
    }
    if extra:
        meta.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    return path
