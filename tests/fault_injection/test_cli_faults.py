"""Fault injection through the command-line tools (``python -m cache …``, ``python -m extract embeddings
--backbone logmel``) on a tiny generated dataset: deleted chunks, a second writer while the lock is held,
a killed table creation, symlinked audio, a header-only CSV, a long CSV field, a damaged store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cache.errors import MissingChunkError
from cache.manifest import LABELLED_COLUMNS
from cache.store import Store
from testkit.bsd_dataset import labelled_row, write_metadata

REPO = Path(__file__).resolve().parents[2]
GROUP = "embeddings/logmel@none"
IDS = [str(100 + i) for i in range(5)]
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def _csv(root: Path, rows: list[dict]) -> None:
    write_metadata(root, rows, name="TINY", header=LABELLED_COLUMNS)


def _row(cid: str, **kw: str) -> dict:
    return labelled_row(cid, "fx-a", title=f"clip {cid}", tags="t", description="d", uploader="u", **kw)


def write_clips(folder: Path, ids=IDS) -> None:
    """Short deterministic tones, 0.3 s at 16 kHz."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(4800) / 16000
    for i, cid in enumerate(ids):
        sf.write(
            folder / f"{cid}.wav",
            (0.3 * np.sin(2 * np.pi * (300 + 70 * i) * t)).astype(np.float32),
            16000,
            subtype="PCM_16",
        )


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    write_clips(root / "audio")
    _csv(root, [_row(i) for i in IDS])
    return root


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        input=input,
        timeout=300,
    )


