"""Store integrity: written chunks are always files, a missing one is an error (never zeros), verify
finds missing/corrupt chunks, half-created tables are recreated, one writer per table."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from cache.chunks import read_array
from cache.errors import MissingChunkError, SchemaError
from cache.feature_matrix import open_features, read_features
from cache.schema import EVERY_CHUNK_STORED, FAILED, OK
from cache.store import Store, TableLockedError

REPO = Path(__file__).resolve().parents[2]
G = "embeddings/t@none"
IDS = [f"c{i}" for i in range(10)]
X = np.arange(30, dtype=np.float32).reshape(10, 3) + 1


def _rows(store: Store, group: str = G, chunk_rows: int = 4, all_failed_chunk: int | None = 1):
    """A complete row table of IDS; chunk ``all_failed_chunk`` has only FAILED rows (all-zero values)."""
    w = store.create_rows(
        group, IDS, {"audio": ((3,), "float32"), "n_windows": ((), "int32")}, chunk_rows=chunk_rows
    )
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        bad = k == all_failed_chunk
        w.write_chunk(
            k,
            {"audio": np.zeros((hi - lo, 3)) if bad else X[lo:hi], "n_windows": np.ones(hi - lo)},
            np.full(hi - lo, FAILED if bad else OK, np.uint8),
            ["decode failed" if bad else ""] * (hi - lo),
        )
    w.finalize()
    return w


def _chunk(store: Store, group: str, name: str, k: int) -> Path:
    a = store.root[f"{group}/{name}"]
    return store.path / group / name / a.metadata.encode_chunk_key((k,) + (0,) * (a.ndim - 1))


def test_every_chunk_is_a_file_even_all_fill_ones(tmp_path):
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    assert s.attrs(G)[EVERY_CHUNK_STORED] is True
    for name in (
        "audio",
        "n_windows",
        "error",
        "status",
        "ids",
    ):  # chunk 1: zeros, "" errors would be skipped by zarr
        assert all(_chunk(s, G, name, k).is_file() for k in range(3)), name
    s.write_table(
        "llm/priors/p", IDS, {"prior": np.zeros((10, 23), np.float32), "missing": np.zeros(10, bool)}
    )
    assert (
        _chunk(s, "llm/priors/p", "missing", 0).is_file() and _chunk(s, "llm/priors/p", "prior", 0).is_file()
    )


@pytest.mark.parametrize("name", ["audio", "status", "error", "ids", "n_windows"])
def test_missing_chunk_of_a_row_table_is_an_error_naming_table_array_and_chunk(tmp_path, name):
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    _chunk(s, G, name, 2).unlink()
    r = Store(tmp_path / "s.zarr", mode="r")
    with pytest.raises(
        MissingChunkError, match=rf"table '{G}' .*array '{name}': chunk 2 \(rows 8-9\) is missing"
    ):
        r.read_table(G)
    if name in ("audio", "status"):
        with pytest.raises(MissingChunkError, match=f"array '{name}': chunk 2"):
            read_features(r, [G], IDS)
        with pytest.raises(MissingChunkError, match=f"array '{name}': chunk 2"):
            open_features(r, [G], IDS)


def test_missing_chunk_of_a_whole_table_is_an_error(tmp_path):
    s = Store(tmp_path / "s.zarr")
    s.write_table(
        "llm/priors/p", IDS, {"prior": np.ones((10, 23), np.float32), "missing": np.zeros(10, bool)}
    )
    _chunk(s, "llm/priors/p", "prior", 0).unlink()
    with pytest.raises(
        MissingChunkError, match=r"table 'llm/priors/p' .*array 'prior': chunk 0 .*--overwrite"
    ):
        s.read_table("llm/priors/p")


def test_tables_without_the_mark_still_read_missing_chunks_as_fill(tmp_path):
    """Tables written before every_chunk_stored: zarr skipped all-fill chunks, so a missing file is no
    damage."""
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    g = s.root[G]
    attrs = dict(g.attrs)
    del attrs[EVERY_CHUNK_STORED]
    g.attrs.clear()
    g.attrs.update(attrs)
    _chunk(s, G, "audio", 1).unlink()  # the all-failed chunk, as old code left it
    _chunk(s, G, "error", 0).unlink()
    t = s.read_table(G)
    assert np.all(t["audio"][4:8] == 0) and t["error"][0] == ""
    _chunk(s, G, "status", 0).unlink()  # status of a done chunk always had a file
    with pytest.raises(MissingChunkError, match="array 'status': chunk 0"):
        s.read_table(G)


def test_read_array_fast_path_raises_only_for_required_chunks(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    a = g.create_array("x", shape=(10, 2), chunks=(4, 2), dtype="float32", compressors=None, fill_value=0)
    a[0:4] = 1.0
    assert read_array(a)[5, 0] == 0  # unrequired: fill value
    assert read_array(a, np.array([True, False, False]))[0, 0] == 1
    with pytest.raises(MissingChunkError, match=r"where: chunk 1 \(rows 4-7\) is missing .*; hint"):
        read_array(a, np.array([True, True, False]), "where", "hint")


def test_verify_unmarks_missing_and_corrupt_chunks_so_they_are_redone(tmp_path):
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    _chunk(s, G, "audio", 0).unlink()  # missing
    _chunk(s, G, "status", 1).write_bytes(b"\x01")  # raw chunk of the wrong size
    _chunk(s, G, "error", 2).write_bytes(b"not zstd at all")  # undecodable compressed chunk
    w = s.create_rows(G, IDS, {"audio": ((3,), "float32"), "n_windows": ((), "int32")}, chunk_rows=4)
    problems = {k: w.chunk_problems(k) for k in range(3)}
    assert "array 'audio': chunk 0 (rows 0-3) is missing" in problems[0][0]
    assert "array 'status': chunk 1 (rows 4-7) has 1 bytes instead of 4" in problems[1][0]
    assert "array 'error': chunk 2 (rows 8-9) cannot be decoded" in problems[2][0]
    assert w.verify([1]) == [1]  # only the chunks asked for are checked (and un-marked)
    assert w.pending_chunks() == [1]
    assert w.verify() == [0, 2]
    assert w.pending_chunks() == [0, 1, 2] and s.attrs(G)["complete"] is False
    w.close()
    with pytest.raises(SchemaError, match="incomplete"):
        s.read_table(G)


def test_resume_rewrites_a_missing_ids_chunk(tmp_path):
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    _chunk(s, G, "ids", 1).unlink()
    w = s.create_rows(G, IDS, {"audio": ((3,), "float32"), "n_windows": ((), "int32")}, chunk_rows=4)
    w.close()
    assert _chunk(s, G, "ids", 1).is_file() and s.read_table(G).ids.tolist() == IDS


def test_half_created_table_is_recreated(tmp_path):
    s = Store(tmp_path / "s.zarr")
    g = s.root.require_group(G)  # what a kill before the last attribute write leaves
    g.create_array("ids", shape=(3,), dtype=str, chunks=(3,))
    g.attrs.update({"producer": "x"})
    assert s.half_created(G) and not s.has(G)
    with pytest.raises(SchemaError, match="incomplete"):
        s.read_table(G)
    w = s.create_rows(G, IDS, {"audio": ((3,), "float32")}, chunk_rows=4)  # no overwrite needed
    assert w.n_rows == 10 and w.pending_chunks() == [0, 1, 2] and s.has(G) and not s.half_created(G)
    w.close()
    s.root.require_group("llm/priors/p")  # a whole table killed after its group was made
    s.write_table("llm/priors/p", IDS, {"missing": np.zeros(10, bool)})
    assert s.has("llm/priors/p")


HOLD_TABLE = """
import sys
from cache.store import Store
lease = Store(sys.argv[1]).lock(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_of_a_table_is_refused_naming_the_holder(tmp_path):
    path = tmp_path / "s.zarr"
    s = Store(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_TABLE, str(path), G],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        msg = rf"table '{G}' in {path} is being written by another process \(pid {proc.pid} on "
        with pytest.raises(TableLockedError, match=msg):
            s.create_rows(G, IDS, {"audio": ((3,), "float32")}, chunk_rows=4, overwrite=True)
        with pytest.raises(TableLockedError, match=msg):
            s.write_table(G, IDS, {"x": np.ones(10)})
        with pytest.raises(TableLockedError):
            s.lock(G)
        assert not s.has(G) and s.tables() == []  # nothing was touched; the lock folder is no table
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    _rows(s)  # free again once the holder is gone


def test_row_writer_holds_the_lock_until_finalize(tmp_path):
    path = tmp_path / "s.zarr"
    s = Store(path)
    w = s.create_rows(G, IDS, {"audio": ((3,), "float32")}, chunk_rows=10)
    assert s.lock_file(G) == path / ".locks" / "embeddings__t@none.lock"
    other = subprocess.run(
        [sys.executable, "-c", HOLD_TABLE, str(path), G],
        cwd=REPO,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 1 and "TableLockedError" in other.stderr
    w.write_chunk(0, {"audio": X}, np.full(10, OK, np.uint8), [""] * 10)
    w.finalize()
    other = subprocess.run(
        [sys.executable, "-c", HOLD_TABLE, str(path), G],
        cwd=REPO,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
