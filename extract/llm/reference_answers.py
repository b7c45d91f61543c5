"""Answers in the CP-JKU reference format, read the way the reference's training code reads them.

A prior answer is a JSON array of ``{"label": <class code or "other">, "probability": <number>}``
objects; a summary answer is plain text. These rules are used by the ``reference-jsonl``
provider (importing the reference's published outputs) and by the ``cpjku`` prompt template.

Prior rules (the reference's training-time reading):

* the answer must decode as JSON and be a **list**; anything else (an object, a string, a
  number, invalid JSON) is unusable;
* list items that are not objects are skipped; an item is dropped when its label is not a
  string, is ``other``, or is not one of the 23 class codes exactly as written (``fx-a``;
  no case or spelling repair), or when its probability is not a number or is not positive;
* a label given twice keeps its **last** probability (it is not summed);
* what is left is divided by its sum; nothing left → unusable.

One deliberate difference: a non-finite probability (``NaN``/``Infinity``, which Python's
JSON reader accepts) is dropped instead of poisoning the whole prior.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from cache.taxonomy import CLASS_INDEX, NUM_CLASSES

from .parsing import PriorParse, SummaryParse


def normalise_answer(text: str | None) -> str | None:
    """An answer as the reference's download step keeps it: stripped; empty → None; a whole
    JSON value unchanged; a leading JSON value followed by prose → that value re-serialised;
    otherwise None."""
    if not isinstance(text, str):
        return None
    raw = text.strip()
    if not raw:
        return None
    try:
        json.loads(raw)
        return raw
    except ValueError:
        pass
    try:
        value, end = json.JSONDecoder().raw_decode(raw)
    except ValueError:
        return None
    return json.dumps(value, ensure_ascii=False) if raw[end:].strip() else raw


def prior_from_list(value: Any) -> PriorParse:
    """A decoded answer (must be a list) → normalised (23,) prior, or why it is unusable."""
    if not isinstance(value, list):
        return PriorParse(None, f"not a JSON list (a JSON {type(value).__name__})")
    prior = np.zeros(NUM_CLASSES, dtype=np.float64)
    seen = np.zeros(NUM_CLASSES, dtype=bool)
    dropped: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            dropped.append((str(item)[:40], "not an object"))
            continue
        label, p = item.get("label"), item.get("probability")
        if label == "other":
            dropped.append(("other", "other"))
            continue
        if not isinstance(label, str) or label not in CLASS_INDEX:
            dropped.append((str(label), "unknown"))
            continue
        # the reference accepts any int or float here (so also true/false, as Python sees them)
        if not isinstance(p, (int, float)) or not math.isfinite(float(p)):
            dropped.append((label, "non-numeric"))
            continue
        if float(p) <= 0.0:
            dropped.append((label, "non-positive"))
            continue
        k = CLASS_INDEX[label]
        prior[k] = float(p)  # a repeated label keeps its last value
        seen[k] = True
    total = prior.sum()
    if not seen.any() or total <= 0:
        whys = {w for _, w in dropped}
        reason = "only 'other'" if whys == {"other"} else "no usable label"
        return PriorParse(None, reason, dropped)
    return PriorParse((prior / total).astype(np.float32), "", dropped)


def parse_reference_prior(raw: str | None) -> PriorParse:
    """A stored reference answer (``raw_response``) → prior; the text must be exactly JSON."""
    if raw is None:
        return PriorParse(None, "no answer")
    if not isinstance(raw, str):
        return PriorParse(None, "answer is not text")
    try:
        value = json.loads(raw)
    except ValueError:
        return PriorParse(None, "not JSON")
    return prior_from_list(value)


def parse_live_prior(text: str | None) -> PriorParse:
    """A fresh answer to the ``cpjku`` prior prompt: normalised as the reference's download
    step does (leading JSON value kept, trailing prose dropped), then read as above."""
    norm = normalise_answer(text)
    if norm is None:
        return PriorParse(None, "empty answer" if not (text or "").strip() else "not JSON")
    return parse_reference_prior(norm)


def parse_text_summary(text: str | None) -> SummaryParse:
    """A plain-text summary, kept verbatim (surrounding whitespace stripped); an empty answer is
    an empty summary, not a failure."""
    return SummaryParse((text or "").strip())
