"""HDF5 export / import of complete cache tables (schema v1, see ``cache/SCHEMA.md``).

Zarr is the working format; an HDF5 file is a portable copy of complete tables:

    /                      attrs: format, cache_schema_version, exported, code_version, source_store
    /<table path>/         attrs: kind ("table" | "rows"), attrs_json (the table's attrs as JSON)
        ids                (N,) UTF-8 strings
        <array>            (N, ...) as stored (float16/32, ints, bool, UTF-8 strings)
        status, error      row tables only: (N,) uint8 and (N,) UTF-8 strings
        warning            row tables that have it (optional): (N,) UTF-8 strings

Incomplete tables are refused on export; importing a table that already exists in the
store is refused unless ``overwrite``. Row tables come back as complete row tables with the
same ids, values, status, error, warning (when exported), chunking and attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import SchemaError
from .provenance import code_version, now_iso
from .schema import SCHEMA_VERSION, WARNING
from .store import Store

FORMAT = "bst-hac cache export"
_STR = h5py.string_dtype("utf-8")


class ExportError(RuntimeError):
    """A table cannot be exported or imported (incomplete, unknown, already present, bad file)."""


def select_tables(available: Sequence[str], groups: Iterable[str] | None) -> list[str]:
    """Tables named by ``groups`` (exact table paths or prefixes such as ``embeddings``); all if None."""
    available = list(available)
    if not groups:
        return available
    out: list[str] = []
    for g in groups:
        g = g.strip("/")
        hits = [t for t in available if t == g or t.startswith(g + "/")]
        if not hits:
            raise ExportError(f"no table '{g}'; available: {', '.join(available) or 'none'}")
        out.extend(h for h in hits if h not in out)
    return out


def _is_complete(store: Store, table: str) -> tuple[bool, str]:
    attrs = store.attrs(table)
    if attrs.get("kind") == "rows":
        w = store.open_rows(table)
        missing = int((~w.done_mask()).sum())
        if missing:
            return False, f"{missing} of {w.n_chunks} chunks not written"
        if not attrs.get("complete"):
            return False, "all chunks written but not finalized"
        return True, ""
    if not attrs.get("complete"):
        return False, "its write was interrupted"
    return True, ""


def _dataset(
    h: h5py.Group,
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunk_rows: int,
    compression: str | None,
) -> h5py.Dataset:
    is_str = dtype.kind in "OUST"
    kw: dict[str, Any] = {}
    if shape and shape[0] > 0:
        kw["chunks"] = (max(1, min(shape[0], chunk_rows)),) + tuple(shape[1:])
        if compression:
            kw["compression"] = compression
    return h.create_dataset(name, shape=shape, dtype=_STR if is_str else dtype, **kw)


def _put_strings(ds: h5py.Dataset, lo: int, hi: int, values: np.ndarray) -> None:
    if hi > lo:
        ds[lo:hi] = np.asarray([str(v) for v in np.asarray(values).ravel()], dtype=object).reshape(
            np.shape(values)
        )


def export_hdf5(
    store: Store,
    out: str | Path,
    groups: Iterable[str] | None = None,
    *,
    skip_incomplete: bool = False,
    compression: str | None = None,
    progress: bool = False,
) -> list[str]:
    """Write the complete tables named by ``groups`` (all by default) to a new HDF5 file ``out``.

    Raises :class:`ExportError` naming every incomplete table unless ``skip_incomplete``.
    Returns the exported table paths.
    """
    tables = select_tables(store.tables(), groups)
    incomplete = [(t, why) for t in tables for ok, why in [_is_complete(store, t)] if not ok]
    if incomplete and not skip_incomplete:
        lines = "; ".join(f"'{t}' ({why})" for t, why in incomplete)
        raise ExportError(
            f"refusing to export incomplete table(s) of {store.path}: {lines}. "
            "Finish them (re-run their producer) or pass --skip-incomplete / --group"
        )
    skip = {t for t, _ in incomplete}
    tables = [t for t in tables if t not in skip]
    from .verify import missing_chunk_files  # a missing chunk file would be exported as zeros

    damaged = [(t, m) for t in tables for m in [missing_chunk_files(store, t)] if m]
    if damaged:
        lines = "; ".join(
            f"'{t}' (missing {m[0]}" + (f" and {len(m) - 1} more" if len(m) > 1 else "") + ")"
            for t, m in damaged
        )
        raise ExportError(
            f"refusing to export damaged table(s) of {store.path}: {lines}. "
            f"Run python -m cache verify --store {store.path} and re-run their producers"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(
                {
                    "format": FORMAT,
                    "cache_schema_version": SCHEMA_VERSION,
                    "exported": now_iso(),
                    "code_version": code_version(),
                    "source_store": str(store.path),
                }
            )
            it: Iterable[str] = tables
            if progress:
                from .progress import progress as progress_bar

                it = progress_bar(tables, desc="export", unit="table")
            for t in it:
                _export_table(store, t, f.create_group(t), compression)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return tables


def _export_table(store: Store, table: str, h: h5py.Group, compression: str | None) -> None:
    attrs = store.attrs(table)
    kind = attrs.get("kind", "table")
    h.attrs["kind"] = kind
    h.attrs["attrs_json"] = json.dumps(attrs, sort_keys=True)
    g = store.root[table]
    names = sorted(n for n in g.array_keys() if n not in ("ids", "chunk_done"))
    n = int(g["ids"].shape[0])
    chunk_rows = int(attrs.get("chunk_rows", 0)) or 4096
    for name in ["ids", *names]:
        src = g[name]
        dt = np.dtype(object) if np.dtype(src.dtype).kind in "OUST" else np.dtype(src.dtype)
        ds = _dataset(h, name, tuple(src.shape), dt, chunk_rows, compression)
        row_bytes = max(
            1, int(np.prod(src.shape[1:], dtype=np.int64)) * (64 if dt.kind == "O" else dt.itemsize)
        )
        step = max(chunk_rows, (32 << 20) // row_bytes // chunk_rows * chunk_rows)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = np.asarray(src[lo:hi])
            if dt.kind == "O":
                _put_strings(ds, lo, hi, block)
            else:
                ds[lo:hi] = block


def _read_strings(ds: h5py.Dataset, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    sel = slice(lo, hi)
    return np.asarray(ds.asstr()[sel], dtype=object)


def _is_str(ds: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(ds.dtype) is not None


def read_export_info(h5: str | Path) -> dict[str, Any]:
    """Root attributes of an export file; refuses files of another format or schema version."""
    h5 = Path(h5)
    if not h5.exists():
        raise FileNotFoundError(f"HDF5 export not found: {h5}")
    with h5py.File(h5, "r") as f:
        info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        info["tables"] = _h5_tables(f)
    if info.get("format") != FORMAT:
        raise SchemaError(f"{h5} is not a cache export (format attribute {info.get('format')!r})")
    version = int(info.get("cache_schema_version", -1))
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{h5} holds cache schema v{version}; this code reads v{SCHEMA_VERSION}. "
            "Import it with a matching version of the code."
        )
    return info


def _h5_tables(f: h5py.File) -> list[str]:
    out: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and "attrs_json" in obj.attrs:
            out.append(name)

    f.visititems(visit)
    return sorted(out)


def import_hdf5(
    store: Store,
    h5: str | Path,
    groups: Iterable[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> list[str]:
    """Copy the tables named by ``groups`` (all by default) from an export file into ``store``.

    A table already in the store is refused unless ``overwrite``. Imported tables get an
    ``imported_from`` attribute (file, export time); all other attributes are kept as exported.
    Returns the imported table paths.
    """
    info = read_export_info(h5)
    tables = select_tables(info["tables"], groups)
    clash = [t for t in tables if t in store.root]
    if clash and not overwrite:
        raise ExportError(
            f"store {store.path} already has table(s) {', '.join(clash)}; "
            "pass --overwrite to replace them or --group to choose others"
        )
    origin = {
        "file": str(Path(h5).resolve()),
        "exported": info.get("exported"),
        "source_store": info.get("source_store"),
    }
    with h5py.File(h5, "r") as f:
        it: Iterable[str] = tables
        if progress:
            from .progress import progress as progress_bar

            it = progress_bar(tables, desc="import", unit="table")
        for t in it:
            h = f[t]
            attrs = json.loads(h.attrs["attrs_json"])
            attrs["imported_from"] = origin
            if int(attrs.get("schema_version", SCHEMA_VERSION)) != SCHEMA_VERSION:
                raise SchemaError(f"table '{t}' in {h5} is schema v{attrs.get('schema_version')}")
            if attrs.get("kind") == "rows":
                _import_rows(store, t, h, attrs)
            else:
                ids = _read_strings(h["ids"])
                arrays = {
                    n: (_read_strings(h[n]) if _is_str(h[n]) else np.asarray(h[n][...]))
                    for n in h.keys()
                    if n != "ids"
                }
                store.write_table(t, ids, arrays, attrs)
    return tables


def _import_rows(store: Store, table: str, h: h5py.Group, attrs: dict[str, Any]) -> None:
    columns = {k: (tuple(v[0]), v[1]) for k, v in attrs["columns"].items()}
    for name in ("ids", "status", "error", *columns):
        if name not in h:
            raise ExportError(f"row table '{table}' in {h.file.filename} lacks array '{name}'")
    ids = _read_strings(h["ids"])
    chunk_rows = int(attrs["chunk_rows"])
    fixed = {"schema_version", "kind", "n_rows", "chunk_rows", "columns", "ids_sha256", "complete"}
    w = store.create_rows(
        table,
        ids,
        columns,
        chunk_rows=chunk_rows,
        attrs={k: v for k, v in attrs.items() if k not in fixed},
        overwrite=True,
    )
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        values = {c: np.asarray(h[c][lo:hi]) for c in columns}
        warnings = list(_read_strings(h[WARNING], lo, hi)) if WARNING in h else None  # older exports lack it
        w.write_chunk(
            k,
            values,
            np.asarray(h["status"][lo:hi], dtype=np.uint8),
            list(_read_strings(h["error"], lo, hi)),
            warnings=warnings,
        )
    w.finalize()
