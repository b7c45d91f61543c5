"""``reference-jsonl``: import the reference team's published LLM outputs (no network).

Input (``--from FILE``): a ``predictions.jsonl`` of one run, one JSON object per line with
``custom_id`` (``dataset-index-N``), ``dataset_index`` (0-based row of the dataset's
metadata CSV, every row counted), ``sound_id`` (null where the set has none), ``title``,
``status_code``, ``error`` and ``raw_response`` (priors: a JSON array as text; summaries:
plain text); other fields are ignored.

Matching a line to a clip: by ``sound_id`` (or ``anonymous_id`` where the line has one);
a line without either is matched by ``dataset_index`` to that CSV row, and only if the
row's title equals the line's ``title``. A line that matches nothing, and a clip without
a line, are counted and named in the report (the clip is missing). When several lines
match one clip, the last one wins (as in the reference's loader).

Reading: priors as :func:`extract.llm.reference_answers.parse_reference_prior`; summaries
verbatim, an empty (null) answer being an empty summary. A line with a ``status_code``
other than 200 or with an ``error`` is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cache.taxonomy import NUM_CLASSES

from ..reference_answers import parse_reference_prior
from .base import LocalOutput, LocalProvider, LocalTask, register_provider

SHOW = 10  # how many unmatched lines / clips the report names


def _sha256(path: Path) -> str:
    from cache.provenance import sha256_file

    return sha256_file(path)


def read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; a line that is not a JSON object raises
    naming the file and line."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ValueError(
                    f"{path}: line {n} is not valid JSON ({e.msg}); "
                    "pass the run's predictions.jsonl unmodified"
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}: line {n} is a JSON {type(obj).__name__}, not an object")
            out.append((n, obj))
    return out


def csv_rows(dataset_root: Path) -> list[tuple[str, str]]:
    """(id, title) of every row of the dataset's metadata CSV, in file order (the reference's
    ``dataset_index``)."""
    from cache.manifest import find_metadata_csv, read_csv

    header, rows = read_csv(find_metadata_csv(Path(dataset_root)))
    id_col = "sound_id" if "anonymous_id" not in header else "anonymous_id"
    return [((r.get(id_col) or "").strip(), r.get("title") or "") for r in rows]


def _id_text(v: Any) -> str | None:
    """A line's ``sound_id``/``anonymous_id`` as the clip id text (ints and integral floats)."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip() or None


@dataclass
class Matching:
    """Which line answers which clip, and what matched nothing."""

    line_of: dict[str, dict[str, Any]] = field(default_factory=dict)  # clip id -> line object
    by: dict[str, int] = field(default_factory=lambda: {"id": 0, "dataset_index": 0})
    unmatched: list[str] = field(default_factory=list)  # "line N: why"
    repeated: int = 0


def match_lines(
    lines: list[tuple[int, dict[str, Any]]], ids: list[str], rows: list[tuple[str, str]]
) -> Matching:
    """Match every line to a clip of ``ids`` (see the module docstring)."""
    known = set(ids)
    m = Matching()
    for n, obj in lines:
        cid = _id_text(obj.get("sound_id")) or _id_text(obj.get("anonymous_id"))
        how = "id"
        if cid is not None:
            if cid not in known:
                m.unmatched.append(f"line {n}: id {cid} is not a clip of this dataset")
                continue
        else:
            idx = obj.get("dataset_index")
            if isinstance(idx, bool) or not isinstance(idx, int):
                m.unmatched.append(f"line {n}: no sound_id and no integer dataset_index")
                continue
            if not 0 <= idx < len(rows):
                m.unmatched.append(f"line {n}: dataset_index {idx} outside the CSV's {len(rows)} rows")
                continue
            row_id, row_title = rows[idx]
            title = obj.get("title")
            if title is None or str(title).strip() != row_title.strip():
                m.unmatched.append(
                    f"line {n}: title {str(title)[:40]!r} differs from CSV row {idx} ({row_title[:40]!r})"
                )
                continue
            if row_id not in known:
                m.unmatched.append(f"line {n}: CSV row {idx} (id {row_id or '-'}) is not a usable clip")
                continue
            cid, how = row_id, "dataset_index"
        if cid in m.line_of:
            m.repeated += 1
        m.line_of[cid] = obj
        m.by[how] += 1
    return m


