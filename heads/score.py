"""Score a submission file against the truth: ``python -m heads.score --truth T.csv --pred P.csv``.

TRUTH.csv is either ``id,class`` or a dataset metadata CSV (``sound_id`` or ``anonymous_id``
plus ``class``); rows whose class is top-level-only or ``*-other`` are not targets: they
are excluded (with any prediction for them) and counted. PRED.csv is the submission format
(:mod:`heads.submission`): ``id,predicted_bst_second_level_class,prediction_score``.

Every id must be on both sides; otherwise the missing ids are named (exit code 2), as are
unknown classes, duplicate ids and scores outside [0, 1]. Output: the per-class Markdown
table (default) or JSON ``{"hP","hR","hF","per_class","never_predicted","n_items",
"n_non_target_excluded"}`` with ``--json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.metric import CONVENTIONS, HierarchicalScores, format_table, hierarchical_scores
from cache.taxonomy import CLASS_INDEX, LabelKind, UnknownClassError, parse_label

from .submission import HEADER as PRED_COLUMNS

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


def _read_rows(path: Path) -> tuple[list[str], list[int], list[list[str]]]:
    """Header, 1-based data row numbers and rows (blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        if '"' in text:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        else:  # no quoting: a plain split gives what csv.reader would, several times faster
            rows = [line.split(",") if line else [] for line in text.replace("\r\n", "\n").split("\n")]
            if rows and rows[-1] == []:
                rows.pop()
    except FileNotFoundError:
        raise ScoreInputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ScoreInputError(f"{path}: not UTF-8 text ({e})") from None
    except csv.Error as e:
        raise ScoreInputError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise ScoreInputError(f"{path}: empty file (no header)")
    header = [h.strip() for h in rows[0]]
    numbers = [n for n, r in enumerate(rows[1:], start=1) if r]
    data = [r for r in rows[1:] if r]
    return header, numbers, data


def _column(path: Path, header: list[str], numbers: list[int], rows: list[list[str]], name: str) -> list[str]:
    """One column, stripped; a row too short to hold it raises naming the row."""
    k = header.index(name)
    if rows and min(map(len, rows)) <= k:
        n = next(n for n, r in zip(numbers, rows, strict=True) if len(r) <= k)
        raise ScoreInputError(f"{path} row {n}: no value for column '{name}' (row too short)")
    return [r[k].strip() for r in rows]


def _check_ids(path: Path, ids: list[str], numbers: list[int], id_col: str) -> None:
    if len(set(ids)) == len(ids) and "" not in ids:
        return
    seen: dict[str, int] = {}
    for n, cid in zip(numbers, ids, strict=True):
        if not cid:
            raise ScoreInputError(f"{path} row {n}: empty {id_col}")
        if cid in seen:
            raise ScoreInputError(f"{path} row {n}: duplicate id {cid!r} (first on row {seen[cid]})")
        seen[cid] = n


def read_truth(path: str | Path) -> Truth:
    """Read ``id,class`` or a dataset metadata CSV; non-target rows are set aside, unknown classes raise."""
    path = Path(path)
    header, numbers, rows = _read_rows(path)
    id_col = next((c for c in TRUTH_ID_COLUMNS if c in header), None)
    if id_col is None or "class" not in header:
        raise ScoreInputError(
            f"{path}: needs columns 'id,class' (or a dataset metadata CSV with sound_id/anonymous_id "
            f"and class); header is {','.join(header)}"
        )
    ids = _column(path, header, numbers, rows, id_col)
    _check_ids(path, ids, numbers, id_col)
    codes = _column(path, header, numbers, rows, "class")
    idxs = _column(path, header, numbers, rows, "class_idx") if "class_idx" in header else [""] * len(rows)
    pairs = list(zip(codes, idxs, strict=True))
    label_of: dict[tuple[str, str], int] = {}  # parse each distinct (class, class_idx) once: -1 = non-target
    for pair in set(pairs):
        k = pairs.index(pair)
        where = f"{path} row {numbers[k]}"
        try:
            parsed = parse_label(pair[0], pair[1] or None, where=where)
        except UnknownClassError as e:
            raise ScoreInputError(str(e)) from None
        if parsed.kind is LabelKind.MISSING:
            raise ScoreInputError(f"{where} (id {ids[k]!r}): empty class")
        label_of[pair] = parsed.index if parsed.kind is LabelKind.TARGET else -1
    labels = np.fromiter((label_of[q] for q in pairs), dtype=np.int64, count=len(pairs))
    target = labels >= 0
    if not target.any():
        raise ScoreInputError(f"{path}: no row with a target class")
    ids_arr = np.asarray(ids, dtype=object)
    return Truth(ids_arr[target].tolist(), labels[target], set(ids_arr[~target].tolist()))


def read_predictions(path: str | Path) -> Predictions:
    """Read a submission CSV; unknown classes, duplicate ids and bad scores raise naming the row."""
    path = Path(path)
    header, numbers, rows = _read_rows(path)
    missing = [c for c in PRED_COLUMNS[:2] if c not in header]
    if missing:
        raise ScoreInputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected header {','.join(PRED_COLUMNS)}"
        )
    ids = _column(path, header, numbers, rows, "id")
    _check_ids(path, ids, numbers, "id")
    codes = _column(path, header, numbers, rows, "predicted_bst_second_level_class")
    index_of = {c: CLASS_INDEX.get(c.lower(), -1) for c in set(codes)}
    labels = np.fromiter((index_of[c] for c in codes), dtype=np.int64, count=len(codes))
    if (labels < 0).any():
        k = int(np.flatnonzero(labels < 0)[0])
        raise ScoreInputError(
            f"{path} row {numbers[k]} (id {ids[k]!r}): unknown predicted class {codes[k]!r}; "
            "expected one of the 23 BST second-level codes"
        )
    scores = np.full(len(ids), np.nan)
    if "prediction_score" in header:
        raw = _column(path, header, numbers, rows, "prediction_score")
        try:
            scores = np.asarray(raw, dtype=object).astype(np.float64)
        except ValueError:
            k = next(k for k, v in enumerate(raw) if not _is_float(v))
            raise ScoreInputError(
                f"{path} row {numbers[k]} (id {ids[k]!r}): prediction_score {raw[k]!r} is not a number"
            ) from None
        bad = ~((scores >= 0) & (scores <= 1))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ScoreInputError(
                f"{path} row {numbers[k]} (id {ids[k]!r}): prediction_score {raw[k]} outside [0, 1]"
            )
    return Predictions(ids, labels, scores)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def align(
    truth: Truth, pred: Predictions, truth_name: str = "truth", pred_name: str = "predictions"
) -> tuple[np.ndarray, np.ndarray, int]:
    """(truth labels, predicted labels) in truth order, and how many predictions were for non-target rows.

    Raises ScoreInputError naming ids that are on one side only.
    """
    pos = dict(zip(pred.ids, range(len(pred.ids)), strict=True))
    order = np.fromiter((pos.get(cid, -1) for cid in truth.ids), dtype=np.int64, count=len(truth.ids))
    extra = set(pos).difference(truth.ids)
    n_excluded = len(extra & truth.non_target_ids)
    extra -= truth.non_target_ids
    problems = []
    if (order < 0).any():
        no_pred = [truth.ids[k] for k in np.flatnonzero(order < 0)]
        problems.append(
            f"{len(no_pred)} id(s) of {truth_name} have no prediction in {pred_name}: {_short(no_pred)}"
        )
    if extra:
        no_truth = [cid for cid in pred.ids if cid in extra]
        problems.append(f"{len(no_truth)} id(s) of {pred_name} are not in {truth_name}: {_short(no_truth)}")
    if problems:
        raise ScoreInputError("; ".join(problems))
    return truth.labels, pred.labels[order], n_excluded


