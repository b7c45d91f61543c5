"""Scores of a prior used alone as a classifier (argmax): top-1 accuracy and macro hF.

The hF here is the challenge metric with the CP-JKU convention for never-predicted classes
(hP_c = 0), the same definition as ``heads.metric.hierarchical_scores(never_predicted="zero")``;
it is re-stated here because ``extract`` must not import ``heads``.
"""
from __future__ import annotations

import numpy as np

from cache.taxonomy import CLASS_TOP_INDEX, NUM_CLASSES, credit_matrix

_CREDIT = credit_matrix(0.375)


def macro_hf(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro hierarchical F over the classes present in ``y_true`` (class indices)."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    credit = _CREDIT[p, t]
    support = np.bincount(t, minlength=NUM_CLASSES)
    n_pred = np.bincount(p, minlength=NUM_CLASSES)
    by_truth = np.bincount(t, weights=credit, minlength=NUM_CLASSES)
    by_pred = np.bincount(p, weights=credit, minlength=NUM_CLASSES)
    present = support > 0
    hr = by_truth / np.maximum(support, 1)
    hp = np.where(n_pred > 0, by_pred / np.maximum(n_pred, 1), 0.0)
    denom = hp + hr
    hf = np.where(denom > 0, 2 * hp * hr / np.where(denom > 0, denom, 1), 0.0)
    return float(hf[present].mean()) if present.any() else 0.0


def score_prior(prior: np.ndarray, missing: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy / top-level accuracy / hF of ``argmax(prior)`` on rows with a label (>= 0)
    and a prior (not missing); ``coverage`` = share of labelled rows that have a prior."""
    labels = np.asarray(labels, dtype=np.int64)
    labelled = labels >= 0
    use = labelled & ~np.asarray(missing, dtype=bool)
    out = {"n_labelled": int(labelled.sum()), "n_scored": int(use.sum()),
           "coverage": float(use.sum() / max(1, labelled.sum()))}
    if use.any():
        pred = np.asarray(prior)[use].argmax(1)
        t = labels[use]
        out.update({"accuracy": float(np.mean(pred == t)),
                    "top_accuracy": float(np.mean(CLASS_TOP_INDEX[pred] == CLASS_TOP_INDEX[t])),
                    "hF": macro_hf(t, pred)})
    return out