def _failure(obj: dict[str, Any]) -> str:
    """Why a line is a failed request ('' when it is not)."""
    if obj.get("error") is not None:
        return "request failed: " + json.dumps(obj["error"], ensure_ascii=False)[:200]
    if obj.get("status_code") != 200:
        return f"request failed: status_code {obj.get('status_code')}"
    return ""


@register_provider("reference-jsonl")
class ReferenceJsonlProvider(LocalProvider):
    """See module docstring."""

    def _source(self) -> Path:
        if not self.config.from_file:
            raise ValueError(
                "provider reference-jsonl needs the file to import: --from PATH/predictions.jsonl"
            )
        path = Path(self.config.from_file)
        if not path.is_file():
            raise FileNotFoundError(f"--from: no such file {path}")
        return path

    def provenance(self) -> dict[str, Any]:
        path = self._source()
        return {
            "provider": self.name,
            "model": self.model,
            "source_file": str(path.resolve()),
            "source_sha256": _sha256(path),
            "source_run": path.resolve().parent.name,
        }

    def _match(self, task: LocalTask) -> tuple[Matching, dict[str, Any], Path]:
        path = self._source()
        lines = read_lines(path)
        m = match_lines(lines, list(task.ids), csv_rows(task.dataset_root))
        without = [i for i in task.ids if i not in m.line_of]
        report = {
            "file": str(path),
            "lines": len(lines),
            "matched_by_id": m.by["id"],
            "matched_by_dataset_index": m.by["dataset_index"],
            "repeated_lines": m.repeated,
            "unmatched_lines": len(m.unmatched),
            "unmatched_examples": m.unmatched[:SHOW],
            "clips_without_line": len(without),
            "clips_without_line_examples": without[:SHOW],
        }
        return m, report, path

    def priors(self, task: LocalTask) -> LocalOutput:
        m, report, path = self._match(task)
        n = len(task.ids)
        prior = np.zeros((n, NUM_CLASSES), dtype=np.float32)
        missing = np.ones(n, dtype=bool)
        reason, answer = [""] * n, [""] * n
        dropped: dict[str, int] = {}
        for i, cid in enumerate(task.ids):
            obj = m.line_of.get(cid)
            if obj is None:
                reason[i] = f"no line in {path.name}"
                continue
            raw = obj.get("raw_response")
            fail = _failure(obj)
            if fail:
                reason[i] = fail
                continue
            p = parse_reference_prior(raw)
            for _, why in p.dropped:
                dropped[why] = dropped.get(why, 0) + 1
            if p.ok:
                prior[i], missing[i] = p.prior, False
            else:
                reason[i] = "rejected: " + p.reason
                answer[i] = raw if isinstance(raw, str) else json.dumps(raw)
        report["dropped_labels"] = dropped
        return LocalOutput(
            missing=missing,
            reason=reason,
            prior=prior,
            answer=answer,
            report=report,
            attrs={"import": report},
        )

    def summaries(self, task: LocalTask) -> LocalOutput:
        m, report, path = self._match(task)
        n = len(task.ids)
        text = [""] * n
        missing = np.ones(n, dtype=bool)
        reason = [""] * n
        for i, cid in enumerate(task.ids):
            obj = m.line_of.get(cid)
            if obj is None:
                reason[i] = f"no line in {path.name}"
                continue
            fail = _failure(obj)
            raw = obj.get("raw_response")
            if fail:
                reason[i] = fail
            elif raw is None or isinstance(raw, str):
                text[i], missing[i] = raw or "", False  # verbatim; no answer = an empty summary
            else:
                reason[i] = "rejected: raw_response is not text"
        report["empty_summaries"] = sum(1 for i in range(n) if not missing[i] and not text[i])
        return LocalOutput(missing=missing, reason=reason, text=text, report=report, attrs={"import": report})
