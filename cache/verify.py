"""Integrity checks of a cache store: ``python -m cache verify`` and the damage lines of ``info``.

``verify_store`` reads every chunk that a table says was written and reports, one line each,
metadata files (``zarr.json``) that are not valid JSON, chunk files that are missing, have the
wrong size or cannot be decoded, done chunks of row tables with pending rows or non-finite OK
rows, and tables of another schema version. ``missing_chunk_files`` is the cheap part (file
existence only) that ``python -m cache info`` runs on every table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from .chunks import is_plain, missing_chunks, n_row_chunks, read_chunk
from .errors import SchemaError
from .row_tables import RowWriter
from .schema import EVERY_CHUNK_STORED, _check_table_version
from .store import LOCKS_DIR, Store


@dataclass
class Report:
    """Problems found (one line each), notes (not damage: incomplete tables) and what was checked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: int = 0
    chunks: int = 0


def broken_metadata(path: str | Path) -> list[tuple[Path, str]]:
    """(file, line) for every ``zarr.json`` under the store that is not a valid Zarr v3 node document."""
    out = []
    for f in sorted(Path(path).rglob("zarr.json")):
        try:
            meta = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            out.append(
                (
                    f,
                    f"{f}: not valid JSON ({e}); the store is damaged: "
                    "restore the file or re-create the table",
                )
            )
            continue
        if (
            not isinstance(meta, dict)
            or meta.get("zarr_format") != 3
            or meta.get("node_type") not in ("group", "array")
        ):
            out.append(
                (f, f"{f}: not Zarr v3 metadata (zarr_format 3, node_type group|array); the store is damaged")
            )
    return out


def table_paths(path: str | Path) -> list[str]:
    """Tables found on disk (folders holding ``ids/zarr.json``), without asking zarr to list groups."""
    root = Path(path)
    found = []
    for f in root.rglob("ids/zarr.json"):
        rel = f.parent.parent.relative_to(root).as_posix()
        if rel != "." and not rel.startswith(LOCKS_DIR):
            found.append(rel)
    return sorted(found)


def missing_chunk_files(store: Store, group: str, rows: RowWriter | None = None) -> list[str]:
    """``array 'a': chunk k (path)`` for every chunk file the table says was written that does not
    exist. ``rows``: the table's RowWriter when the caller has it open already."""
    g = store.root[group]
    attrs = dict(g.attrs)
    found: list[tuple[str, list[tuple[int, Path]]]] = []
    if attrs.get("kind") == "rows":
        w = rows or RowWriter(store, group)
        done = w.done_mask()
        for name in ("ids", *w.columns, "status", "error"):
            req = w.required(name, done)
            if req is not None:
                found.append((name, missing_chunks(g[name], req)))
    elif attrs.get("kind") == "table" and attrs.get("complete") and attrs.get(EVERY_CHUNK_STORED):
        for name, arr in g.arrays():
            found.append((name, missing_chunks(arr, np.ones(n_row_chunks(arr), dtype=bool))))
    return [f"array '{name}': chunk {k} ({path})" for name, missing in found for k, path in missing]


def verify_table(store: Store, group: str, report: Report) -> None:
    """Check every chunk of one table that should exist; add problem lines ``<group>: …`` to ``report``."""
    report.tables += 1
    try:
        g = store.root[group]
        attrs = dict(g.attrs)
    except (KeyError, ValueError) as e:
        report.problems.append(f"{group}: cannot be opened ({type(e).__name__}: {e})")
        return
    if "kind" not in attrs:
        report.notes.append(
            f"{group}: creation was interrupted (no 'kind' attribute); its next write recreates it"
        )
        return
    try:
        if attrs.get("kind") == "rows":
            _verify_rows(store, group, report)
        else:
            _verify_whole(store, group, g, attrs, report)
    except SchemaError as e:
        report.problems.append(f"{group}: {e}")


def _verify_rows(store: Store, group: str, report: Report) -> None:
    w = RowWriter(store, group)  # raises SchemaError for another schema version
    flags = w.g["chunk_done"]
    done = np.zeros(w.n_chunks, dtype=bool)
    for k in range(w.n_chunks):
        problem, value = read_chunk(flags, k, required=False)
        report.chunks += 1
        if problem:
            report.problems.append(f"{group}: array 'chunk_done': {problem}")
        else:
            done[k] = bool(np.asarray(value).reshape(-1)[0])
    every = bool(w.attrs.get(EVERY_CHUNK_STORED))
    ids = w.g["ids"]
    ids_plain = is_plain(ids)
    for k in range(n_row_chunks(ids)):
        problem, _ = read_chunk(ids, k, required=every, plain=ids_plain)
        report.chunks += 1
        if problem:
            report.problems.append(f"{group}: array 'ids': {problem}")
    arrays = {n: w.g[n] for n in (*w.columns, "status", "error")}
    plain = {n: is_plain(a) for n, a in arrays.items()}
    for k in np.flatnonzero(done):
        report.chunks += len(arrays)
        report.problems += [f"{group}: {p}" for p in w.chunk_problems(int(k), arrays, plain)]
    if not done.all():
        report.notes.append(
            f"{group}: incomplete ({int((~done).sum())} of {w.n_chunks} chunks to do); "
            "re-run its producer to resume"
        )


def _verify_whole(store: Store, group: str, g: zarr.Group, attrs: dict, report: Report) -> None:
    _check_table_version(store.path, group, attrs)
    if not attrs.get("complete"):
        report.notes.append(f"{group}: incomplete (its write was interrupted); re-run its producer")
        return
    every = bool(attrs.get(EVERY_CHUNK_STORED))
    for name, arr in sorted(g.arrays()):
        plain = is_plain(arr)
        for k in range(n_row_chunks(arr)):
            problem, _ = read_chunk(arr, k, required=every, plain=plain)
            report.chunks += 1
            if problem:
                report.problems.append(f"{group}: array '{name}': {problem}")


def verify_store(path: str | Path) -> Report:
    """Check every table of the store at ``path`` (see the module docstring). Raises FileNotFoundError /
    SchemaError when ``path`` is not a store."""
    report = Report()
    root = Path(path)
    broken = broken_metadata(root)
    report.problems += [line for _, line in broken]
    if any(f.parent == root for f, _ in broken):
        return report  # the store's own metadata: nothing can be opened
    bad = [f.parent for f, _ in broken]
    store = Store(root, mode="r")
    for t in table_paths(root):
        folder = root / t
        if any(b == folder or b.is_relative_to(folder) or folder.is_relative_to(b) for b in bad):
            report.tables += 1  # reported through its zarr.json
            continue
        verify_table(store, t, report)
    return report
