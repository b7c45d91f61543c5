"""Ensembles (mean of logits), subset selection on validation hF, and decoding rules.

Decoding: ``argmax`` (default) or ``expected-credit``: predict argmax_c Σ_t p(t)·credit(c, t)
with the metric's credit matrix, which maximises each item's expected credit under p.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cache.metric import CREDIT, hierarchical_scores

DECODINGS = ("argmax", "expected-credit")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mean_logits(
    logits: Sequence[np.ndarray] | np.ndarray, members: Sequence[int] | None = None
) -> np.ndarray:
    """Mean of the logits (M, N, C) of the chosen members (all by default)."""
    arr = np.asarray(logits, dtype=np.float32) if not isinstance(logits, np.ndarray) else logits
    if members is not None:
        arr = arr[list(members)]
    return arr.mean(axis=0)


def expected_credit(probs: np.ndarray) -> np.ndarray:
    """(N, C): expected credit of predicting each class, Σ_t p(t)·CREDIT[c, t]."""
    return np.asarray(probs, dtype=np.float64) @ CREDIT.T


def decode(logits: np.ndarray, rule: str = "argmax") -> tuple[np.ndarray, np.ndarray]:
    """(predicted class indices, prediction scores in [0, 1]) from logits (N, C).

    The score is the softmax probability of the predicted class.
    """
    if rule not in DECODINGS:
        raise ValueError(f"decoding must be one of {DECODINGS}, got {rule!r}")
    p = softmax(logits)
    pred = p.argmax(-1) if rule == "argmax" else expected_credit(p).argmax(-1)
    return pred.astype(np.int64), p[np.arange(len(p)), pred]


def score_logits(logits: np.ndarray, labels: np.ndarray, rule: str = "argmax", never_predicted: str = "zero"):
    pred, _ = decode(logits, rule)
    return hierarchical_scores(labels, pred, never_predicted)


@dataclass
class Selection:
    members: list[int]
    val_hF: float
    method: str
    trace: list[dict] = field(default_factory=list)

    def as_dict(self, names: Sequence[str] | None = None) -> dict:
        d = {"members": self.members, "val_hF": self.val_hF, "method": self.method, "trace": self.trace}
        if names is not None:
            d["member_names"] = [names[i] for i in self.members]
        return d


def _hf(
    logits: np.ndarray, members: Sequence[int], labels: np.ndarray, rule: str, never_predicted: str
) -> float:
    return score_logits(mean_logits(logits, members), labels, rule, never_predicted).hF


def select_greedy(
    logits: np.ndarray,
    labels: np.ndarray,
    max_size: int = 0,
    rule: str = "argmax",
    never_predicted: str = "zero",
) -> Selection:
    """Forward selection without replacement: add the member that raises validation hF most; stop
    when nothing improves or ``max_size`` members are chosen (0 = no limit)."""
    M = len(logits)
    if M == 0:
        raise ValueError("no candidate models to ensemble")
    limit = max_size or M
    chosen: list[int] = []
    best = -1.0
    trace = []
    while len(chosen) < limit:
        cand = [
            (_hf(logits, chosen + [m], labels, rule, never_predicted), -m, m)
            for m in range(M)
            if m not in chosen
        ]
        if not cand:
            break
        hf, _, m = max(cand)
        if hf <= best:
            break
        chosen.append(m)
        best = hf
        trace.append({"added": m, "val_hF": hf})
    return Selection(chosen, best, "greedy", trace)


def select_exhaustive(
    logits: np.ndarray,
    labels: np.ndarray,
    max_size: int = 0,
    rule: str = "argmax",
    never_predicted: str = "zero",
    max_candidates: int = 16,
    ranked: int = 20,
) -> Selection:
    """Best subset (by validation hF, smaller subsets win ties) of up to ``max_size`` members; the
    trace ranks the best ``ranked`` subsets."""
    M = len(logits)
    if M == 0:
        raise ValueError("no candidate models to ensemble")
    if M > max_candidates:
        raise ValueError(
            f"exhaustive selection over {M} candidates is too large (limit {max_candidates}); "
            "use greedy or fewer candidates"
        )
    limit = max_size or M
    best, best_set = -1.0, [0]
    scored = []
    for size in range(1, limit + 1):
        for subset in itertools.combinations(range(M), size):
            hf = _hf(logits, subset, labels, rule, never_predicted)
            scored.append((-hf, size, subset))
            if hf > best + 1e-12:
                best, best_set = hf, list(subset)
    trace = [{"members": list(sub), "val_hF": -neg} for neg, _, sub in sorted(scored)[:ranked]]
    return Selection(best_set, best, "exhaustive", trace)


def select(
    logits: np.ndarray,
    labels: np.ndarray,
    method: str = "greedy",
    max_size: int = 0,
    rule: str = "argmax",
    never_predicted: str = "zero",
) -> Selection:
    """Subset selection by ``method``: ``greedy``, ``exhaustive`` or ``all`` (every candidate)."""
    if method == "greedy":
        return select_greedy(logits, labels, max_size, rule, never_predicted)
    if method == "exhaustive":
        return select_exhaustive(logits, labels, max_size, rule, never_predicted)
    if method == "all":
        members = list(range(len(logits)))
        return Selection(members, _hf(logits, members, labels, rule, never_predicted), "all")
    raise ValueError(f"ensemble selection must be greedy, exhaustive or all, got {method!r}")