def extract(ds: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(
        "extract",
        "embeddings",
        "--dataset",
        str(ds),
        "--backbone",
        "logmel",
        "--store",
        str(store),
        "--chunk-rows",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
        *extra,
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The error line of a refused command: exit 2, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def audio(store: Path) -> np.ndarray:
    return Store(store, mode="r").read_table(GROUP)["audio"]


def chunk(store: Path, group: str, name: str, k: int) -> Path:
    a = Store(store, mode="r").root[f"{group}/{name}"]
    return store / group / name / a.metadata.encode_chunk_key((k,) + (0,) * (a.ndim - 1))


def test_deleted_chunk_is_reported_refused_and_recomputed(dataset, tmp_path):
    store = tmp_path / "s.zarr"
    assert extract(dataset, store).returncode == 0
    clean = audio(store)
    assert run("cache", "verify", "--store", str(store)).returncode == 0
    chunk(store, GROUP, "audio", 1).unlink()

    info = run("cache", "info", "--store", str(store))
    assert info.returncode == 0 and "DAMAGED (1 chunk file(s) missing)" in info.stdout
    assert f"missing: array 'audio': chunk 1 ({store}/{GROUP}/audio/c/1/0)" in info.stdout
    ver = run("cache", "verify", "--store", str(store))
    assert ver.returncode == 1
    assert ver.stdout.splitlines() == [
        f"{GROUP}: array 'audio': chunk 1 (rows 2-3) is missing ({store}/{GROUP}/audio/c/1/0)"
    ]
    with pytest.raises(MissingChunkError, match=r"array 'audio': chunk 1 \(rows 2-3\) is missing"):
        audio(store)  # never zeros

    again = extract(dataset, store)  # the re-run finds the damage and recomputes that chunk only
    assert again.returncode == 0, again.stderr
    assert "1 chunk(s) marked done failed verification and will be redone: [1]" in again.stderr
    assert "1 chunk(s) written, 2 already done" in again.stdout
    np.testing.assert_array_equal(audio(store), clean)
    assert run("cache", "verify", "--store", str(store)).returncode == 0


def test_deleted_chunk_of_a_priors_table(tmp_path):
    store = tmp_path / "s.zarr"
    Store(store).write_table(
        "llm/priors/p", IDS, {"prior": np.full((5, 23), 1 / 23, np.float32), "missing": np.zeros(5, bool)}
    )
    chunk(store, "llm/priors/p", "prior", 0).unlink()
    info = run("cache", "info", "--store", str(store))
    assert "llm/priors/p  [table, 5 rows, DAMAGED (1 chunk file(s) missing)]" in info.stdout
    ver = run("cache", "verify", "--store", str(store))
    assert ver.returncode == 1 and ver.stdout.startswith(
        "llm/priors/p: array 'prior': chunk 0 (rows 0-4) is missing"
    )
    exp = run("cache", "export", "--store", str(store), "--out", str(tmp_path / "x.h5"))
    assert (
        "damaged table(s)" in (line := one_line_error(exp))
        and "'llm/priors/p' (missing array 'prior': chunk 0" in line
    )


HOLD = """
import sys
from cache.store import Store
lease = Store(sys.argv[1]).lock(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


def test_second_writer_is_refused_while_the_first_holds_the_table(dataset, tmp_path):
    store = tmp_path / "s.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store), GROUP],
        cwd=REPO,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_line_error(extract(dataset, store, "--overwrite"))
        assert f"table '{GROUP}' in {store} is being written by another process (pid {holder.pid} on " in line
        assert f"lock file {store}/.locks/embeddings__logmel@none.lock" in line
        assert not Store(store, mode="r").has(GROUP)  # nothing was written
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert extract(dataset, store, "--overwrite").returncode == 0  # released when the holder ended


# the extraction CLI, killed (SIGKILL) right before the table's last attribute write: a half-created table
KILLED_CREATE = """
import os, signal, sys
import cache.store
cache.store._with_provenance = lambda attrs: os.kill(os.getpid(), signal.SIGKILL)
from extract.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_rerun_after_a_killed_table_creation_recreates_it(dataset, tmp_path):
    store = tmp_path / "s.zarr"
    args = [
        "embeddings",
        "--dataset",
        str(dataset),
        "--backbone",
        "logmel",
        "--store",
        str(store),
        "--chunk-rows",
        "2",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_CREATE, *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9
    s = Store(store, mode="r")
    assert "ids" in s.root[GROUP] and s.half_created(GROUP)
    info = run("cache", "info", "--store", str(store))
    assert info.returncode == 0 and "INCOMPLETE: its creation was interrupted" in info.stdout
    again = extract(dataset, store)  # the same command, no --overwrite
    assert again.returncode == 0, again.stderr
    assert "5 rows, 5 ok, 0 failed" in again.stdout
    ref = tmp_path / "ref.zarr"
    assert extract(dataset, ref).returncode == 0
    np.testing.assert_array_equal(audio(store), audio(ref))


def test_symlinked_audio_folder_with_a_dangling_link(tmp_path):
    pool = tmp_path / "pool" / "audio"
    write_clips(pool, IDS[:4])
    (pool / f"{IDS[4]}.wav").symlink_to(tmp_path / "gone" / "x.wav")  # dangling
    ds = tmp_path / "ds"
    _csv(ds, [_row(i) for i in IDS])
    (ds / "audio").symlink_to(pool)
    store = tmp_path / "s.zarr"
    val = run("cache", "validate", "--dataset", str(ds))
    assert (
        val.returncode == 0
        and "usable rows: 5" in val.stdout
        and "outside the dataset root" not in val.stdout
    )
    r = extract(ds, store)
    assert r.returncode == 0, r.stderr
    assert "5 rows, 4 ok, 1 failed" in r.stdout
    fail = run("cache", "failures", "--store", str(store))
    assert fail.stdout.startswith(f"{GROUP}\t{IDS[4]}\t") and "file not found" in fail.stdout
    # per-file links into the pool give the same embeddings
    ds2 = tmp_path / "ds2"
    _csv(ds2, [_row(i) for i in IDS[:4]])
    (ds2 / "audio").mkdir()
    for i in IDS[:4]:
        (ds2 / "audio" / f"{i}.wav").symlink_to(pool / f"{i}.wav")
    assert extract(ds2, tmp_path / "s2.zarr").returncode == 0
    np.testing.assert_array_equal(audio(tmp_path / "s2.zarr"), audio(store)[:4])


def test_header_only_csv_is_refused_in_one_line(tmp_path):
    ds = tmp_path / "ds"
    (ds / "audio").mkdir(parents=True)
    _csv(ds, [])
    line = one_line_error(extract(ds, tmp_path / "s.zarr"))
    assert f"no usable rows in {ds}/metadata/TINY_metadata.csv" in line and "internal error" not in line
    val = run("cache", "validate", "--dataset", str(ds))
    assert val.returncode == 2 and "no usable rows" in val.stdout


def test_long_csv_field_keeps_every_row(tmp_path):
    ds = tmp_path / "ds"
    ids = [str(200 + i) for i in range(30)]
    rows = [_row(i) for i in ids]
    rows[4]["description"] = "word " * 600_000  # 3 MB
    _csv(ds, rows)
    val = run("cache", "validate", "--dataset", str(ds), "--no-audio-check")
    assert val.returncode == 0 and "usable rows: 30" in val.stdout and "ERROR" not in val.stdout


def test_damaged_store_gives_one_line_naming_the_file(dataset, tmp_path):
    store = tmp_path / "s.zarr"
    assert extract(dataset, store).returncode == 0
    work = tmp_path / "w.zarr"

    # a table of another schema version
    shutil.copytree(store, work)
    meta = work / GROUP / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = 2
    meta.write_text(json.dumps(doc))
    line = one_line_error(run("cache", "info", "--store", str(work)))
    assert f"table '{GROUP}' in {work} was written with cache schema v2" in line
    debug = run("cache", "info", "--store", str(work), "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    # a broken zarr.json
    shutil.rmtree(work)
    shutil.copytree(store, work)
    (work / GROUP / "audio" / "zarr.json").write_text('{"zarr_format": 3, "node_type": ')
    line = one_line_error(run("cache", "info", "--store", str(work)))
    assert f"{work}/{GROUP}/audio/zarr.json: not valid JSON" in line
    ver = run("cache", "verify", "--store", str(work))
    assert ver.returncode == 1 and ver.stdout.startswith(f"{work}/{GROUP}/audio/zarr.json: not valid JSON")

    # a broken zstd chunk (error strings are compressed) and a truncated raw one
    shutil.rmtree(work)
    shutil.copytree(store, work)
    chunk(work, GROUP, "error", 0).write_bytes(b"garbage, not zstd")
    chunk(work, GROUP, "status", 2).write_bytes(b"")
    line = one_line_error(run("cache", "failures", "--store", str(work)))
    assert f"chunk file {work}/{GROUP}/status/c/2 is truncated" in line
    line = one_line_error(run("cache", "info", "--store", str(work)))
    assert line.startswith(f"error: {GROUP}: array 'error': chunk 0 (rows 0-1) cannot be decoded")
    assert line.endswith(f"({work}/{GROUP}/error/c/0) (and 1 more: python -m cache verify --store {work})")
    ver = run("cache", "verify", "--store", str(work))
    assert ver.returncode == 1
    assert ver.stdout.splitlines() == [
        (
            f"{GROUP}: array 'error': chunk 0 (rows 0-1) cannot be decoded "
            f"(RuntimeError: Zstd decompression error: invalid input data) ({work}/{GROUP}/error/c/0)"
        ),
        f"{GROUP}: array 'status': chunk 2 (rows 4-4) has 0 bytes instead of 2 ({work}/{GROUP}/status/c/2)",
    ]
