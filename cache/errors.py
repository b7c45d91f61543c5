"""Errors of the cache store."""

from __future__ import annotations


class SchemaError(RuntimeError):
    """The store was written with another schema version, or a table is malformed or damaged."""


class MissingChunkError(SchemaError):
    """A chunk file that the table says was written is not on disk (or cannot be decoded)."""


_OS_HINTS = {
    "ENOSPC": "the disk is full: free space (or put the store elsewhere with --store PATH) and run the same "
    "command again; what was already written is kept",
    "EDQUOT": "the disk quota is exhausted: free space (or use --store PATH) and run the same command again",
    "EROFS": "the file system is read-only: put the cache store elsewhere with --store PATH",
    "EACCES": "no permission to write there: put the cache store elsewhere with --store PATH",
    "EPERM": "no permission to write there: put the cache store elsewhere with --store PATH",
}


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error a user can act on: what failed, on which file, and what
    to do (disk full, read-only or forbidden locations get a hint)."""
    import errno

    name = errno.errorcode.get(e.errno or 0, "")
    where = f" ({e.filename})" if e.filename else ""
    what = e.strerror or str(e)
    hint = _OS_HINTS.get(name)
    return f"{what}{where}" + (f": {hint}" if hint else "")
