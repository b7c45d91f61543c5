"""Parsing and normalisation of LLM answers.

Priors: the answer may be an array of ``{label, probability}`` objects, an object mapping
label -> probability, either one wrapped in ``{"labels": ...}``, inside a fenced code
block, or a leading JSON value followed by prose. Labels are mapped to class codes
(case/whitespace/underscore variants, class names, ``"fx-a (animals)"``); ``other``,
``<top>-other``, top-level-only and unknown labels and non-positive or non-numeric
probabilities are dropped (each drop recorded), and the rest is renormalised over the 23
classes. An answer with nothing usable yields ``prior=None`` and a reason; it is never
turned into zeros.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cache.taxonomy import CLASS_INDEX, CLASS_NAMES, NUM_CLASSES, TOP_LEVEL_NAMES, TOP_LEVELS

_FENCE_RE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_WS_RE = re.compile(r"\s+")
LABEL_KEYS = ("label", "class", "code", "category", "name", "class_code")
PROB_KEYS = ("probability", "prob", "p", "score", "confidence", "likelihood", "weight", "value")
WRAPPER_KEYS = (
    "labels",
    "predictions",
    "probabilities",
    "classes",
    "prior",
    "priors",
    "scores",
    "result",
    "results",
    "answer",
    "distribution",
)


# ---------------------------------------------------------------------------- label mapping
def _norm(s: str) -> str:
    s = _WS_RE.sub(" ", str(s).strip().strip("\"'`*").lower())
    s = s.replace("_", "-")
    s = re.sub(r"\s*-\s*", "-", s)
    return s


def _name_key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


class LabelMapper:
    """Maps what an LLM writes as a label to a class code, or says why it cannot."""

    def __init__(self, extra_names: Mapping[str, str] | None = None):
        self.names: dict[str, str] = {}
        for code, name in CLASS_NAMES.items():
            self.names[_name_key(name)] = code
        for code, name in (extra_names or {}).items():
            if name and code in CLASS_INDEX:
                self.names.setdefault(_name_key(name), code)

    def map(self, label: Any) -> tuple[str | None, str]:
        """(code, '') or (None, why) with why in {'other', 'top-level', 'unknown'}."""
        if not isinstance(label, str):
            return None, "unknown"
        if label in CLASS_INDEX:
            return label, ""
        if label == "other":
            return None, "other"
        s = _norm(label)
        if s in CLASS_INDEX:
            return s, ""
        if s in ("other", "others", "none", "unknown", "n/a", "rest", "remaining") or s.endswith("-other"):
            return None, "other"
        # "fx-a (animals)", "fx-a: animals", "fx-a animals"
        m = re.match(r"^([a-z]{1,2}-[a-z]{1,2})\b", s)
        if m and m.group(1) in CLASS_INDEX:
            return m.group(1), ""
        key = _name_key(s)
        if key in self.names:
            return self.names[key], ""
        # "Sound effects: animals", "fx / animals"
        for sep in (":", "/", ">", "|"):
            if sep in s:
                tail = _name_key(s.rsplit(sep, 1)[1])
                if tail in self.names:
                    return self.names[tail], ""
        if s in TOP_LEVELS or key in {_name_key(v) for v in TOP_LEVEL_NAMES.values()}:
            return None, "top-level"
        return None, "unknown"


_DEFAULT_MAPPER = LabelMapper()


# ---------------------------------------------------------------------------- JSON extraction
class AnswerError(ValueError):
    """No JSON value could be read from an answer."""


def _unclosed(s: str) -> bool:
    """True if ``s`` ends inside a string or with unclosed brackets (a cut-off answer)."""
    depth, in_str, esc = 0, False, False
    for ch in s:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
    return in_str or depth > 0


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: inside a fenced block if any, else starting at the
    first ``{`` or ``[`` (prose before or after it is ignored). Raises AnswerError with the
    reason ('empty answer', 'truncated JSON …', 'malformed JSON …', 'no JSON value found')."""
    if text is None or not str(text).strip():
        raise AnswerError("empty answer")
    text = str(text)
    if text.lstrip()[:1] in ("{", "["):  # fast path: the whole answer is one JSON value
        try:
            return json.loads(text)
        except ValueError:
            pass
    candidates = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
    errors = []
    decoder = json.JSONDecoder()
    for cand in candidates:
        start = next((i for i, ch in enumerate(cand) if ch in "[{"), None)
        if start is None:
            continue
        try:
            value, _ = decoder.raw_decode(cand, start)
            return value
        except json.JSONDecodeError as e:
            kind = "truncated JSON" if _unclosed(cand[start:]) else "malformed JSON"
            errors.append(f"{kind} ({e.msg} at char {e.pos})")
    raise AnswerError(errors[0] if errors else "no JSON value found")