def score_files(
    truth_path: str | Path, pred_path: str | Path, never_predicted: str = "zero"
) -> HierarchicalScores:
    """Score a submission CSV against a truth CSV (see module docstring); raises ScoreInputError."""
    return _score(truth_path, pred_path, never_predicted)[0]


def _score(truth_path, pred_path, never_predicted: str) -> tuple[HierarchicalScores, dict[str, int]]:
    truth, pred = read_truth(truth_path), read_predictions(pred_path)
    t, p, n_excluded = align(truth, pred, str(truth_path), str(pred_path))
    scores = hierarchical_scores(t, p, never_predicted=never_predicted)
    return scores, {
        "n_items": int(len(t)),
        "n_non_target_excluded": len(truth.non_target_ids),
        "n_predictions_for_non_targets": n_excluded,
    }


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def scores_json(scores: HierarchicalScores, counts: dict[str, int]) -> dict:
    """The ``--json`` document."""
    per_class = {c: {k: _clean(v) for k, v in r.items()} for c, r in scores.per_class.items()}
    return {
        "hP": scores.hP,
        "hR": scores.hR,
        "hF": scores.hF,
        "per_class": per_class,
        "never_predicted": scores.never_predicted,
        **counts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m heads.score", description=__doc__.split("\n")[0])
    ap.add_argument("--truth", required=True, metavar="TRUTH.csv", help="id,class or a dataset metadata CSV")
    ap.add_argument(
        "--pred",
        required=True,
        metavar="PRED.csv",
        help="id,predicted_bst_second_level_class,prediction_score",
    )
    ap.add_argument(
        "--never-predicted",
        default="zero",
        choices=CONVENTIONS,
        help="class in the truth but never predicted: 'zero' (hP=0, default) or 'drop' (official code)",
    )
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
        print(
            f"\n{counts['n_items']} items scored; {counts['n_non_target_excluded']} non-target truth row(s) "
            f"excluded ({counts['n_predictions_for_non_targets']} prediction(s) for them ignored)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
