import numpy as np
import pytest
import zarr

from cache.errors import SchemaError
from cache.schema import FAILED, OK, PENDING, SCHEMA_VERSION, MissingIdsError
from cache.store import Store, default_store_path


def test_whole_table_round_trip_and_join(tmp_path):
    s = Store(tmp_path / "s.zarr")
    prior = np.random.default_rng(0).random((3, 23)).astype(np.float32)
    s.write_table(
        "llm/priors/p1",
        ["a", "b", "c"],
        {"prior": prior, "missing": np.array([False, True, False])},
        {"producer": "test", "prompt_version": 2},
    )
    t = s.read_table("llm/priors/p1", ids=["c", "a"])
    assert t.ids.tolist() == ["c", "a"]
    np.testing.assert_array_equal(t["prior"], prior[[2, 0]])
    assert t["missing"].tolist() == [False, False]
    assert (
        t.attrs["producer"] == "test" and t.attrs["complete"] and t.attrs["schema_version"] == SCHEMA_VERSION
    )
    # provenance filled in
    assert t.attrs["prompt_version"] == 2 and t.attrs["code_version"] and t.attrs["created"]
    with pytest.raises(MissingIdsError, match="1 id\\(s\\) not in table 'llm/priors/p1': zz"):
        s.read_table("llm/priors/p1", ids=["a", "zz"])
    assert (
        s.tables() == ["llm/priors/p1"] and s.tables("llm") == ["llm/priors/p1"] and s.tables("logits") == []
    )
    assert s.tables("llm/priors/p1") == ["llm/priors/p1"] and s.has("llm/priors/p1") and not s.has("llm")


def test_write_table_rejects_bad_input(tmp_path):
    s = Store(tmp_path / "s.zarr")
    with pytest.raises(ValueError, match="duplicate ids"):
        s.write_table("logits/r", ["a", "a"], {"logits": np.zeros((2, 23))})
    with pytest.raises(ValueError, match="array 'logits' has 1 rows, ids has 2"):
        s.write_table("logits/r", ["a", "b"], {"logits": np.zeros((1, 23))})


def test_interrupted_whole_table_is_refused(tmp_path):
    s = Store(tmp_path / "s.zarr")
    s.write_table("logits/r", ["a"], {"logits": np.zeros((1, 23), np.float32)})
    s.root["logits/r"].attrs["complete"] = False  # as if killed before the last attribute write
    with pytest.raises(SchemaError, match="incomplete"):
        s.read_table("logits/r")


def _rows(s, n=5, chunk_rows=2):
    return s.create_rows(
        "embeddings/toy@none",
        [f"id{i}" for i in range(n)],
        {"audio": ((4,), "float16"), "duration": ((), "float32")},
        chunk_rows=chunk_rows,
        attrs={"producer": "test", "backbone": "toy"},
    )


def _chunk(w, k, fail_first=False):
    lo, hi = w.chunk_range(k)
    n = hi - lo
    st = np.full(n, OK, np.uint8)
    err = [""] * n
    if fail_first:
        st[0], err[0] = FAILED, "decode error: truncated file"
    w.write_chunk(
        k, {"audio": np.arange(lo, hi)[:, None] * np.ones((1, 4)), "duration": np.arange(lo, hi) / 2}, st, err
    )


def test_row_table_resume_and_failures(tmp_path):
    s = Store(tmp_path / "s.zarr")
    w = _rows(s)
    assert w.n_chunks == 3 and w.pending_chunks() == [0, 1, 2]
    assert w.pending_chunks(rank=1, world_size=2) == [1]
    _chunk(w, 0)
    with pytest.raises(SchemaError, match="incomplete \\(2 of 3 chunks missing\\)"):
        s.read_table("embeddings/toy@none")
    # a "new process" reopens the same table and only sees what is left
    w2 = Store(tmp_path / "s.zarr").create_rows(
        "embeddings/toy@none",
        [f"id{i}" for i in range(5)],
        {"audio": ((4,), "float16"), "duration": ((), "float32")},
        chunk_rows=2,
    )
    assert w2.pending_chunks() == [1, 2]
    _chunk(w2, 1, fail_first=True)
    _chunk(w2, 2)
    w2.finalize()
    t = s.read_table("embeddings/toy@none", ids=["id4", "id2", "id0"])
    assert t["audio"].dtype == np.float16 and t["audio"][:, 0].tolist() == [4, 2, 0]
    assert t["duration"].tolist() == [2.0, 1.0, 0.0]
    assert t["status"].tolist() == [OK, FAILED, OK] and t["error"][1] == "decode error: truncated file"
    assert s.failures() == [("embeddings/toy@none", "id2", "decode error: truncated file")]