def _to_prob(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        pct = s.endswith("%")
        try:
            x = float(s.rstrip("%").strip())
        except ValueError:
            return None
        return x / 100 if pct else x
    return None


def _pairs(value: Any, depth: int = 0) -> list[tuple[Any, Any]]:
    """(label, probability) pairs from the JSON forms LLMs produce."""
    if depth > 3:
        return []
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, Mapping):
                lk = next((k for k in item if str(k).lower() in LABEL_KEYS), None)
                pk = next((k for k in item if str(k).lower() in PROB_KEYS), None)
                if lk is not None:
                    out.append((item[lk], item[pk] if pk is not None else None))
                elif len(item) == 1:  # [{"fx-a": 0.7}, ...]
                    out.extend(item.items())
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                out.append((item[0], item[1]))
            elif isinstance(item, str):
                out.append((item, None))
        return out
    if isinstance(value, Mapping):
        for k in value:
            if str(k).lower() in WRAPPER_KEYS and isinstance(value[k], (list, Mapping)):
                return _pairs(value[k], depth + 1)
        lk = next((k for k in value if str(k).lower() in LABEL_KEYS), None)
        pk = next((k for k in value if str(k).lower() in PROB_KEYS), None)
        if lk is not None and pk is not None:  # a single {"label":..., "probability":...}
            return [(value[lk], value[pk])]
        return list(value.items())
    return []


# ---------------------------------------------------------------------------- priors
@dataclass
class PriorParse:
    """Outcome of parsing one prior answer."""

    prior: np.ndarray | None  # (23,) float32 summing to 1, or None when unusable
    reason: str = ""  # why the answer is unusable ('' when usable)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (label as written, why)

    @property
    def ok(self) -> bool:
        return self.prior is not None


def parse_prior(text: str | None, mapper: LabelMapper | None = None) -> PriorParse:
    """Parse one answer into a normalised (23,) prior, or say why it is unusable."""
    mapper = mapper or _DEFAULT_MAPPER
    try:
        value = extract_json(text or "")
    except AnswerError as e:
        return PriorParse(None, str(e))
    pairs = _pairs(value)
    if not pairs:
        return PriorParse(None, "no (label, probability) entries in the JSON answer")
    mass = np.zeros(NUM_CLASSES, dtype=np.float64)
    dropped: list[tuple[str, str]] = []
    for label, p in pairs:
        code, why = mapper.map(label)
        if code is None:
            dropped.append((str(label), why))
            continue
        prob = _to_prob(p)
        if prob is None or not math.isfinite(prob):
            dropped.append((str(label), "non-numeric"))
            continue
        if prob <= 0:
            dropped.append((str(label), "non-positive"))
            continue
        mass[CLASS_INDEX[code]] += prob
    total = mass.sum()
    if total <= 0:
        whys = {w for _, w in dropped}
        if whys and whys <= {"other"}:
            reason = "only 'other'"
        elif whys & {"unknown", "top-level"} and not whys & {"non-positive", "non-numeric"}:
            reason = "no known class labels"
        else:
            reason = "no positive probability on a known class"
        return PriorParse(None, reason, dropped)
    return PriorParse((mass / total).astype(np.float32), "", dropped)


# ---------------------------------------------------------------------------- summaries
@dataclass
class SummaryParse:
    text: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


def parse_summary(text: str | None, max_chars: int = 1000) -> SummaryParse:
    """The summary sentence(s) from an answer: ``{"summary": ...}``, a JSON string, or plain
    text (fences removed). Empty → unusable."""
    raw = (text or "").strip()
    if not raw:
        return SummaryParse(None, "empty answer")
    fence = _FENCE_RE.search(raw)
    if fence:
        raw = fence.group(1).strip()
    value: Any = raw
    if raw.startswith('"'):
        try:
            value = str(json.loads(raw))
        except ValueError:
            value = raw.strip('"')
    elif raw.startswith(("{", "[")):
        try:
            value = extract_json(raw)
        except AnswerError as e:
            return SummaryParse(None, str(e))
    if isinstance(value, Mapping):
        key = next(
            (k for k in value if str(k).lower() in ("summary", "description", "text", "caption")), None
        )
        if key is None:
            return SummaryParse(None, "JSON answer without a 'summary' field")
        value = value[key]
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return SummaryParse(None, "summary is not text")
    s = _WS_RE.sub(" ", value).strip()
    if not s:
        return SummaryParse(None, "empty summary")
    return SummaryParse(s[:max_chars])


def count_drops(parses: Iterable[PriorParse]) -> dict[str, int]:
    """How many label entries were dropped, by reason, over many parses."""
    out: dict[str, int] = {}
    for p in parses:
        for _, why in p.dropped:
            out[why] = out.get(why, 0) + 1
    return out
