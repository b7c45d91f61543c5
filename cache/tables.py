"""The table kinds of a cache store: each kind's path, reader and writer (schema v1, ``cache/SCHEMA.md``).

This module is the only place that builds table paths. Kinds and their columns (keyed by clip id):

- ``embeddings/<backbone>@<hash8>[~<text-source>]``: ``audio`` and/or ``text`` (N, D), ``duration``,
  ``status``, ``error`` (resumable row tables written by the extraction runner);
- ``llm/priors/<name>``: ``prior`` (N, 23) float32, ``missing`` bool (+ ``reason``, ``answer``);
- ``llm/summaries/<name>``: ``text`` str, ``missing`` bool (+ ``reason``);
- ``logits/<run>``: ``logits`` (N, 23) float32;
- ``pseudo_labels/<name>``: ``probs`` (N, 23) float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .store import Store
from .taxonomy import NUM_CLASSES

EMBEDDINGS = "embeddings"
PRIORS = "llm/priors"
SUMMARIES = "llm/summaries"
LOGITS = "logits"
PSEUDO_LABELS = "pseudo_labels"
KINDS = (EMBEDDINGS, PRIORS, SUMMARIES, LOGITS, PSEUDO_LABELS)


# ------------------------------------------------------------------------------------------ paths
def embeddings_path(backbone: str, hash8: str, text_source: str | None = None) -> str:
    """``embeddings/<backbone>@<hash8>[~<text-source>]``; hash8 is ``none`` (weight-free) or ``random``."""
    return f"{EMBEDDINGS}/{backbone}@{hash8}" + (f"~{text_source}" if text_source else "")


def priors_path(name: str) -> str:
    return f"{PRIORS}/{name}"


def summaries_path(name: str) -> str:
    return f"{SUMMARIES}/{name}"


def llm_path(kind: str, name: str) -> str:
    """``llm/priors/<name>`` or ``llm/summaries/<name>`` for kind ``priors`` / ``summaries``."""
    if kind not in ("priors", "summaries"):
        raise ValueError(f"LLM table kind must be 'priors' or 'summaries', not {kind!r}")
    return priors_path(name) if kind == "priors" else summaries_path(name)


def logits_path(run: str) -> str:
    return f"{LOGITS}/{run}"


def pseudo_labels_path(name: str) -> str:
    return f"{PSEUDO_LABELS}/{name}"


def table_names(store: Store, kind: str) -> list[str]:
    """Names of the tables of one kind (``kind`` one of :data:`KINDS`), without the kind's prefix."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r}; one of {', '.join(KINDS)}")
    return [t.removeprefix(kind + "/") for t in store.tables(kind)]


def name_of(path: str, kind: str) -> str:
    """The name part of a table path of ``kind`` (``logits/a/b`` → ``a/b``)."""
    if not path.startswith(kind + "/"):
        raise ValueError(f"{path!r} is not a {kind} table")
    return path[len(kind) + 1 :]


# ---------------------------------------------------------------------------------------- readers
def read_priors(store: Store, name: str, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 23) float32 prior and (N,) bool missing mask for ``ids`` from ``llm/priors/<name>``."""
    t = store.read_table(priors_path(name), ids=ids)
    return np.asarray(t["prior"], dtype=np.float32), np.asarray(t["missing"], dtype=bool)


def read_summaries(store: Store, name: str, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Summary texts and (N,) bool missing mask for ``ids`` from ``llm/summaries/<name>``."""
    t = store.read_table(summaries_path(name), ids=ids)
    return [str(s) for s in t["text"]], np.asarray(t["missing"], dtype=bool)


def read_pseudo_labels(store: Store, name: str, ids: Sequence[str]) -> np.ndarray:
    """(N, 23) float32 pseudo-label distributions from ``pseudo_labels/<name>``."""
    return np.asarray(store.read_table(pseudo_labels_path(name), ids=ids)["probs"], dtype=np.float32)


def read_logits(store: Store, run: str, ids: Sequence[str]) -> np.ndarray:
    """(N, 23) float32 logits for ``ids`` from ``logits/<run>``."""
    return np.asarray(store.read_table(logits_path(run), ids=ids)["logits"], dtype=np.float32)


# ---------------------------------------------------------------------------------------- writers
def _class_matrix(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != NUM_CLASSES:
        raise ValueError(f"{what} must be (N, {NUM_CLASSES}), got {values.shape}")
    return values


def write_logits(
    store: Store, run: str, ids: Sequence[str], logits: np.ndarray, attrs: Mapping[str, Any] | None = None
) -> str:
    """Write ``logits/<run>`` (ids, logits (N, 23) float32); returns the table path."""
    path = logits_path(run)
    store.write_table(path, list(ids), {"logits": _class_matrix(logits, "logits")}, attrs=attrs)
    return path


def write_pseudo_labels(
    store: Store, name: str, ids: Sequence[str], probs: np.ndarray, attrs: Mapping[str, Any] | None = None
) -> str:
    """Write ``pseudo_labels/<name>`` (ids, probs (N, 23) float32); returns the table path."""
    path = pseudo_labels_path(name)
    store.write_table(path, list(ids), {"probs": _class_matrix(probs, "pseudo-labels")}, attrs=attrs)
    return path


def write_priors(
    store: Store,
    name: str,
    ids: Sequence[str],
    prior: np.ndarray,
    missing: np.ndarray,
    extra: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """Write ``llm/priors/<name>``: prior (N, 23) float32, missing (N,) bool and any ``extra`` columns."""
    path = priors_path(name)
    arrays = {
        "prior": _class_matrix(np.asarray(prior).reshape(len(ids), NUM_CLASSES), "priors"),
        "missing": np.asarray(missing, dtype=bool),
        **(extra or {}),
    }
    store.write_table(path, list(ids), arrays, attrs=attrs)
    return path


def write_summaries(
    store: Store,
    name: str,
    ids: Sequence[str],
    texts: Sequence[str],
    missing: np.ndarray,
    extra: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """Write ``llm/summaries/<name>``: text (str), missing (N,) bool and any ``extra`` columns."""
    path = summaries_path(name)
    arrays = {"text": list(texts), "missing": np.asarray(missing, dtype=bool), **(extra or {})}
    store.write_table(path, list(ids), arrays, attrs=attrs)
    return path
