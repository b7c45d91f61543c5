"""Reader and writer of cache stores (schema v1, see ``cache/SCHEMA.md``).

A store is one Zarr group per dataset. Inside it, every producer owns *tables*: groups
that hold an ``ids`` array (clip ids, strings) plus row-aligned arrays, and provenance
attributes. Two kinds of tables exist:

* **whole tables** (``write_table``): written in one go (priors, summaries, logits,
  pseudo-labels); the ``complete`` attribute is set last, so a killed write is never
  mistaken for a finished one.
* **row tables** (``create_rows`` / ``RowWriter``): large matrices written chunk by chunk
  (embeddings), resumable after a kill and writable by several processes at once (each
  writes disjoint, chunk-aligned rows; per-chunk ``chunk_done`` marks live in separate
  Zarr chunks so ranks never touch the same file).

Readers join by clip id and refuse stores of another schema version. A table has one writer
at a time (an OS lock under ``<store>/.locks/``, see ``cache.locks``); a chunk that the table
says was written but whose file is missing raises :class:`MissingChunkError` instead of
reading as zeros.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .chunks import _raw_layout, check_chunk_files, chunk_file, n_row_chunks, read_array, read_chunk  # noqa: F401
from .errors import MissingChunkError, SchemaError  # noqa: F401 (re-exported)
from .locks import Lease, LockedError, acquire
from .provenance import code_version, now_iso, sha256_json

SCHEMA_VERSION = 1

#: row status values in row tables
PENDING, OK, FAILED = 0, 1, 2

#: optional row-table array (schema v1 addition): a warning per row ("" for none) about usable but
#: suspicious input; tables created before it lack it, so readers must not require it
WARNING = "warning"

#: top-level groups and what they hold (the schema; documented in SCHEMA.md)
KINDS = ("embeddings", "llm/priors", "llm/summaries", "logits", "pseudo_labels")


#: table attribute: every chunk of every array is stored as a file, even one holding only fill values,
#: so a missing chunk file is damage (tables written before it was introduced lack it)
EVERY_CHUNK_STORED = "every_chunk_stored"

#: folder of the writer lock files inside a store (a Zarr group that holds no tables)
LOCKS_DIR = ".locks"


class TableLockedError(LockedError):
    """Another process is writing the table (its lock file names the holder)."""


class MissingIdsError(KeyError):
    """Ids asked of a table are not in it."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def _short(items: Sequence[str], n: int = 10) -> str:
    items = list(items)
    more = f" … and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def ids_digest(ids: Iterable[str]) -> str:
    return sha256_json([str(i) for i in ids])


