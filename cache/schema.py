"""Schema v1 of cache stores (see ``cache/SCHEMA.md``): what whole and row tables share.

The schema version and its check, row status codes, table attribute names, the :class:`Table` that
readers return (joined by clip id), and the small helpers both table writers use (string arrays,
ids digests, JSON attributes, storing every chunk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .errors import SchemaError
from .provenance import sha256_json

SCHEMA_VERSION = 1

#: row status values in row tables
PENDING, OK, FAILED = 0, 1, 2

#: optional row-table array (schema v1 addition): a warning per row ("" for none) about usable but
#: suspicious input; tables created before it lack it, so readers must not require it
WARNING = "warning"

#: table attribute: every chunk of every array is stored as a file, even one holding only fill values,
#: so a missing chunk file is damage (tables written before it was introduced lack it)
EVERY_CHUNK_STORED = "every_chunk_stored"


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
