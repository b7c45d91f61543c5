"""Chunk files of row-chunked Zarr arrays: where they are, which must exist, and the fast reader.

Every array of a table is chunked by rows only. Tables written by this code store every chunk
as a file, even one holding only the fill value (zarr would otherwise skip it), and say so with
the table attribute ``every_chunk_stored``; a chunk file that is then missing is damage, not
zeros. ``read_array`` reads plain (uncompressed) arrays straight from their chunk files;
``read_chunk`` reads one chunk and tells why it is damaged (missing, wrong size, undecodable).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .errors import MissingChunkError, SchemaError


def chunk_file(arr: zarr.Array, k: int) -> Path | None:
    """The file of row chunk ``k`` of a local array chunked by rows only; None when not known
    (a remote store, or an array also chunked along other axes)."""
    store = arr.store
    root = getattr(store, "root", None)
    if root is None or type(store).__name__ != "LocalStore" or tuple(arr.chunks[1:]) != tuple(arr.shape[1:]):
        return None
    key = arr.metadata.encode_chunk_key((int(k),) + (0,) * (arr.ndim - 1))
    return Path(root) / arr.path / key


def n_row_chunks(arr: zarr.Array) -> int:
    """Number of row chunks of ``arr`` (0 for an array without rows)."""
    return -(-int(arr.shape[0]) // int(arr.chunks[0])) if arr.ndim else 0


def _rows_of(arr: zarr.Array, k: int) -> tuple[int, int]:
    rows = int(arr.chunks[0])
    return k * rows, min(int(arr.shape[0]), (k + 1) * rows)


def missing_chunks(arr: zarr.Array, required: np.ndarray) -> list[tuple[int, Path]]:
    """(k, file) for every row chunk ``k`` with ``required[k]`` whose file does not exist (local stores)."""
    out = []
    for k in np.flatnonzero(np.asarray(required, dtype=bool)[: n_row_chunks(arr)]):
        path = chunk_file(arr, int(k))
        if path is not None and not path.is_file():
            out.append((int(k), path))
    return out


def check_chunk_files(arr: zarr.Array, required: np.ndarray | None, where: str, hint: str = "") -> None:
    """Raise MissingChunkError naming the first chunk ``k`` with ``required[k]`` whose file is missing."""
    if required is None:
        return
    missing = missing_chunks(arr, required)
    if missing:
        raise _missing(arr, *missing[0], where, hint)


def _missing(arr: zarr.Array, k: int, path: Path, where: str, hint: str) -> MissingChunkError:
    lo, hi = _rows_of(arr, k)
    return MissingChunkError(
        f"{where}: chunk {k} (rows {lo}-{hi - 1}) is missing ({path} does not exist)"
        + (f"; {hint}" if hint else "")
    )


def is_plain(arr: zarr.Array) -> bool:
    """True when ``arr``'s chunks are plain bytes on a local disk (their size can be checked)."""
    return _raw_layout(arr) is not None


def read_chunk(
    arr: zarr.Array, k: int, required: bool = True, plain: bool | None = None
) -> tuple[str | None, np.ndarray | None]:
    """(problem, rows) of row chunk ``k`` of ``arr``. ``problem`` says why the chunk is damaged, or
    is None: its file is missing (when ``required``; else the rows are the fill value), has the
    wrong size (plain arrays), or cannot be decoded. ``rows`` is None when damaged. ``plain``:
    :func:`is_plain` of ``arr`` when the caller already knows it (it reads the array's metadata)."""
    path = chunk_file(arr, k)
    lo, hi = _rows_of(arr, k)
    where = f"chunk {k} (rows {lo}-{hi - 1})"
    if path is not None and not path.exists():
        if required:
            return f"{where} is missing ({path})", None
    elif path is not None and (is_plain(arr) if plain is None else plain):
        want = int(arr.chunks[0]) * int(np.prod(arr.shape[1:], dtype=np.int64)) * np.dtype(arr.dtype).itemsize
        size = path.stat().st_size
        if size != want:
            return f"{where} has {size} bytes instead of {want} ({path})", None
    try:
        return None, np.asarray(arr[lo:hi])
    except Exception as e:  # noqa: BLE001 (codecs raise RuntimeError, ValueError, …)
        return f"{where} cannot be decoded ({type(e).__name__}: {e}) ({path or 'not a local file'})", None


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
    ok = (
        meta.get("zarr_format") == 3
        and meta.get("node_type") == "array"
        and _plain_bytes_codec(meta.get("codecs"), dt)
        and not meta.get("storage_transformers")
        and meta.get("chunk_key_encoding") == {"name": "default", "configuration": {"separator": "/"}}
        and grid.get("name") == "regular"
        and len(shape) >= 1
        and len(chunks) == len(shape)
        and chunks[1:] == shape[1:]
        and chunks[0] >= 1
        and dt.kind in "fiub"
        and dt.byteorder in "<=|"
        and shape == tuple(arr.shape)
    )
    return (folder, int(chunks[0])) if ok else None


def read_array(
    arr: zarr.Array, required: np.ndarray | None = None, where: str = "", hint: str = ""
) -> np.ndarray:
    """The whole of ``arr`` as a numpy array, read straight from its chunk files when it can be.

    Fast path: a local Zarr v3 array whose codecs are exactly ``bytes`` (little-endian, no
    compressor, no filter, no transpose), chunked by rows only, with the default chunk key
    encoding (``c/<i>/0/...``): each chunk file holds its rows as C-order bytes, so it is read
    directly into the output with ``readinto`` (edge chunks are stored full size; only their
    valid rows are read). A chunk that was never written reads as the array's fill value.
    Anything else (compressed, other layouts, remote stores) is read by zarr.

    ``required`` (bool per row chunk) names the chunks that were written: a missing file of
    one of them raises :class:`MissingChunkError` (``where`` and ``hint`` go into its message)
    instead of reading as the fill value.
    """
    layout = _raw_layout(arr)
    if layout is None:
        check_chunk_files(arr, required, where, hint)
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
            if required is not None and k < len(required) and required[k]:
                raise _missing(arr, k, path, where, hint) from None
            out[lo:hi] = arr.fill_value
            continue
        with fh:
            view = memoryview(flat[lo:hi]).cast("B")
            got = 0
            while got < len(view):
                r = fh.readinto(view[got:])
                if not r:
                    raise SchemaError(
                        f"chunk file {path} is truncated (shorter than {hi - lo} rows of {row_bytes} "
                        "bytes); the store is damaged: `python -m cache verify` lists the damage"
                    )
                got += r
    return out
