"""Chunk bookkeeping of the extraction runner: the rows of one chunk being filled, written once every
row is decided (ok or failed), and the processing order of the rows of the pending chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cache.row_tables import RowWriter
from cache.schema import FAILED, OK, PENDING


class Chunk:
    """Rows ``lo:hi`` of chunk ``k``: values per column, status, failure reason and warning per row."""

    def __init__(self, k: int, lo: int, hi: int, columns: dict[str, tuple[tuple[int, ...], str]]):
        self.k, self.lo, self.hi = k, lo, hi
        n = hi - lo
        self.values = {
            c: np.zeros((n, *shape), dtype=np.float32 if c in ("audio", "text", "duration") else dtype)
            for c, (shape, dtype) in columns.items()
        }
        self.status = np.full(n, PENDING, dtype=np.uint8)
        self.errors = [""] * n
        self.warnings = [""] * n  # usable but suspicious input (e.g. a truncated file); "" when none

    def warn(self, row: int, text: str) -> None:
        self.warnings[row - self.lo] = text

    def fail(self, row: int, reason: str) -> None:
        i = row - self.lo
        self.status[i] = FAILED
        self.errors[i] = reason
        for v in self.values.values():
            v[i] = 0

    def set(self, row: int, **cols: Any) -> None:
        i = row - self.lo
        for c, v in cols.items():
            self.values[c][i] = v
        self.status[i] = OK

    @property
    def finished(self) -> bool:
        return bool((self.status != PENDING).all())


def open_chunks(writer: RowWriter, pending: Sequence[int]) -> dict[int, Chunk]:
    """An empty :class:`Chunk` for each pending chunk index."""
    return {k: Chunk(k, *writer.chunk_range(k), writer.columns) for k in pending}


def rows_in_order(writer: RowWriter, pending: Sequence[int], key: Callable[[int], float] | None) -> list[int]:
    """The rows of the pending chunks, chunk by chunk; within a chunk by decreasing ``key`` (if given)."""
    rows: list[int] = []
    for k in pending:
        lo, hi = writer.chunk_range(k)
        r = list(range(lo, hi))
        if key is not None:
            r.sort(key=lambda i: -key(i))
        rows += r
    return rows


def check_dtype(chunk: Chunk, dtype: str) -> None:
    """Rows whose finite float32 values overflow the stored dtype, or that are not finite, fail."""
    for c in ("audio", "text"):
        if c not in chunk.values:
            continue
        v = chunk.values[c]
        ok = chunk.status == OK
        finite32 = np.isfinite(v).all(axis=1)
        finite_out = np.isfinite(v.astype(dtype)).all(axis=1)
        for i in np.flatnonzero(ok & ~finite32):
            chunk.fail(chunk.lo + int(i), f"non-finite {c} embedding (NaN/inf) from the backbone")
        for i in np.flatnonzero(ok & finite32 & ~finite_out):
            chunk.fail(chunk.lo + int(i), f"{c} embedding overflows {dtype}; extract with --dtype float32")
