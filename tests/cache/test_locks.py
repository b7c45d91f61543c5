"""cache.locks: one writer at a time, across processes; the holder is named; a dead holder frees the lock."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cache.locks import LockedError, acquire, hold_lock, read_holder

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from cache.locks import hold_lock
with hold_lock(sys.argv[1], "test output"):
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills us)
"""


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_naming_the_holder_and_gets_it_after_release(tmp_path):
    lock = tmp_path / "out" / ".lock"
    proc = _holder(lock)
    try:
        rec = read_holder(lock)
        assert rec["pid"] == proc.pid and rec["what"] == "test output" and str(lock) in rec["command"]
        with pytest.raises(
            LockedError,
            match=rf"my folder is being written by another process \(pid {proc.pid} on "
            rf".*\(lock file {lock}\)",
        ) as e:
            with hold_lock(lock, "my folder"):
                pass
        assert e.value.holder["pid"] == proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    with hold_lock(lock, "my folder") as lease:  # released on the holder's exit
        assert read_holder(lock)["pid"] == os.getpid() and lease.path == lock
    assert read_holder(lock) == {}  # the record is cleared on release; the file stays


def test_a_killed_holder_leaves_nothing_to_clean_up(tmp_path):
    lock = tmp_path / ".lock"
    proc = _holder(lock)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads(lock.read_text())["pid"] == proc.pid  # a stale record, but no lock
    with hold_lock(lock, "after a crash"):
        assert read_holder(lock)["what"] == "after a crash"


def test_reentrant_within_one_process(tmp_path):
    lock = tmp_path / ".lock"
    outer = acquire(lock, "outer")
    with hold_lock(lock, "inner"):
        pass
    assert read_holder(lock)["what"] == "outer"  # still held by the outer lease
    proc = subprocess.run(
        [sys.executable, "-c", HOLDER, str(lock)],
        cwd=REPO,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "LockedError" in proc.stderr
    outer.release()
    outer.release()  # idempotent
    assert read_holder(lock) == {}


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    lock = tmp_path / ".lock"
    lease = acquire(lock, "parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (like a DataLoader worker) lives on after the parent released
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        lease.release()
        other = subprocess.run(
            [sys.executable, "-c", HOLDER, str(lock)],
            cwd=REPO,
            input="",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
    finally:
        os.write(w, b"x")
        os.close(w)
        os.waitpid(pid, 0)