def _to_str_array(values: Iterable[Any]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def _store_every_chunk():
    """Zarr skips chunks equal to the fill value unless told; arrays opened inside this block store
    every chunk written, so that a missing chunk file always means damage."""
    return zarr.config.set({"array.write_empty_chunks": True})


def _damage_hint(store_path: Path, rows: bool) -> str:
    redo = (
        "re-running its producer recomputes the damaged chunks"
        if rows
        else "re-run its producer (with --overwrite) to rewrite the table"
    )
    return f"run `python -m cache verify --store {store_path}` to list the damage; {redo}"


@dataclass
class Table:
    """A table read from a store: ids, named arrays (row-aligned) and attributes."""

    group: str
    ids: np.ndarray
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``ids``; raises MissingIdsError naming the missing ones."""
        pos = {str(i): k for k, i in enumerate(self.ids)}
        missing = [str(i) for i in ids if str(i) not in pos]
        if missing:
            raise MissingIdsError(f"{len(missing)} id(s) not in table '{self.group}': {_short(missing)}")
        return np.fromiter((pos[str(i)] for i in ids), dtype=np.int64, count=len(ids))

    def align(self, ids: Sequence[str]) -> Table:
        """The same table with rows reordered/subset to ``ids``."""
        if len(ids) == len(self.ids) and np.array_equal(np.asarray(ids, dtype=object), self.ids):
            return Table(self.group, self.ids, dict(self.arrays), dict(self.attrs))  # same order: no copy
        idx = self.index_of(ids)
        return Table(self.group, self.ids[idx], {k: v[idx] for k, v in self.arrays.items()}, dict(self.attrs))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class Store:
    """A cache store (Zarr group) for one dataset."""

    def __init__(self, path: str | Path, mode: str = "a"):
        self.path = Path(path)
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(f"cache store not found: {self.path}")
        self.mode = mode
        self.root = zarr.open_group(str(self.path), mode=mode)
        version = self.root.attrs.get("schema_version")
        if version is None:
            if mode == "r":
                raise SchemaError(f"{self.path} is not a cache store (no schema_version attribute)")
            self.root.attrs.update({"schema_version": SCHEMA_VERSION, "created": now_iso()})
        elif int(version) != SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} uses cache schema v{version}; this code reads v{SCHEMA_VERSION}. "
                "Re-create the store or use a matching version of the code."
            )

    # ------------------------------------------------------------------ inspection
    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def has(self, group: str) -> bool:
        """True when table ``group`` exists and its creation finished (see :meth:`half_created`)."""
        try:
            g = self.root[group]
        except KeyError:
            return False
        return isinstance(g, zarr.Group) and "ids" in g and "kind" in g.attrs

    def half_created(self, group: str) -> bool:
        """True when ``group`` exists but its creation never finished (killed, disk full): the
        ``kind`` attribute, written with the table's last attributes, is missing. Such a group is
        replaced by the next ``create_rows`` / ``write_table``; readers refuse it as incomplete."""
        try:
            g = self.root[group]
        except KeyError:
            return False
        return isinstance(g, zarr.Group) and "kind" not in g.attrs

    def tables(self, prefix: str = "") -> list[str]:
        """Paths of all tables (groups with an ``ids`` array), optionally under ``prefix``."""
        out: list[str] = []

        def walk(g: zarr.Group, path: str) -> None:
            for name, child in g.members():
                if name.startswith("."):  # .locks: lock files, no tables
                    continue
                p = f"{path}/{name}" if path else name
                if isinstance(child, zarr.Group):
                    if "ids" in child:
                        out.append(p)
                    else:
                        walk(child, p)

        start = self.root if not prefix else self.root.get(prefix.strip("/"))
        if not isinstance(start, zarr.Group):
            return []
        if prefix and "ids" in start:  # the prefix is itself a table
            return [prefix.strip("/")]
        walk(start, prefix.strip("/"))
        return sorted(out)

    def attrs(self, group: str) -> dict[str, Any]:
        return dict(self._group(group).attrs)

    def _group(self, group: str) -> zarr.Group:
        try:
            g = self.root[group]
        except KeyError:
            raise KeyError(
                f"no table '{group}' in store {self.path}; it has: {_short(self.tables()) or 'none'}"
            ) from None
        return g

    def delete(self, group: str) -> None:
        if group in self.root:
            del self.root[group]

    # ------------------------------------------------------------------ writer locks
    def lock_file(self, group: str) -> Path:
        """``<store>/.locks/<table path with / replaced by __>.lock``: the writer lock of ``group``."""
        return self.path / LOCKS_DIR / (group.strip("/").replace("/", "__") + ".lock")

    def lock(self, group: str) -> Lease:
        """Take the writer lock of table ``group`` for this process (re-entrant); raises
        :class:`TableLockedError` naming the holder when another process writes it."""
        folder = self.path / LOCKS_DIR
        if not (folder / "zarr.json").exists():  # a Zarr group, so that zarr's listings accept the folder
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "zarr.json").write_text(
                json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
            )
        try:
            return acquire(self.lock_file(group), f"table '{group}' in {self.path}")
        except LockedError as e:
            raise TableLockedError(str(e), e.holder) from None

    @contextmanager
    def locked(self, group: str) -> Iterator[Lease]:
        """Hold the writer lock of ``group`` for the block."""
        lease = self.lock(group)
        try:
            yield lease
        finally:
            lease.release()

    # ------------------------------------------------------------------ whole tables
    def write_table(
        self,
        group: str,
        ids: Sequence[str],
        arrays: Mapping[str, np.ndarray | Sequence[str]],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write (replace) a whole table. ``arrays`` are row-aligned with ``ids``.

        String arrays (object / str dtype, or lists of str) are stored as UTF-8 strings.
        """
        ids = _to_str_array(ids)
        if len(set(ids.tolist())) != len(ids):
            raise ValueError(f"table '{group}': duplicate ids")
        for name, arr in arrays.items():
            if len(arr) != len(ids):
                raise ValueError(f"table '{group}': array '{name}' has {len(arr)} rows, ids has {len(ids)}")
        with self.locked(group), _store_every_chunk():
            self.delete(group)
            g = self.root.require_group(group)
            g.attrs.update({"schema_version": SCHEMA_VERSION, "complete": False})
            self._put(g, "ids", ids)
            for name, arr in arrays.items():
                self._put(g, name, arr)
            meta = _with_provenance(attrs)
            meta.update(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": "table",
                    "n_rows": len(ids),
                    "ids_sha256": ids_digest(ids),
                    "complete": True,
                    EVERY_CHUNK_STORED: True,
                }
            )
            g.attrs.update(_jsonable(meta))

    @staticmethod
    def _put(g: zarr.Group, name: str, values: Any) -> None:
        arr = np.asarray(values)
        if arr.dtype.kind in "OUS":
            arr = _to_str_array(arr.ravel()).reshape(arr.shape)
            a = g.create_array(
                name, shape=arr.shape, dtype=str, chunks=(max(1, min(len(arr), 65536)),) + arr.shape[1:]
            )
        else:
            chunk0 = max(1, min(len(arr), max(1, (8 << 20) // max(1, arr[:1].nbytes))))
            a = g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(chunk0,) + arr.shape[1:])
        if arr.size:
            a[...] = arr

    def read_table(
        self, group: str, ids: Sequence[str] | None = None, names: Sequence[str] | None = None
    ) -> Table:
        """Read a complete table; with ``ids``, rows are aligned to them (missing ids raise)."""
        g = self._group(group)
        attrs = dict(g.attrs)
        _check_table_version(self.path, group, attrs)
        if attrs.get("kind") == "rows":
            return self.open_rows(group).read(ids=ids, names=names)
        if not attrs.get("complete"):
            raise SchemaError(
                f"table '{group}' in {self.path} is incomplete (its write was interrupted); "
                "re-run its producer"
            )
        hint = _damage_hint(self.path, rows=False)

        def required(a: zarr.Array) -> np.ndarray | None:
            return np.ones(n_row_chunks(a), dtype=bool) if attrs.get(EVERY_CHUNK_STORED) else None

        ids_arr = g["ids"]
        check_chunk_files(ids_arr, required(ids_arr), f"table '{group}' in {self.path}, array 'ids'", hint)
        all_ids = np.asarray(ids_arr[...], dtype=object)
        wanted = [n for n in g.array_keys() if n != "ids"] if names is None else list(names)
        arrays = {}
        for n in wanted:
            if n not in g:
                raise KeyError(f"table '{group}' has no array '{n}'")
            a = g[n]
            arrays[n] = read_array(a, required(a), f"table '{group}' in {self.path}, array '{n}'", hint)
        table = Table(group, all_ids, arrays, attrs)
        return table.align(ids) if ids is not None else table

    # ------------------------------------------------------------------ row tables
    def create_rows(
        self,
        group: str,
        ids: Sequence[str],
        columns: Mapping[str, tuple[tuple[int, ...], str]],
        chunk_rows: int = 256,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> RowWriter:
        """Create a resumable row table, or reopen it if it exists with the same ids and columns.

        ``columns`` maps a name to (shape of one row, dtype), e.g. ``{"audio": ((768,), "float32")}``.
        """
        ids = _to_str_array(ids)
        if len(set(ids.tolist())) != len(ids):
            raise ValueError(f"table '{group}': duplicate ids")
        spec = {k: [list(v[0]), str(np.dtype(v[1]))] for k, v in columns.items()}
        digest = ids_digest(ids)
        lease = self.lock(group)  # held by the returned writer until finalize() / close()
        try:
            if group in self.root and not overwrite and not self.half_created(group):
                g = self.root[group]
                old = dict(g.attrs)
                if (
                    old.get("kind") == "rows"
                    and old.get("ids_sha256") == digest
                    and old.get("columns") == spec
                    and int(old.get("chunk_rows", -1)) == chunk_rows
                ):
                    writer = RowWriter(self, group, lease=lease)
                    writer.repair_ids(ids)
                    return writer
                raise SchemaError(
                    f"table '{group}' already exists in {self.path} with other ids, columns or chunking; "
                    "pass overwrite (--overwrite) to replace it or choose another store"
                )
            with _store_every_chunk():
                self._create_rows(group, ids, columns, spec, digest, chunk_rows, attrs)
            return RowWriter(self, group, lease=lease)
        except BaseException:
            lease.release()
            raise

    def _create_rows(
        self,
        group: str,
        ids: np.ndarray,
        columns: Mapping[str, tuple[tuple[int, ...], str]],
        spec: dict,
        digest: str,
        chunk_rows: int,
        attrs: Mapping[str, Any] | None,
    ) -> None:
        self.delete(group)
        g = self.root.require_group(group)
        n = len(ids)
        n_chunks = max(1, -(-n // chunk_rows))
        g.create_array("ids", shape=(n,), dtype=str, chunks=(chunk_rows,))
        if n:
            g["ids"][...] = ids
        for name, (shape, dtype) in columns.items():
            dt = np.dtype(dtype)
            # float columns (embeddings, durations) hardly compress: store them raw so reads run at
            # file-copy speed (see read_array); other columns keep zarr's default codecs
            raw = {"compressors": None} if dt.kind == "f" else {}
            g.create_array(
                name, shape=(n, *shape), dtype=dt, chunks=(chunk_rows, *shape), fill_value=0, **raw
            )
        g.create_array(
            "status", shape=(n,), dtype=np.uint8, chunks=(chunk_rows,), fill_value=PENDING, compressors=None
        )
        g.create_array("error", shape=(n,), dtype=str, chunks=(chunk_rows,))
        g.create_array(WARNING, shape=(n,), dtype=str, chunks=(chunk_rows,))
        g.create_array(
            "chunk_done", shape=(n_chunks,), dtype=bool, chunks=(1,), fill_value=False, compressors=None
        )
        meta = _with_provenance(attrs)
        meta.update(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "rows",
                "n_rows": n,
                "chunk_rows": chunk_rows,
                "columns": spec,
                "ids_sha256": digest,
                "complete": False,
                EVERY_CHUNK_STORED: True,
            }
        )
        g.attrs.update(_jsonable(meta))  # the last write of the creation: "kind" marks it finished

    def open_rows(self, group: str, lock: bool = False) -> RowWriter:
        """Open a row table to read it, or (``lock=True``) to write it under its writer lock, held until
        ``finalize()`` / ``close()``. The ranks of a multi-process run open without the lock: the
        process that created the table (rank 0) holds it for all of them."""
        lease = self.lock(group) if lock else None
        try:
            return RowWriter(self, group, lease=lease)
        except BaseException:
            if lease is not None:
                lease.release()
            raise

    # ------------------------------------------------------------------ failures
    def failures(self) -> list[tuple[str, str, str]]:
        """(table, clip id, reason) for every failed row of every row table."""
        out = []
        for t in self.tables():
            g = self.root[t]
            if g.attrs.get("kind") != "rows":
                continue
            status = read_array(g["status"])
            bad = np.flatnonzero(status == FAILED)
            if len(bad):
                ids = np.asarray(g["ids"][...], dtype=object)
                err = np.asarray(g["error"][...], dtype=object)
                out.extend((t, str(ids[i]), str(err[i])) for i in bad)
        return out

    def warnings(self) -> list[tuple[str, str, str]]:
        """(table, clip id, warning) for every row with a warning (usable but suspicious input, e.g. a
        truncated file) of every row table that has the ``warning`` array (older tables do not)."""
        out = []
        for t in self.tables():
            g = self.root[t]
            if g.attrs.get("kind") != "rows" or WARNING not in g:
                continue
            warn = np.asarray(g[WARNING][...], dtype=object)
            flagged = [i for i, w in enumerate(warn) if w]
            if flagged:
                ids = np.asarray(g["ids"][...], dtype=object)
                out.extend((t, str(ids[i]), str(warn[i])) for i in flagged)
        return out


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

    def chunk_problems(self, k: int, arrays: Mapping[str, zarr.Array] | None = None) -> list[str]:
        """What is wrong with chunk ``k`` as a done chunk: a chunk file of a column, ``status`` or
        ``error`` missing, of the wrong size or undecodable; a PENDING row; an OK row not finite."""
        arrays = arrays or {n: self.g[n] for n in (*self.columns, "status", "error")}
        every = bool(self.attrs.get(EVERY_CHUNK_STORED))
        lo, hi = self.chunk_range(k)
        problems, values = [], {}
        for name, arr in arrays.items():
            problem, values[name] = read_chunk(arr, k, required=every or name == "status")
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

    def verify(self) -> list[int]:
        """Re-check every chunk marked done (see :meth:`chunk_problems`); un-mark the bad ones (and the
        table's ``complete`` flag) so that they are recomputed, and return them."""
        done = self.done_mask()
        arrays = {n: self.g[n] for n in (*self.columns, "status", "error")}
        bad = [int(k) for k in np.flatnonzero(done) if self.chunk_problems(int(k), arrays)]
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
        req = self.required("ids")
        if all(read_chunk(arr, k, required=req is not None)[0] is None for k in range(n_row_chunks(arr))):
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
        arrays = {n: read_array(self.g[n], self.required(n, done), self._where(n), hint) for n in wanted}
        arrays["status"] = read_array(
            self.g["status"], self.required("status", done), self._where("status"), hint
        )
        err, ids_arr = self.g["error"], self.g["ids"]
        check_chunk_files(err, self.required("error", done), self._where("error"), hint)
        check_chunk_files(ids_arr, self.required("ids", done), self._where("ids"), hint)
        arrays["error"] = np.asarray(err[...], dtype=object)
        if self.has_warnings:
            arrays[WARNING] = np.asarray(self.g[WARNING][...], dtype=object)
        t = Table(self.group, np.asarray(ids_arr[...], dtype=object), arrays, dict(self.g.attrs))
        return t.align(ids) if ids is not None else t


def _with_provenance(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``attrs`` plus the provenance every table must carry (producer, code_version, created) where absent."""
    meta = dict(attrs or {})
    meta.setdefault("producer", "unknown")
    meta.setdefault("created", now_iso())
    if "code_version" not in meta:
        meta["code_version"] = code_version()
    return meta


def _check_table_version(path: Path, group: str, attrs: Mapping[str, Any]) -> None:
    version = attrs.get("schema_version", SCHEMA_VERSION)
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"table '{group}' in {path} was written with cache schema v{version}; "
            f"this code reads v{SCHEMA_VERSION}. Re-run its producer with this code."
        )


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes must be JSON: round-trip through json with str() for unknown objects."""
    return json.loads(json.dumps(dict(d), default=str))


def default_store_path(dataset_root: str | Path) -> Path:
    """Where a dataset's store lives unless told otherwise: ``<root>/cache.zarr``."""
    return Path(dataset_root) / "cache.zarr"
