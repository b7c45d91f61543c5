"""Macro hierarchical precision / recall / F-score (docs/task.md §4), vectorised with numpy.

Per item credit: 1 if prediction == truth, 0.375 (λ·|{top}|/|{top,sub}| = 0.75·1/2) if only
the top level matches, else 0. Per class c: hP_c = mean credit over items predicted as c,
hR_c = mean credit over items whose truth is c, hF_c = harmonic mean (0 if both are 0).
Overall scores are unweighted means over the classes present in the truth.

A class present in the truth but never predicted has an undefined hP_c:
  * ``"zero"`` (default, CP-JKU code): hP_c = 0, so hF_c = 0; the class stays in all means.
  * ``"drop"`` (official baseline code): the class is dropped from all three means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cache.taxonomy import CLASS_TOP_INDEX, CLASSES, NUM_CLASSES, credit_matrix

CONVENTIONS = ("zero", "drop")
SAME_TOP_CREDIT = 0.375
CREDIT = credit_matrix(SAME_TOP_CREDIT)


@dataclass
class HierarchicalScores:
    hP: float
    hR: float
    hF: float
    accuracy: float
    top_accuracy: float
    never_predicted: str
    n_items: int
    #: per class present in the truth: {"hP","hR","hF","support","n_predicted"}; hP is None when
    #: the class was never predicted and the convention is "drop"
    per_class: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    dropped_classes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "hP": self.hP,
            "hR": self.hR,
            "hF": self.hF,
            "accuracy": self.accuracy,
            "top_accuracy": self.top_accuracy,
            "never_predicted": self.never_predicted,
            "n_items": self.n_items,
            "dropped_classes": list(self.dropped_classes),
            "per_class": self.per_class,
        }


def _as_indices(y) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind in "OUS":
        lookup = {c: i for i, c in enumerate(CLASSES)}
        try:
            return np.fromiter((lookup[str(v).strip()] for v in arr), dtype=np.int64, count=len(arr))
        except KeyError as e:
            raise ValueError(f"unknown class code {e.args[0]!r}") from None
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= NUM_CLASSES):
        raise ValueError(f"class indices must lie in 0..{NUM_CLASSES - 1}")
    return arr


def item_credit(y_true, y_pred) -> np.ndarray:
    """Credit of every item (1, 0.375 or 0)."""
    t, p = _as_indices(y_true), _as_indices(y_pred)
    return CREDIT[p, t]


def hierarchical_scores(y_true, y_pred, never_predicted: str = "zero") -> HierarchicalScores:
    """Score predictions against truths (class indices or code strings)."""
    if never_predicted not in CONVENTIONS:
        raise ValueError(f"never_predicted must be one of {CONVENTIONS}, got {never_predicted!r}")
    t, p = _as_indices(y_true), _as_indices(y_pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} truths but {len(p)} predictions")
    if len(t) == 0:
        raise ValueError("nothing to score")
    credit = CREDIT[p, t]
    support = np.bincount(t, minlength=NUM_CLASSES)
    n_pred = np.bincount(p, minlength=NUM_CLASSES)
    sum_by_truth = np.bincount(t, weights=credit, minlength=NUM_CLASSES)
    sum_by_pred = np.bincount(p, weights=credit, minlength=NUM_CLASSES)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        hR_c = np.where(present, sum_by_truth / np.maximum(support, 1), np.nan)
        hP_c = np.where(n_pred > 0, sum_by_pred / np.maximum(n_pred, 1), np.nan)
    never = present & (n_pred == 0)
    if never_predicted == "zero":
        hP_c = np.where(never, 0.0, hP_c)
        used = present
    else:
        used = present & ~never
    denom = hP_c + hR_c
    with np.errstate(invalid="ignore", divide="ignore"):
        hF_c = np.where(denom > 0, 2 * hP_c * hR_c / np.where(denom > 0, denom, 1), 0.0)
    hF_c = np.where(np.isnan(hP_c), np.nan, hF_c)
    if used.any():
        hP, hR, hF = (float(np.mean(x[used])) for x in (hP_c, hR_c, hF_c))
    else:
        hP = hR = hF = 0.0
    per_class = {}
    for c in np.flatnonzero(present):
        nan_p = bool(np.isnan(hP_c[c]))
        per_class[CLASSES[c]] = {
            "hP": None if nan_p else float(hP_c[c]),
            "hR": float(hR_c[c]),
            "hF": None if nan_p else float(hF_c[c]),
            "support": int(support[c]),
            "n_predicted": int(n_pred[c]),
        }
    return HierarchicalScores(
        hP=hP,
        hR=hR,
        hF=hF,
        accuracy=float(np.mean(p == t)),
        top_accuracy=float(np.mean(CLASS_TOP_INDEX[p] == CLASS_TOP_INDEX[t])),
        never_predicted=never_predicted,
        n_items=int(len(t)),
        per_class=per_class,
        dropped_classes=[CLASSES[c] for c in np.flatnonzero(never)] if never_predicted == "drop" else [],
    )


def format_table(scores: HierarchicalScores) -> str:
    """Per-class table as Markdown, naming the never-predicted convention."""
    f = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        f"hP {scores.hP:.4f} · hR {scores.hR:.4f} · hF {scores.hF:.4f} · acc {scores.accuracy:.4f} · "
        f"top-acc {scores.top_accuracy:.4f} · n={scores.n_items} · never-predicted convention: "
        f"'{scores.never_predicted}'",
        "",
        "| class | hP | hR | hF | support | predicted |",
        "|---|---|---|---|---|---|",
    ]
    for code, r in scores.per_class.items():
        lines.append(
            f"| {code} | {f(r['hP'])} | {f(r['hR'])} | {f(r['hF'])} | {r['support']} | {r['n_predicted']} |"
        )
    return "\n".join(lines)
