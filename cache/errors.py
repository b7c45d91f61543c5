"""Errors of the cache store (re-exported by ``cache.store``)."""

from __future__ import annotations


class SchemaError(RuntimeError):
    """The store was written with another schema version, or a table is malformed or damaged."""


class MissingChunkError(SchemaError):
    """A chunk file that the table says was written is not on disk (or cannot be decoded)."""