def test_create_rows_refuses_a_different_table(tmp_path):
    s = Store(tmp_path / "s.zarr")
    _rows(s)
    with pytest.raises(SchemaError, match="already exists"):
        s.create_rows("embeddings/toy@none", ["x"], {"audio": ((4,), "float16")})
    w = s.create_rows("embeddings/toy@none", ["x"], {"audio": ((4,), "float16")}, overwrite=True)
    assert w.n_rows == 1


def test_verify_unmarks_bad_chunks(tmp_path):
    s = Store(tmp_path / "s.zarr")
    w = _rows(s)
    for k in range(3):
        _chunk(w, k)
    s.root["embeddings/toy@none/audio"][2, 1] = np.nan  # corrupt an ok row of chunk 1
    s.root["embeddings/toy@none/status"][4] = PENDING  # an undecided row in chunk 2
    assert w.verify() == [1, 2]
    assert w.pending_chunks() == [1, 2]
    with pytest.raises(SchemaError, match="2 unfinished chunk"):
        w.finalize()


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    Store(path)
    zarr.open_group(str(path), mode="a").attrs["schema_version"] = 2
    with pytest.raises(SchemaError, match=r"uses cache schema v2; this code reads v1"):
        Store(path)
    with pytest.raises(SchemaError, match="v2"):
        Store(path, mode="r")


def test_table_of_other_schema_version_is_refused(tmp_path):
    s = Store(tmp_path / "s.zarr")
    s.write_table("logits/r", ["a"], {"logits": np.zeros((1, 23), np.float32)})
    s.root["logits/r"].attrs["schema_version"] = 7
    with pytest.raises(SchemaError, match="table 'logits/r'.*schema v7"):
        s.read_table("logits/r")


def test_read_only_open(tmp_path):
    with pytest.raises(FileNotFoundError, match="cache store not found"):
        Store(tmp_path / "nope.zarr", mode="r")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(SchemaError, match="not a cache store"):
        Store(tmp_path / "plain.zarr", mode="r")
    assert default_store_path(tmp_path) == tmp_path / "cache.zarr"


def _rank_worker(args):
    path, rank, world = args
    w = Store(path).open_rows("embeddings/toy@none")
    for k in w.pending_chunks(rank, world):
        _chunk(w, k, fail_first=(k == 3))
    return rank


def test_two_processes_write_disjoint_chunks(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "s.zarr"
    n = 23
    _rows(Store(path), n=n, chunk_rows=2)  # 12 chunks: rank 0 gets even ones, rank 1 odd ones
    with mp.get_context("fork").Pool(2) as pool:
        assert sorted(pool.map(_rank_worker, [(path, 0, 2), (path, 1, 2)])) == [0, 1]
    s = Store(path)
    w = s.open_rows("embeddings/toy@none")
    assert w.complete and w.verify() == []
    w.finalize()
    t = s.read_table("embeddings/toy@none")
    np.testing.assert_array_equal(t["audio"][:, 0], np.arange(n))
    assert [f[1] for f in s.failures()] == ["id6"]  # first row of chunk 3


def test_row_table_warnings_column(tmp_path):
    s = Store(tmp_path / "s.zarr")
    w = s.create_rows("embeddings/x@none", ["a", "b", "c"], {"audio": ((2,), "float32")}, chunk_rows=2)
    assert w.has_warnings
    w.write_chunk(
        0, {"audio": np.ones((2, 2))}, [OK, FAILED], ["", "bad file"], warnings=["a.wav: truncated", ""]
    )
    w.write_chunk(1, {"audio": np.ones((1, 2))}, [OK], [""])  # no warnings given: none recorded
    w.finalize()
    t = s.read_table("embeddings/x@none")
    assert t["warning"].tolist() == ["a.wav: truncated", "", ""] and t["error"].tolist() == [
        "",
        "bad file",
        "",
    ]
    assert s.warnings() == [("embeddings/x@none", "a", "a.wav: truncated")]
    assert s.failures() == [("embeddings/x@none", "b", "bad file")]
    with pytest.raises(ValueError, match="needs 1 warnings"):
        s.open_rows("embeddings/x@none", lock=True).write_chunk(
            1, {"audio": np.ones((1, 2))}, [OK], [""], warnings=["x", "y"]
        )
    # a table made before the column: readers and writers do without it
    del s.root["embeddings/x@none"]["warning"]
    w = s.open_rows("embeddings/x@none", lock=True)
    assert not w.has_warnings
    w.write_chunk(1, {"audio": np.ones((1, 2))}, [OK], [""], warnings=["ignored"])
    w.close()
    assert "warning" not in s.read_table("embeddings/x@none").arrays and s.warnings() == []
