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

Readers join by clip id and refuse stores of another schema version.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import zarr

from .provenance import code_version, now_iso, sha256_json

SCHEMA_VERSION = 1

#: row status values in row tables
PENDING, OK, FAILED = 0, 1, 2

#: top-level groups and what they hold (the schema; documented in SCHEMA.md)
KINDS = ("embeddings", "llm/priors", "llm/summaries", "logits", "pseudo_labels")


class SchemaError(RuntimeError):
    """The store was written with another schema version, or a table is malformed."""


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
            raise MissingIdsError(
                f"{len(missing)} id(s) not in table '{self.group}': {_short(missing)}"
            )
        return np.fromiter((pos[str(i)] for i in ids), dtype=np.int64, count=len(ids))

    def align(self, ids: Sequence[str]) -> "Table":
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
        try:
            g = self.root[group]
        except KeyError:
            return False
        return isinstance(g, zarr.Group) and "ids" in g

    def tables(self, prefix: str = "") -> list[str]:
        """Paths of all tables (groups with an ``ids`` array), optionally under ``prefix``."""
        out: list[str] = []

        def walk(g: zarr.Group, path: str) -> None:
            for name, child in g.members():
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
            raise KeyError(f"no table '{group}' in store {self.path}; it has: {_short(self.tables()) or 'none'}") from None
        return g

    def delete(self, group: str) -> None:
        if group in self.root:
            del self.root[group]

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
        self.delete(group)
        g = self.root.require_group(group)
        g.attrs.update({"schema_version": SCHEMA_VERSION, "complete": False})
        self._put(g, "ids", ids)
        for name, arr in arrays.items():
            self._put(g, name, arr)
        meta = _with_provenance(attrs)
        meta.update({"schema_version": SCHEMA_VERSION, "kind": "table", "n_rows": len(ids),
                     "ids_sha256": ids_digest(ids), "complete": True})
        g.attrs.update(_jsonable(meta))

    @staticmethod
    def _put(g: zarr.Group, name: str, values: Any) -> None:
        arr = np.asarray(values)
        if arr.dtype.kind in "OUS":
            arr = _to_str_array(arr.ravel()).reshape(arr.shape)
            a = g.create_array(name, shape=arr.shape, dtype=str, chunks=(max(1, min(len(arr), 65536)),) + arr.shape[1:])
        else:
            chunk0 = max(1, min(len(arr), max(1, (8 << 20) // max(1, arr[:1].nbytes))))
            a = g.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=(chunk0,) + arr.shape[1:])
        if arr.size:
            a[...] = arr

    def read_table(self, group: str, ids: Sequence[str] | None = None, names: Sequence[str] | None = None) -> Table:
        """Read a complete table; with ``ids``, rows are aligned to them (missing ids raise)."""
        g = self._group(group)
        attrs = dict(g.attrs)
        _check_table_version(self.path, group, attrs)
        if attrs.get("kind") == "rows":
            return self.open_rows(group).read(ids=ids, names=names)
        if not attrs.get("complete"):
            raise SchemaError(f"table '{group}' in {self.path} is incomplete (its write was interrupted); re-run its producer")
        all_ids = np.asarray(g["ids"][...], dtype=object)
        wanted = [n for n in g.array_keys() if n != "ids"] if names is None else list(names)
        arrays = {}
        for n in wanted:
            if n not in g:
                raise KeyError(f"table '{group}' has no array '{n}'")
            arrays[n] = read_array(g[n])
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
    ) -> "RowWriter":
        """Create a resumable row table, or reopen it if it exists with the same ids and columns.

        ``columns`` maps a name to (shape of one row, dtype), e.g. ``{"audio": ((768,), "float32")}``.
        """
        ids = _to_str_array(ids)
        if len(set(ids.tolist())) != len(ids):
            raise ValueError(f"table '{group}': duplicate ids")
        spec = {k: [list(v[0]), str(np.dtype(v[1]))] for k, v in columns.items()}
        digest = ids_digest(ids)
        if group in self.root and not overwrite:
            g = self.root[group]
            old = dict(g.attrs)
            if old.get("kind") == "rows" and old.get("ids_sha256") == digest and old.get("columns") == spec \
                    and int(old.get("chunk_rows", -1)) == chunk_rows:
                return RowWriter(self, group)
            raise SchemaError(
                f"table '{group}' already exists in {self.path} with other ids, columns or chunking; "
                "pass overwrite (--overwrite) to replace it or choose another store"
            )
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
            g.create_array(name, shape=(n, *shape), dtype=dt, chunks=(chunk_rows, *shape), fill_value=0, **raw)
        g.create_array("status", shape=(n,), dtype=np.uint8, chunks=(chunk_rows,), fill_value=PENDING,
                       compressors=None)
        g.create_array("error", shape=(n,), dtype=str, chunks=(chunk_rows,))
        g.create_array("chunk_done", shape=(n_chunks,), dtype=bool, chunks=(1,), fill_value=False,
                       compressors=None)
        meta = _with_provenance(attrs)
        meta.update({"schema_version": SCHEMA_VERSION, "kind": "rows", "n_rows": n, "chunk_rows": chunk_rows,
                     "columns": spec, "ids_sha256": digest, "complete": False})
        g.attrs.update(_jsonable(meta))
        return RowWriter(self, group)

    def open_rows(self, group: str) -> "RowWriter":
        return RowWriter(self, group)

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


class RowWriter:
    """Chunked, resumable writer/reader of one row table."""

    def __init__(self, store: Store, group: str):
        self.store = store
        self.group = group
        self.g = store._group(group)
        a = dict(self.g.attrs)
        _check_table_version(store.path, group, a)
        if a.get("kind") != "rows":
            raise SchemaError(f"'{group}' is not a row table")
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

    def write_chunk(self, k: int, values: Mapping[str, np.ndarray], status: np.ndarray, errors: Sequence[str]) -> None:
        """Write all rows of chunk ``k``; the chunk is marked done only after every write returned."""
        lo, hi = self.chunk_range(k)
        n = hi - lo
        status = np.asarray(status, dtype=np.uint8)
        if len(status) != n or len(errors) != n:
            raise ValueError(f"chunk {k} of '{self.group}' needs {n} rows, got {len(status)}")
        for name, (shape, dtype) in self.columns.items():
            v = np.asarray(values[name], dtype=dtype)
            if v.shape != (n, *shape):
                raise ValueError(f"chunk {k} of '{self.group}': column '{name}' has shape {v.shape}, expected {(n, *shape)}")
            self.g[name][lo:hi] = v
        self.g["error"][lo:hi] = _to_str_array(errors)
        self.g["status"][lo:hi] = status
        self.g["chunk_done"][k] = True

    def verify(self) -> list[int]:
        """Re-check chunks marked done (rows all decided, ok rows finite); un-mark and return bad ones."""
        done = self.done_mask()
        status = read_array(self.g["status"])
        bad = []
        for k in np.flatnonzero(done):
            lo, hi = self.chunk_range(int(k))
            st = status[lo:hi]
            ok = st == OK
            valid = bool(np.all(st != PENDING))
            if valid and ok.any():
                for name in self.columns:
                    block = np.asarray(self.g[name][lo:hi])[ok]
                    if not np.all(np.isfinite(block)):
                        valid = False
                        break
            if not valid:
                self.g["chunk_done"][int(k)] = False
                bad.append(int(k))
        return bad

    @property
    def complete(self) -> bool:
        return bool(self.done_mask().all())

    def finalize(self, attrs: Mapping[str, Any] | None = None) -> None:
        """Mark the table complete (call once every chunk is done)."""
        if not self.complete:
            missing = int((~self.done_mask()).sum())
            raise SchemaError(f"table '{self.group}' still has {missing} unfinished chunk(s)")
        meta = dict(attrs or {})
        meta["complete"] = True
        self.g.attrs.update(_jsonable(meta))

    def read(self, ids: Sequence[str] | None = None, names: Sequence[str] | None = None) -> Table:
        """Read the table. ``status`` and ``error`` come along; rows not OK are the caller's to mask."""
        if not self.complete:
            raise SchemaError(
                f"table '{self.group}' in {self.store.path} is incomplete "
                f"({int((~self.done_mask()).sum())} of {self.n_chunks} chunks missing); re-run its producer to resume"
            )
        wanted = list(self.columns) if names is None else list(names)
        arrays = {n: read_array(self.g[n]) for n in wanted}
        arrays["status"] = read_array(self.g["status"])
        arrays["error"] = np.asarray(self.g["error"][...], dtype=object)
        t = Table(self.group, self.ids, arrays, dict(self.g.attrs))
        return t.align(ids) if ids is not None else t


# ---------------------------------------------------------------------------------- fast reads
def _plain_bytes_codec(codecs: Any, dt: np.dtype) -> bool:
    """True when the codec chain is the ``bytes`` codec alone, little-endian (the endian may be
    omitted only for one-byte types)."""
    if not isinstance(codecs, list) or len(codecs) != 1 or not isinstance(codecs[0], dict):
        return False
    c = codecs[0]
    if c.get("name") != "bytes" or set(c) - {"name", "configuration"}:
        return False
    conf = c.get("configuration") or {}
    if set(conf) - {"endian"}:
        return False
    return conf.get("endian") == "little" or ("endian" not in conf and dt.itemsize == 1)


def _raw_layout(arr: zarr.Array) -> tuple[Path, int] | None:
    """(array folder, rows per chunk) when ``arr`` is stored as plain little-endian C-order bytes,
    one file per row chunk under the Zarr v3 default chunk key encoding; else None."""
    try:
        store = arr.store
        root = getattr(store, "root", None)
        if root is None or type(store).__name__ != "LocalStore":
            return None
        folder = Path(root) / arr.path
        meta = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError, AttributeError):
        return None
    dt = np.dtype(arr.dtype) if not isinstance(arr.dtype, np.dtype) else arr.dtype
    shape = tuple(meta.get("shape", ()))
    grid = meta.get("chunk_grid", {})
    chunks = tuple(grid.get("configuration", {}).get("chunk_shape", ()))
    ok = (meta.get("zarr_format") == 3 and meta.get("node_type") == "array"
          and _plain_bytes_codec(meta.get("codecs"), dt) and not meta.get("storage_transformers")
          and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
          and grid.get("name") == "regular" and len(shape) >= 1 and len(chunks) == len(shape)
          and chunks[1:] == shape[1:] and chunks[0] >= 1
          and dt.kind in "fiub" and dt.byteorder in "<=|" and shape == tuple(arr.shape))
    return (folder, int(chunks[0])) if ok else None


