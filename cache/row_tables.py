"""Row tables of a cache store: large matrices written chunk by chunk (embeddings).

A row table is resumable after a kill and writable by several processes at once: each writes
disjoint, chunk-aligned rows, and per-chunk ``chunk_done`` marks live in separate Zarr chunks so
ranks never touch the same file. :class:`RowWriter` writes, verifies and reads one; ``Store``
creates and opens them (``create_rows`` / ``open_rows``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from .chunks import check_chunk_files, is_plain, n_row_chunks, read_array, read_chunk
from .errors import SchemaError
from .locks import Lease
from .schema import (
    EVERY_CHUNK_STORED,
    OK,
    PENDING,
    WARNING,
    Table,
    _check_table_version,
    _damage_hint,
    _jsonable,
    _store_every_chunk,
    _to_str_array,
    ids_digest,
)

if TYPE_CHECKING:
    from .store import Store


class RowWriter:
    """Chunked, resumable writer/reader of one row table.

    A writer made by ``create_rows`` (or ``open_rows(lock=True)``) holds the table's writer lock
    until ``finalize()`` or ``close()`` (or the end of the process).
    """

    def __init__(self, store: Store, group: str, lease: Lease | None = None):
        self.store = store
        self.group = group
        self._lease = lease
        self.g = store._group(group)
        a = self.attrs = dict(self.g.attrs)
        _check_table_version(store.path, group, a)
        if a.get("kind") != "rows":
            raise SchemaError(
                f"'{group}' is not a row table"
                + (" (its creation was interrupted; re-run its producer)" if "kind" not in a else "")
            )
        self.n_rows = int(a["n_rows"])
        self.chunk_rows = int(a["chunk_rows"])
        self.columns = {k: (tuple(v[0]), v[1]) for k, v in a["columns"].items()}
        self.n_chunks = max(1, -(-self.n_rows // self.chunk_rows))

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.g["ids"][...], dtype=object)

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_rows, min(self.n_rows, (k + 1) * self.chunk_rows)

    def done_mask(self) -> np.ndarray:
        return read_array(self.g["chunk_done"]).astype(bool, copy=False)

    def pending_chunks(self, rank: int = 0, world_size: int = 1) -> list[int]:
        """Chunks not yet done that belong to ``rank`` (chunk k goes to rank k % world_size)."""
        done = self.done_mask()
        return [k for k in range(self.n_chunks) if not done[k] and k % world_size == rank]

    def close(self) -> None:
        """Release the writer lock (if this writer holds it); finalize() calls it."""
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def has_warnings(self) -> bool:
        """Whether the table has the ``warning`` array (tables created before it was added do not)."""
        return WARNING in self.g

    def write_chunk(
        self,
        k: int,
        values: Mapping[str, np.ndarray],
        status: np.ndarray,
        errors: Sequence[str],
        warnings: Sequence[str] | None = None,
    ) -> None:
        """Write all rows of chunk ``k``; the chunk is marked done only after every write returned.

        ``warnings`` (one string per row, "" for none) go to the ``warning`` array when the table has
        it (see :attr:`has_warnings`); without them the chunk's warnings are cleared."""
        lo, hi = self.chunk_range(k)
        n = hi - lo
        status = np.asarray(status, dtype=np.uint8)
        if len(status) != n or len(errors) != n:
            raise ValueError(f"chunk {k} of '{self.group}' needs {n} rows, got {len(status)}")
        with _store_every_chunk():  # arrays opened here store all-fill chunks too
            for name, (shape, dtype) in self.columns.items():
                v = np.asarray(values[name], dtype=dtype)
                if v.shape != (n, *shape):
                    raise ValueError(
                        f"chunk {k} of '{self.group}': column '{name}' has shape {v.shape}, "
                        f"expected {(n, *shape)}"
                    )
                self.g[name][lo:hi] = v
            self.g["error"][lo:hi] = _to_str_array(errors)
            if self.has_warnings:
                warnings = [""] * n if warnings is None else warnings
                if len(warnings) != n:
                    raise ValueError(f"chunk {k} of '{self.group}' needs {n} warnings, got {len(warnings)}")
                self.g[WARNING][lo:hi] = _to_str_array(warnings)
            self.g["status"][lo:hi] = status
            self.g["chunk_done"][k] = True

    # -- integrity ---------------------------------------------------------------------------
    def required(self, name: str, done: np.ndarray | None = None) -> np.ndarray | None:
        """Per chunk of array ``name``: True where its chunk file must exist (None: not known).

        Tables with ``every_chunk_stored`` store every chunk of a done chunk (``ids``: every
        chunk); older tables may lack all-fill chunks, but ``status`` of a done chunk is never
        all PENDING, so its file always exists.
        """
        every = bool(self.attrs.get(EVERY_CHUNK_STORED))
        if name == "chunk_done" or (not every and name != "status"):
            return None
        if name == "ids":
            return np.ones(self.n_chunks, dtype=bool)
        return self.done_mask() if done is None else done

    def _where(self, name: str) -> str:
        return f"table '{self.group}' in {self.store.path}, array '{name}'"

    def chunk_problems(
        self, k: int, arrays: Mapping[str, zarr.Array] | None = None, plain: Mapping[str, bool] | None = None
    ) -> list[str]:
        """What is wrong with chunk ``k`` as a done chunk: a chunk file of a column, ``status`` or
        ``error`` missing, of the wrong size or undecodable; a PENDING row; an OK row not finite.
        (``arrays`` and their ``plain`` flags, when checking many chunks, are looked up once.)"""
        arrays = arrays or {n: self.g[n] for n in (*self.columns, "status", "error")}
        plain = plain or {}
        every = bool(self.attrs.get(EVERY_CHUNK_STORED))
        lo, hi = self.chunk_range(k)
        problems, values = [], {}
        for name, arr in arrays.items():
            problem, values[name] = read_chunk(arr, k, every or name == "status", plain.get(name))
            if problem:
                problems.append(f"array '{name}': {problem}")
        if problems:
            return problems
        st = np.asarray(values["status"])
        if np.any(st == PENDING):
            return [
                f"chunk {k} (rows {lo}-{hi - 1}) is marked done but has "
                f"{int((st == PENDING).sum())} pending row(s)"
            ]
        ok = st == OK
        for name in self.columns:
            if ok.any() and not np.all(np.isfinite(np.asarray(values[name])[ok])):
                problems.append(f"array '{name}': chunk {k} has non-finite values in OK rows")
        return problems

    def verify(self, chunks: Sequence[int] | None = None) -> list[int]:
        """Re-check every chunk marked done (or those of ``chunks`` that are; see :meth:`chunk_problems`);
        un-mark the bad ones (and the table's ``complete`` flag) so that they are recomputed, and return
        them."""
        done = self.done_mask()
        if chunks is not None:
            done &= np.isin(np.arange(len(done)), np.asarray(list(chunks), dtype=np.int64))
        arrays = {n: self.g[n] for n in (*self.columns, "status", "error")}
        plain = {n: is_plain(a) for n, a in arrays.items()}
        bad = [int(k) for k in np.flatnonzero(done) if self.chunk_problems(int(k), arrays, plain)]
        if bad:
            for k in bad:
                self.g["chunk_done"][k] = False
            if self.attrs.get("complete"):
                self.g.attrs.update({"complete": False})
                self.attrs["complete"] = False
        return bad

    def repair_ids(self, ids: Sequence[str]) -> bool:
        """Rewrite the ``ids`` array from ``ids`` (the table's own, same digest) when a chunk file of it is
        missing or damaged; True when it did."""
        arr = self.g["ids"]
        required, plain = self.required("ids") is not None, is_plain(arr)
        if all(read_chunk(arr, k, required, plain)[0] is None for k in range(n_row_chunks(arr))):
            return False
        ids = _to_str_array(ids)
        if ids_digest(ids) != self.attrs.get("ids_sha256"):
            raise SchemaError(f"table '{self.group}': the ids given are not the table's ids")
        with _store_every_chunk():
            self.g["ids"][...] = ids
        return True

    @property
    def complete(self) -> bool:
        return bool(self.done_mask().all())

    def finalize(self, attrs: Mapping[str, Any] | None = None) -> None:
        """Mark the table complete (call once every chunk is done) and release the writer lock."""
        if not self.complete:
            missing = int((~self.done_mask()).sum())
            raise SchemaError(f"table '{self.group}' still has {missing} unfinished chunk(s)")
        meta = dict(attrs or {})
        meta["complete"] = True
        self.g.attrs.update(_jsonable(meta))
        self.attrs.update(_jsonable(meta))
        self.close()

    def column(self, name: str, done: np.ndarray | None = None) -> np.ndarray:
        """Array ``name`` whole (rows of chunks not done hold the fill value); a missing chunk file
        of a done chunk raises :class:`MissingChunkError`. ``done``: :meth:`done_mask`, if known."""
        done = self.done_mask() if done is None else done
        hint = _damage_hint(self.store.path, rows=True)
        return read_array(self.g[name], self.required(name, done), self._where(name), hint)

    def read(self, ids: Sequence[str] | None = None, names: Sequence[str] | None = None) -> Table:
        """Read the table. ``status`` and ``error`` come along; rows not OK are the caller's to mask.

        A chunk file of a done chunk that is missing raises :class:`MissingChunkError`."""
        done = self.done_mask()
        if not done.all():
            raise SchemaError(
                f"table '{self.group}' in {self.store.path} is incomplete "
                f"({int((~done).sum())} of {self.n_chunks} chunks missing); re-run its producer to resume"
            )
        hint = _damage_hint(self.store.path, rows=True)
        wanted = list(self.columns) if names is None else list(names)
        arrays = {n: self.column(n, done) for n in (*wanted, "status")}
        err, ids_arr = self.g["error"], self.g["ids"]
        check_chunk_files(err, self.required("error", done), self._where("error"), hint)
        check_chunk_files(ids_arr, self.required("ids", done), self._where("ids"), hint)
        arrays["error"] = np.asarray(err[...], dtype=object)
        if self.has_warnings:
            arrays[WARNING] = np.asarray(self.g[WARNING][...], dtype=object)
        t = Table(self.group, np.asarray(ids_arr[...], dtype=object), arrays, dict(self.g.attrs))
        return t.align(ids) if ids is not None else t
