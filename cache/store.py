"""Reader and writer of cache stores (schema v1, see ``cache/SCHEMA.md``).

A store is one Zarr group per dataset. Inside it, every producer owns *tables*: groups
that hold an ``ids`` array (clip ids, strings) plus row-aligned arrays, and provenance
attributes. Two kinds of tables exist:

* **whole tables** (``write_table``): written in one go (priors, summaries, logits,
  pseudo-labels); the ``complete`` attribute is set last, so a killed write is never
  mistaken for a finished one.
* **row tables** (``create_rows`` / ``cache.row_tables.RowWriter``): large matrices written chunk by chunk
  (embeddings), resumable after a kill and writable by several processes at once (each
  writes disjoint, chunk-aligned rows; per-chunk ``chunk_done`` marks live in separate
  Zarr chunks so ranks never touch the same file).

Readers join by clip id and refuse stores of another schema version. A table has one writer
at a time (an OS lock under ``<store>/.locks/``, see ``cache.locks``); a chunk that the table
says was written but whose file is missing raises :class:`MissingChunkError` instead of
reading as zeros. Schema constants and the :class:`Table` that readers return live in ``cache.schema``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .chunks import check_chunk_files, n_row_chunks, read_array
from .errors import SchemaError
from .locks import Lease, LockedError, acquire
from .provenance import code_version, now_iso
from .row_tables import RowWriter
from .schema import (
    EVERY_CHUNK_STORED,
    FAILED,
    PENDING,
    SCHEMA_VERSION,
    WARNING,
    Table,
    _check_table_version,
    _damage_hint,
    _jsonable,
    _short,
    _store_every_chunk,
    _to_str_array,
    ids_digest,
)

#: folder of the writer lock files inside a store (a Zarr group that holds no tables)
LOCKS_DIR = ".locks"


class TableLockedError(LockedError):
    """Another process is writing the table (its lock file names the holder)."""


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


def _with_provenance(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``attrs`` plus the provenance every table must carry (producer, code_version, created) where absent."""
    meta = dict(attrs or {})
    meta.setdefault("producer", "unknown")
    meta.setdefault("created", now_iso())
    if "code_version" not in meta:
        meta["code_version"] = code_version()
    return meta


def default_store_path(dataset_root: str | Path) -> Path:
    """Where a dataset's store lives unless told otherwise: ``<root>/cache.zarr``."""
    return Path(dataset_root) / "cache.zarr"
