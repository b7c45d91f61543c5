"""Writer locks: one process at a time writes a table (or any other output folder).

A lock is an OS lock (``fcntl.flock``, exclusive, non-blocking) on a lock file. The kernel
drops it when the holder closes the file or dies (a crash or ``kill -9`` leaves nothing to
clean up); the file itself stays and is harmless: only the flock counts, never the file's
existence. While held, the file records who holds it (pid, host, command, start time, what),
so a refused writer can name the holder.

Use::

    from cache.locks import hold_lock, LockedError

    with hold_lock(out_dir / ".lock", f"fine-tune output {out_dir}"):
        ...  # write; a second process entering hold_lock on the same file gets LockedError

Locks are re-entrant within one process (a second ``hold_lock`` / ``acquire`` of a file this
process already holds succeeds and the lock is released with the last holder) and are not
kept alive by forked children (loader workers). flock works on local file systems; on network
file systems it depends on the mount.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .provenance import now_iso


class LockedError(RuntimeError):
    """Another process holds the lock; ``holder`` is what its lock file records (may be empty)."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.holder = dict(holder or {})


def describe_holder(holder: dict[str, Any]) -> str:
    """One-line description of a lock holder record: ``pid 123 on host, since …: command``."""
    if not holder:
        return "another process (its lock file records no holder yet)"
    cmd = holder.get("command") or "?"
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}: {cmd}"
    )


def read_holder(path: str | Path) -> dict[str, Any]:
    """The holder record of a lock file ({} when unreadable or empty)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


class _Held:
    def __init__(self, fh, key: str):
        self.fh, self.key, self.count, self.pid = fh, key, 1, os.getpid()


_HELD: dict[str, _Held] = {}
_GUARD = threading.RLock()


def _forget_in_child() -> None:
    """A forked child (e.g. a DataLoader worker) closes its copies of the held lock files: the lock stays
    the parent's, and ends when the parent releases it even while the child still runs."""
    for held in list(_HELD.values()):
        try:
            held.fh.close()  # the parent's descriptor keeps the flock
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class Lease:
    """A held lock; ``release()`` (idempotent) lets go of it. Returned by :func:`acquire`."""

    def __init__(self, key: str, path: Path):
        self.key, self.path, self._released = key, path, False

    def release(self) -> None:
        with _GUARD:
            if self._released:
                return
            self._released = True
            held = _HELD.get(self.key)
            if held is None:
                return
            held.count -= 1
            if held.count <= 0:
                del _HELD[self.key]
                if held.pid == os.getpid():  # a forked child (a loader worker) must not wipe the record
                    try:
                        held.fh.seek(0)
                        held.fh.truncate()
                    except OSError:
                        pass
                held.fh.close()  # closing the file releases the flock

    def __del__(self) -> None:  # a dropped lease must not keep the lock for the life of the process
        try:
            self.release()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


def acquire(path: str | Path, what: str) -> Lease:
    """Take the lock file ``path`` (created with its folders) for ``what``; raise LockedError naming
    the holder when another process has it. Release with ``Lease.release()``."""
    path = Path(path)
    key = str(path.resolve())
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:  # re-entrant within this process
            held.count += 1
            return Lease(key, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")  # never truncates another holder's record
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            holder = read_holder(path)
            raise LockedError(
                f"{what} is being written by another process ({describe_holder(holder)}); "
                f"wait for it to finish or stop it (lock file {path})",
                holder,
            ) from None
        except OSError as e:
            fh.close()
            raise LockedError(f"cannot lock {path} for {what}: {e}") from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": now_iso(),
            "command": " ".join(sys.argv),
            "what": what,
        }
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        _HELD[key] = _Held(fh, key)
        return Lease(key, path)


@contextmanager
def hold_lock(path: str | Path, what: str) -> Iterator[Lease]:
    """Hold the lock file ``path`` for the block (see :func:`acquire`); released on exit, also on errors."""
    lease = acquire(path, what)
    try:
        yield lease
    finally:
        lease.release()
