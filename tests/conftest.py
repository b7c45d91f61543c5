"""Shared test fixtures: tiny datasets in the real on-disk layout (TASK.md §3)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pytest

LABELLED_HEADER = ("sound_id", "class", "class_idx", "class_top", "confidence", "uploader", "license",
                   "title", "tags", "description")


def labelled_row(sound_id: str, code: str, class_idx: str = "", **fields: str) -> dict[str, str]:
    """One metadata row with plausible text; ``fields`` override any column."""
    row = {"sound_id": sound_id, "class": code, "class_idx": class_idx, "class_top": code.split("-")[0],
           "confidence": "4", "uploader": "someone", "license": "CC0",
           "title": f"clip {sound_id}", "tags": "field-recording,test", "description": "A short clip."}
    row.update(fields)
    return row


def write_dataset(root: Path, rows: Sequence[dict[str, str]], *, name: str = "TEST",
                  header: Sequence[str] | None = None, audio_ids: Iterable[str] | None = None,
                  id_col: str = "sound_id") -> Path:
    """Write ``<root>/metadata/<name>_metadata.csv`` and empty ``audio/<id>.wav`` files.

    ``audio_ids`` defaults to every id in ``rows`` (ids with '/' are skipped).
    """
    root = Path(root)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    header = list(header or (rows[0].keys() if rows else LABELLED_HEADER))
    with open(root / "metadata" / f"{name}_metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    ids = [r.get(id_col, "") for r in rows] if audio_ids is None else list(audio_ids)
    for i in ids:
        if i and "/" not in i and "\\" not in i and i not in (".", ".."):
            (root / "audio" / f"{i}.wav").touch()
    return root


def balanced_rows(n_per_class: int, classes: Sequence[str] | None = None, start: int = 1000) -> list[dict[str, str]]:
    """``n_per_class`` target rows for each class (all 23 by default), ids start, start+1, ..."""
    from cache.taxonomy import CLASSES

    rows, k = [], start
    for code in classes or CLASSES:
        for _ in range(n_per_class):
            rows.append(labelled_row(str(k), code))
            k += 1
    return rows


@pytest.fixture
def row() -> Callable[..., dict[str, str]]:
    """``row(sound_id, code, class_idx="", **fields)`` -> one labelled metadata row."""
    return labelled_row


@pytest.fixture
def balanced() -> Callable[..., list[dict[str, str]]]:
    """``balanced(n_per_class, classes=None, start=1000)`` -> target rows, n per class."""
    return balanced_rows


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``make_dataset(rows, sub="d", **kw)`` -> dataset root under tmp_path (see ``write_dataset``)."""

    def make(rows: Sequence[dict[str, str]], sub: str = "d", **kw) -> Path:
        return write_dataset(tmp_path / sub, rows, **kw)

    return make
