"""Scores of a prior used alone as a classifier (argmax): top-1 accuracy and macro hF
(the challenge metric of :mod:`cache.metric` with the CP-JKU convention for never-predicted
classes, hP_c = 0)."""

from __future__ import annotations

import numpy as np

from cache.metric import hierarchical_scores
from cache.taxonomy import CLASS_TOP_INDEX


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