def read_array(arr: zarr.Array) -> np.ndarray:
    """The whole of ``arr`` as a numpy array, read straight from its chunk files when it can be.

    Fast path: a local Zarr v3 array whose codecs are exactly ``bytes`` (little-endian, no
    compressor, no filter, no transpose), chunked by rows only, with the default chunk key
    encoding (``c/<i>/0/...``): each chunk file holds its rows as C-order bytes, so it is read
    directly into the output with ``readinto`` (edge chunks are stored full size; only their
    valid rows are read). A chunk that was never written reads as the array's fill value.
    Anything else (compressed, other layouts, remote stores) is read by zarr.
    """
    layout = _raw_layout(arr)
    if layout is None:
        return np.asarray(arr[...])
    folder, rows = layout
    n = arr.shape[0]
    out = np.empty(arr.shape, dtype=np.dtype(arr.dtype).newbyteorder("<"))
    if out.size == 0:
        return out
    flat = out.reshape(n, -1).view(np.uint8)
    row_bytes = flat.shape[1]
    suffix = "/".join(["0"] * (out.ndim - 1))
    for k in range(-(-n // rows)):
        lo, hi = k * rows, min(n, (k + 1) * rows)
        path = folder / "c" / str(k) / suffix if suffix else folder / "c" / str(k)
        try:
            fh = open(path, "rb", buffering=0)
        except FileNotFoundError:
            out[lo:hi] = arr.fill_value
            continue
        with fh:
            view = memoryview(flat[lo:hi]).cast("B")
            got = 0
            while got < len(view):
                r = fh.readinto(view[got:])
                if not r:
                    raise SchemaError(f"chunk file {path} is shorter than {(hi - lo)} rows of {row_bytes} bytes")
                got += r
    return out


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
        raise SchemaError(f"table '{group}' in {path} was written with cache schema v{version}; "
                          f"this code reads v{SCHEMA_VERSION}. Re-run its producer with this code.")


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes must be JSON: round-trip through json with str() for unknown objects."""
    return json.loads(json.dumps(dict(d), default=str))


def open_store(path: str | Path, mode: str = "a") -> Store:
    return Store(path, mode)


def default_store_path(dataset_root: str | Path) -> Path:
    """Where a dataset's store lives unless told otherwise: ``<root>/cache.zarr``."""
    return Path(dataset_root) / "cache.zarr"
