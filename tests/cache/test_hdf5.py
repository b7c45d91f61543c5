import h5py
import numpy as np
import pytest

from cache.errors import SchemaError
from cache.hdf5 import ExportError, export_hdf5, import_hdf5, read_export_info, select_tables
from cache.schema import FAILED, OK
from cache.store import Store

IDS = ["a1", "b2", "c3", "d4", "e5"]


def _fill(store: Store) -> dict:
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((5, 6)).astype(np.float16)
    text = rng.standard_normal((5, 3)).astype(np.float32)
    w = store.create_rows(
        "embeddings/toy@none~title",
        IDS,
        {"audio": ((6,), "float16"), "text": ((3,), "float32"), "n_windows": ((), "int32")},
        chunk_rows=2,
        attrs={"producer": "test", "seed": 3},
    )
    status = np.array([OK, FAILED, OK, OK, OK], np.uint8)
    errors = ["", "soundfile: bad header (ünïcode)", "", "", ""]
    for k in w.pending_chunks():
        lo, hi = w.chunk_range(k)
        w.write_chunk(
            k,
            {"audio": audio[lo:hi], "text": text[lo:hi], "n_windows": np.arange(lo, hi)},
            status[lo:hi],
            errors[lo:hi],
        )
    w.finalize({"finished": True})
    prior = rng.random((5, 23)).astype(np.float32)
    store.write_table(
        "llm/priors/gpt",
        IDS,
        {"prior": prior, "missing": np.array([0, 0, 1, 0, 0], bool)},
        {"producer": "llm", "config": {"model": "m", "effort": "medium"}},
    )
    store.write_table(
        "llm/summaries/gpt",
        IDS,
        {
            "text": ["a dog barks", "", "Regen auf dem Dach", "☂", "x"],
            "missing": np.array([0, 1, 0, 0, 0], bool),
        },
        {"prompt_version": 1},
    )
    return {"audio": audio, "text": text, "status": status, "errors": errors, "prior": prior}


def test_round_trip_all_tables(tmp_path):
    src = Store(tmp_path / "src.zarr")
    ref = _fill(src)
    out = tmp_path / "x.h5"
    assert export_hdf5(src, out) == ["embeddings/toy@none~title", "llm/priors/gpt", "llm/summaries/gpt"]
    with h5py.File(out) as f:
        assert f.attrs["cache_schema_version"] == 1 and f["llm/priors/gpt"].attrs["kind"] == "table"
        assert f["embeddings/toy@none~title/audio"].dtype == np.float16
    dst = Store(tmp_path / "dst.zarr")
    assert import_hdf5(dst, out) == ["embeddings/toy@none~title", "llm/priors/gpt", "llm/summaries/gpt"]
    assert dst.tables() == src.tables()
    for t in src.tables():
        a, b = src.read_table(t), dst.read_table(t)
        assert b.ids.tolist() == a.ids.tolist() == IDS
        assert set(a.arrays) == set(b.arrays)
        for name in a.arrays:
            assert a[name].dtype == b[name].dtype, (t, name)
            np.testing.assert_array_equal(a[name], b[name])
        imported = {k: v for k, v in b.attrs.items() if k != "imported_from"}
        assert imported == a.attrs and b.attrs["imported_from"]["file"] == str(out.resolve())
    e = dst.read_table("embeddings/toy@none~title")
    np.testing.assert_array_equal(e["audio"], ref["audio"])
    np.testing.assert_array_equal(e["status"], ref["status"])
    assert e["error"].tolist() == ref["errors"] and e["n_windows"].dtype == np.int32
    assert dst.read_table("llm/summaries/gpt")["text"].tolist() == [
        "a dog barks",
        "",
        "Regen auf dem Dach",
        "☂",
        "x",
    ]
    assert dst.read_table("llm/priors/gpt").attrs["config"] == {"model": "m", "effort": "medium"}
    # the imported row table is a complete, resumable row table like the original
    w = dst.open_rows("embeddings/toy@none~title")
    assert w.complete and w.chunk_rows == 2 and w.pending_chunks() == []
    assert dst.failures() == [("embeddings/toy@none~title", "b2", "soundfile: bad header (ünïcode)")]


def test_group_selection_by_prefix(tmp_path):
    src = Store(tmp_path / "src.zarr")
    _fill(src)
    out = tmp_path / "x.h5"
    assert export_hdf5(src, out, ["llm"]) == ["llm/priors/gpt", "llm/summaries/gpt"]
    dst = Store(tmp_path / "dst.zarr")
    assert import_hdf5(dst, out, ["llm/summaries/gpt"]) == ["llm/summaries/gpt"]
    assert dst.tables() == ["llm/summaries/gpt"]
    with pytest.raises(ExportError, match="no table 'logits'; available: llm/priors/gpt, llm/summaries/gpt"):
        import_hdf5(dst, out, ["logits"])
    assert select_tables(["a/b", "a/bc", "c"], ["a/b"]) == ["a/b"]


def test_incomplete_tables_are_refused(tmp_path):
    s = Store(tmp_path / "s.zarr")
    _fill(s)
    w = s.create_rows("embeddings/half@none", IDS, {"audio": ((2,), "float32")}, chunk_rows=2)
    w.write_chunk(0, {"audio": np.zeros((2, 2))}, [OK, OK], ["", ""])
    with pytest.raises(
        ExportError, match=r"incomplete table\(s\).*'embeddings/half@none' \(2 of 3 chunks not written\)"
    ):
        export_hdf5(s, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.partial").exists()
    assert "embeddings/half@none" not in export_hdf5(s, tmp_path / "x.h5", skip_incomplete=True)
    s.write_table("logits/r", IDS, {"logits": np.zeros((5, 23), np.float32)})
    s.root["logits/r"].attrs["complete"] = False
    with pytest.raises(ExportError, match="'logits/r' \\(its write was interrupted\\)"):
        export_hdf5(s, tmp_path / "y.h5", ["logits"])


def test_import_refuses_existing_table_unless_overwrite(tmp_path):
    src = Store(tmp_path / "src.zarr")
    _fill(src)
    export_hdf5(src, tmp_path / "x.h5", ["llm/priors"])
    with pytest.raises(ExportError, match="already has table\\(s\\) llm/priors/gpt"):
        import_hdf5(src, tmp_path / "x.h5")
    assert import_hdf5(src, tmp_path / "x.h5", overwrite=True) == ["llm/priors/gpt"]


def test_import_refuses_other_schema_version_and_foreign_files(tmp_path):
    src = Store(tmp_path / "src.zarr")
    _fill(src)
    export_hdf5(src, tmp_path / "x.h5")
    with h5py.File(tmp_path / "x.h5", "a") as f:
        f.attrs["cache_schema_version"] = 2
    with pytest.raises(SchemaError, match="holds cache schema v2; this code reads v1"):
        import_hdf5(Store(tmp_path / "d.zarr"), tmp_path / "x.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(SchemaError, match="not a cache export"):
        read_export_info(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError):
        read_export_info(tmp_path / "missing.h5")


def test_empty_table_round_trip(tmp_path):
    src = Store(tmp_path / "src.zarr")
    src.write_table("logits/empty", [], {"logits": np.zeros((0, 23), np.float32)})
    export_hdf5(src, tmp_path / "x.h5")
    dst = Store(tmp_path / "dst.zarr")
    import_hdf5(dst, tmp_path / "x.h5")
    t = dst.read_table("logits/empty")
    assert len(t) == 0 and t["logits"].shape == (0, 23)
