"""Tiny datasets in the real BSD layout, for tests and benchmarks.

``<root>/metadata/<NAME>_metadata.csv`` with the columns the manifest reader requires
(``cache.manifest.LABELLED_COLUMNS`` / ``UNLABELLED_REQUIRED``) and ``<root>/audio/<id>.wav``
(empty placeholders from :func:`write_dataset`, real PCM from :func:`write_wav`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from cache.manifest import LABELLED_COLUMNS, UNLABELLED_REQUIRED
from cache.taxonomy import CLASSES

__all__ = [
    "LABELLED_COLUMNS",
    "UNLABELLED_REQUIRED",
    "labelled_row",
    "unlabelled_row",
    "balanced_rows",
    "write_metadata",
    "write_dataset",
    "write_wav",
]


def labelled_row(sound_id: str, code: str, class_idx: str = "", **fields: str) -> dict[str, str]:
    """One labelled metadata row (columns in ``LABELLED_COLUMNS`` order) with plausible text;
    ``fields`` override any column."""
    row = {
        "sound_id": str(sound_id),
        "class": code,
        "class_idx": class_idx,
        "class_top": code.split("-")[0],
        "confidence": "4",
        "uploader": "someone",
        "license": "CC0",
        "title": f"clip {sound_id}",
        "tags": "field-recording,test",
        "description": "A short clip.",
    }
    row.update(fields)
    return row


def unlabelled_row(
    anonymous_id: str, title: str = "", tags: str = "", description: str = ""
) -> dict[str, str]:
    """One evaluation-set row (``UNLABELLED_REQUIRED`` columns)."""
    return dict(zip(UNLABELLED_REQUIRED, (str(anonymous_id), title, tags, description), strict=True))


def balanced_rows(
    n_per_class: int, classes: Sequence[str] | None = None, start: int = 1000
) -> list[dict[str, str]]:
    """``n_per_class`` target rows for each class (all 23 by default), ids start, start+1, ..."""
    rows, k = [], start
    for code in classes or CLASSES:
        for _ in range(n_per_class):
            rows.append(labelled_row(str(k), code))
            k += 1
    return rows


def write_metadata(
    root: str | Path, rows: Sequence[dict[str, str]], name: str = "TEST", header: Sequence[str] | None = None
) -> Path:
    """Write ``<root>/metadata/<name>_metadata.csv``; return its path.

    ``header`` defaults to the first row's keys (``LABELLED_COLUMNS`` when there are no rows);
    keys of a row outside ``header`` are left out.
    """
    path = Path(root) / "metadata" / f"{name}_metadata.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(header or (rows[0].keys() if rows else LABELLED_COLUMNS))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def write_dataset(
    root: str | Path,
    rows: Sequence[dict[str, str]],
    *,
    name: str = "TEST",
    header: Sequence[str] | None = None,
    audio_ids: Iterable[str] | None = None,
    id_col: str = "sound_id",
) -> Path:
    """Write the metadata CSV (see :func:`write_metadata`) and empty ``audio/<id>.wav`` files; return
    ``root``.

    ``audio_ids`` defaults to every id in ``rows`` (ids with '/' are skipped).
    """
    root = Path(root)
    write_metadata(root, rows, name, header)
    (root / "audio").mkdir(exist_ok=True)
    ids = [r.get(id_col, "") for r in rows] if audio_ids is None else list(audio_ids)
    for i in ids:
        if i and "/" not in i and "\\" not in i and i not in (".", ".."):
            (root / "audio" / f"{i}.wav").touch()
    return root


def write_wav(root: str | Path, clip_id: str, x: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``x`` ((T,) or (T, channels) float) as ``<root>/audio/<clip_id>.wav``; return its path."""
    path = Path(root) / "audio" / f"{clip_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, rate, subtype=subtype)
    return path
