"""Feature matrices: the embedding columns of one or more ``embeddings/...`` tables joined to clip ids.

:func:`read_features` reads them into memory, :func:`open_features` lazily (rows read when
indexed). Table paths and the readers/writers of the other table kinds are in :mod:`cache.tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .chunks import check_chunk_files
from .errors import SchemaError
from .schema import OK, Table, _damage_hint
from .store import Store


@dataclass
class Features:
    ids: np.ndarray  # (N,) object
    X: np.ndarray  # (N, D) float32: columns of every group concatenated
    ok: np.ndarray  # (N,) bool: False where any group failed this clip (rows are zeros there)
    blocks: list[tuple[str, str, int]]  # (group, column, dim) in concatenation order

    @property
    def dim(self) -> int:
        return self.X.shape[1]


def embedding_columns(store: Store, group: str) -> list[str]:
    """Matrix columns of an embedding group, audio first then text (scalars like duration excluded)."""
    cols = store.attrs(group).get("columns", {})
    names = [n for n, (shape, _) in cols.items() if len(shape) == 1]
    return sorted(names, key=lambda n: (n != "audio", n != "text", n))


def read_features(
    store: Store,
    groups: Sequence[str],
    ids: Sequence[str],
    columns: Sequence[str] | None = None,
    dtype=np.float32,
) -> Features:
    """Concatenate the embedding columns of ``groups`` (in order) for ``ids`` (in order).

    ``columns`` restricts which columns are used (e.g. ``["audio"]``); ids missing from a
    group raise :class:`cache.schema.MissingIdsError` naming them.
    """
    ids = np.asarray([str(i) for i in ids], dtype=object)
    mats, ok, blocks = [], np.ones(len(ids), dtype=bool), []
    for g in groups:
        cols = [c for c in embedding_columns(store, g) if columns is None or c in columns]
        if not cols:
            raise KeyError(f"group '{g}' has none of the columns {list(columns or [])}")
        t = store.read_table(g, ids=ids, names=cols)
        ok &= t.arrays["status"] == OK
        for c in cols:
            m = np.asarray(t.arrays[c], dtype=dtype)
            mats.append(m)
            blocks.append((g, c, m.shape[1]))
    if len(mats) == 1:  # one block: the freshly read matrix is X (no copy)
        X = np.ascontiguousarray(mats[0])
    else:
        X = np.concatenate(mats, axis=1) if mats else np.zeros((len(ids), 0), dtype=dtype)
    X[~ok] = 0
    return Features(ids, X, ok, blocks)


class LazyFeatures:
    """Embedding rows of one or more groups for ``ids``, read from the Zarr chunks on demand.

    Nothing but ids and status masks is loaded when opened; ``lf[idx]`` (positions into ``ids``:
    an int, slice or index array) reads just those rows of every block and concatenates them like
    :func:`read_features` (rows of failed clips are zeros). ``to_memory()`` gives the
    :class:`Features` that ``read_features`` returns.
    """

    def __init__(
        self,
        store: Store,
        groups: Sequence[str],
        ids: Sequence[str],
        columns: Sequence[str] | None = None,
        dtype=np.float32,
    ):
        self.ids = np.asarray([str(i) for i in ids], dtype=object)
        self.dtype = np.dtype(dtype)
        self.ok = np.ones(len(self.ids), dtype=bool)
        self.blocks: list[tuple[str, str, int]] = []
        self._arrays = []  # (zarr array, row positions in that table)
        for g in groups:
            cols = [c for c in embedding_columns(store, g) if columns is None or c in columns]
            if not cols:
                raise KeyError(f"group '{g}' has none of the columns {list(columns or [])}")
            rows = store.open_rows(g)
            done = rows.done_mask()
            if not done.all():
                raise SchemaError(f"table '{g}' in {store.path} is incomplete; re-run its producer to resume")
            pos = Table(g, rows.ids, {}).index_of(self.ids)
            where = f"table '{g}' in {store.path}, array "
            hint = _damage_hint(store.path, rows=True)
            status = rows.g["status"]
            check_chunk_files(status, rows.required("status", done), where + "'status'", hint)
            self.ok &= np.asarray(status[...])[pos] == OK
            for c in cols:
                arr = rows.g[c]
                # missing files read as zeros
                check_chunk_files(arr, rows.required(c, done), where + f"'{c}'", hint)
                self._arrays.append((arr, pos))
                self.blocks.append((g, c, int(arr.shape[1])))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return sum(d for _, _, d in self.blocks)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ids), self.dim

    def __getitem__(self, index) -> np.ndarray:
        sel = np.arange(len(self.ids))[index]
        single = np.ndim(sel) == 0
        sel = np.atleast_1d(sel)
        parts = []
        for arr, pos in self._arrays:
            rows = pos[sel]
            uniq, inverse = np.unique(rows, return_inverse=True)
            block = np.asarray(arr.get_orthogonal_selection((uniq, slice(None))), dtype=self.dtype)[inverse]
            parts.append(block)
        X = np.concatenate(parts, axis=1) if parts else np.zeros((len(sel), 0), dtype=self.dtype)
        X[~self.ok[sel]] = 0
        return X[0] if single else X

    def to_memory(self) -> Features:
        return Features(self.ids, self[:], self.ok.copy(), list(self.blocks))


def open_features(
    store: Store,
    groups: Sequence[str],
    ids: Sequence[str],
    columns: Sequence[str] | None = None,
    dtype=np.float32,
) -> LazyFeatures:
    """Like :func:`read_features` but lazy: rows are read from the store when indexed."""
    return LazyFeatures(store, groups, ids, columns=columns, dtype=dtype)
