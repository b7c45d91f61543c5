"""Score a submission file against the truth: ``python -m heads.score --truth T.csv --pred P.csv``.

TRUTH.csv is either ``id,class`` or a dataset metadata CSV (``sound_id`` or ``anonymous_id``
plus ``class``); rows whose class is top-level-only or ``*-other`` are not targets: they
are excluded (with any prediction for them) and counted. PRED.csv is the submission format
of TASK.md §5: ``id,predicted_bst_second_level_class,prediction_score``.

Every id must be on both sides; otherwise the missing ids are named (exit code 2), as are
unknown classes, duplicate ids and scores outside [0, 1]. Output: the per-class Markdown
table (default) or JSON ``{"hP","hR","hF","per_class","never_predicted","n_items",
"n_non_target_excluded"}`` with ``--json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cache.taxonomy import CLASS_INDEX, LabelKind, UnknownClassError, parse_label
from heads.metric import CONVENTIONS, HierarchicalScores, format_table, hierarchical_scores

PRED_COLUMNS = ("id", "predicted_bst_second_level_class", "prediction_score")
TRUTH_ID_COLUMNS = ("id", "sound_id", "anonymous_id")


class ScoreInputError(ValueError):
    """A truth or prediction file cannot be scored; the message names file, row and value."""


@dataclass
class Truth:
    ids: list[str]
    labels: np.ndarray  # (N,) class indices of the target rows
    non_target_ids: set[str]  # rows excluded as top-level-only / -other


@dataclass
class Predictions:
    ids: list[str]
    labels: np.ndarray  # (N,) class indices
    scores: np.ndarray  # (N,) float, NaN when the column is absent


def _short(items: Sequence[str], n: int = 10) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f" … and {len(items) - n} more" if len(items) > n else "")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise ScoreInputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ScoreInputError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise ScoreInputError(f"{path}: empty file (no header)")
    return [h.strip() for h in rows[0]], rows[1:]


def read_truth(path: str | Path) -> Truth:
    """Read ``id,class`` or a dataset metadata CSV; non-target rows are set aside, unknown classes raise."""
    path = Path(path)
    header, rows = _read_rows(path)
    id_col = next((c for c in TRUTH_ID_COLUMNS if c in header), None)
    if id_col is None or "class" not in header:
        raise ScoreInputError(f"{path}: needs columns 'id,class' (or a dataset metadata CSV with sound_id/anonymous_id "
                              f"and class); header is {','.join(header)}")
    ci, ki = header.index(id_col), header.index("class")
    xi = header.index("class_idx") if "class_idx" in header else None
    ids, labels, non_target, seen = [], [], set(), {}
    for n, r in enumerate(rows, start=1):
        if not any(x.strip() for x in r):
            continue
        cid = r[ci].strip() if ci < len(r) else ""
        if not cid:
            raise ScoreInputError(f"{path} row {n}: empty {id_col}")
        if cid in seen:
            raise ScoreInputError(f"{path} row {n}: duplicate id {cid!r} (first on row {seen[cid]})")
        seen[cid] = n
        code = r[ki] if ki < len(r) else ""
        idx = r[xi] if xi is not None and xi < len(r) else None
        try:
            parsed = parse_label(code, idx, where=f"{path} row {n}")
        except UnknownClassError as e:
            raise ScoreInputError(str(e)) from None
        if parsed.kind is LabelKind.MISSING:
            raise ScoreInputError(f"{path} row {n} (id {cid!r}): empty class")
        if parsed.kind is LabelKind.TARGET:
            ids.append(cid)
            labels.append(parsed.index)
        else:
            non_target.add(cid)
    if not ids:
        raise ScoreInputError(f"{path}: no row with a target class")
    return Truth(ids, np.asarray(labels, dtype=np.int64), non_target)


def read_predictions(path: str | Path) -> Predictions:
    """Read a submission CSV; unknown classes, duplicate ids and bad scores raise naming the row."""
    path = Path(path)
    header, rows = _read_rows(path)
    missing = [c for c in PRED_COLUMNS[:2] if c not in header]
    if missing:
        raise ScoreInputError(f"{path}: missing column(s) {', '.join(missing)}; expected header {','.join(PRED_COLUMNS)}")
    ii, pi = header.index("id"), header.index("predicted_bst_second_level_class")
    si = header.index("prediction_score") if "prediction_score" in header else None
    ids, labels, scores, seen = [], [], [], {}
    for n, r in enumerate(rows, start=1):
        if not any(x.strip() for x in r):
            continue
        if len(r) <= max(ii, pi, si or 0):
            raise ScoreInputError(f"{path} row {n}: {len(r)} value(s), header has {len(header)}")
        cid, code = r[ii].strip(), r[pi].strip().lower()
        if cid in seen:
            raise ScoreInputError(f"{path} row {n}: duplicate id {cid!r} (first on row {seen[cid]})")
        seen[cid] = n
        k = CLASS_INDEX.get(code)
        if k is None:
            raise ScoreInputError(f"{path} row {n} (id {cid!r}): unknown predicted class {r[pi]!r}; "
                                  "expected one of the 23 BST second-level codes")
        s = float("nan")
        if si is not None:
            try:
                s = float(r[si])
            except ValueError:
                raise ScoreInputError(f"{path} row {n} (id {cid!r}): prediction_score {r[si]!r} is not a number") from None
            if not (0.0 <= s <= 1.0):
                raise ScoreInputError(f"{path} row {n} (id {cid!r}): prediction_score {s} outside [0, 1]")
        ids.append(cid)
        labels.append(k)
        scores.append(s)
    return Predictions(ids, np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64))


def align(truth: Truth, pred: Predictions, truth_name: str = "truth", pred_name: str = "predictions"
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """(truth labels, predicted labels) in truth order, and how many predictions were for non-target rows.

    Raises ScoreInputError naming ids that are on one side only.
    """
    pos = {cid: k for k, cid in enumerate(pred.ids)}
    no_pred = [cid for cid in truth.ids if cid not in pos]
    known = set(truth.ids)
    no_truth = [cid for cid in pred.ids if cid not in known and cid not in truth.non_target_ids]
    problems = []
    if no_pred:
        problems.append(f"{len(no_pred)} id(s) of {truth_name} have no prediction in {pred_name}: {_short(no_pred)}")
    if no_truth:
        problems.append(f"{len(no_truth)} id(s) of {pred_name} are not in {truth_name}: {_short(no_truth)}")
    if problems:
        raise ScoreInputError("; ".join(problems))
    order = np.fromiter((pos[cid] for cid in truth.ids), dtype=np.int64, count=len(truth.ids))
    n_excluded = sum(1 for cid in pred.ids if cid in truth.non_target_ids)
    return truth.labels, pred.labels[order], n_excluded


def score_files(truth_path: str | Path, pred_path: str | Path, never_predicted: str = "zero") -> HierarchicalScores:
    """Score a submission CSV against a truth CSV (see module docstring); raises ScoreInputError."""
    return _score(truth_path, pred_path, never_predicted)[0]


def _score(truth_path, pred_path, never_predicted: str) -> tuple[HierarchicalScores, dict[str, int]]:
    truth, pred = read_truth(truth_path), read_predictions(pred_path)
    t, p, n_excluded = align(truth, pred, str(truth_path), str(pred_path))
    scores = hierarchical_scores(t, p, never_predicted=never_predicted)
    return scores, {"n_items": int(len(t)), "n_non_target_excluded": len(truth.non_target_ids),
                    "n_predictions_for_non_targets": n_excluded}


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def scores_json(scores: HierarchicalScores, counts: dict[str, int]) -> dict:
    """The ``--json`` document."""
    per_class = {c: {k: _clean(v) for k, v in r.items()} for c, r in scores.per_class.items()}
    return {"hP": scores.hP, "hR": scores.hR, "hF": scores.hF, "per_class": per_class,
            "never_predicted": scores.never_predicted, **counts}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m heads.score", description=__doc__.split("\n")[0])
    ap.add_argument("--truth", required=True, metavar="TRUTH.csv", help="id,class or a dataset metadata CSV")
    ap.add_argument("--pred", required=True, metavar="PRED.csv", help="id,predicted_bst_second_level_class,prediction_score")
    ap.add_argument("--never-predicted", default="zero", choices=CONVENTIONS,
                    help="class in the truth but never predicted: 'zero' (hP=0, default) or 'drop' (official code)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the Markdown table")
    args = ap.parse_args(argv)
    try:
        scores, counts = _score(args.truth, args.pred, args.never_predicted)
    except ScoreInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(scores_json(scores, counts)))
    else:
        print(format_table(scores))
        print(f"\n{counts['n_items']} items scored; {counts['n_non_target_excluded']} non-target truth row(s) "
              f"excluded ({counts['n_predictions_for_non_targets']} prediction(s) for them ignored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
