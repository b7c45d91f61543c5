"""cache.chunks.read_array: the direct chunk-file reader agrees with zarr's own reading."""

import numpy as np
import pytest
import zarr

from cache.chunks import _raw_layout, read_array
from cache.schema import FAILED, OK
from cache.store import Store


@pytest.fixture
def group(tmp_path):
    return zarr.open_group(str(tmp_path / "g.zarr"), mode="w")


def _fill(a, rng):
    a[...] = (
        rng.standard_normal(a.shape).astype(a.dtype)
        if a.dtype.kind == "f"
        else rng.integers(0, 2 if a.dtype.kind == "b" else 200, a.shape).astype(a.dtype)
    )


@pytest.mark.parametrize(
    "shape,chunks,dtype",
    [
        ((1000, 7), (64, 7), "float32"),  # partial last chunk (1000 = 15*64 + 40)
        ((130, 2, 3), (50, 2, 3), "float64"),  # rows of several dims
        ((999,), (100,), "uint8"),  # 1-D, one-byte type (no endian in metadata)
        ((10,), (1,), "bool"),  # one element per chunk (like chunk_done)
        ((5, 4), (8, 4), "int64"),  # fewer rows than one chunk
    ],
)
def test_raw_arrays_read_directly_equal_zarr(group, shape, chunks, dtype):
    a = group.create_array("x", shape=shape, chunks=chunks, dtype=dtype, compressors=None, fill_value=0)
    _fill(a, np.random.default_rng(0))
    assert _raw_layout(a) is not None  # the fast path is taken
    out = read_array(a)
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    np.testing.assert_array_equal(out, a[...])


def test_missing_chunks_read_as_fill_value(group):
    a = group.create_array(
        "x", shape=(100, 3), chunks=(16, 3), dtype="float32", compressors=None, fill_value=-2.5
    )
    a[16:32] = 1.0  # only chunk 1 written
    a[96:100] = 7.0  # and the partial last chunk
    out = read_array(a)
    np.testing.assert_array_equal(out, a[...])
    assert out[0, 0] == -2.5 and out[20, 1] == 1.0 and out[40, 2] == -2.5 and out[99, 0] == 7.0


def test_other_layouts_fall_back_to_zarr(group):
    rng = np.random.default_rng(1)
    comp = group.create_array("comp", shape=(50, 4), chunks=(16, 4), dtype="float32")  # default zstd
    cols = group.create_array("cols", shape=(50, 4), chunks=(16, 2), dtype="float32", compressors=None)
    big = group.create_array("big", shape=(50, 4), chunks=(16, 4), dtype=">f4", compressors=None)
    for a in (comp, cols, big):
        _fill(a, rng)
        assert _raw_layout(a) is None
        np.testing.assert_array_equal(read_array(a), a[...])


def test_empty_array(group):
    a = group.create_array("x", shape=(0, 5), chunks=(8, 5), dtype="float32", compressors=None)
    assert read_array(a).shape == (0, 5)


def test_row_table_round_trip_uses_raw_float_columns(tmp_path):
    s = Store(tmp_path / "s.zarr")
    ids = [f"c{i}" for i in range(70)]
    X = np.random.default_rng(2).standard_normal((70, 6)).astype(np.float32)
    w = s.create_rows(
        "embeddings/t@none", ids, {"audio": ((6,), "float32"), "n_windows": ((), "int32")}, chunk_rows=32
    )
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        st = np.full(hi - lo, OK, np.uint8)
        st[0] = FAILED
        w.write_chunk(
            k, {"audio": X[lo:hi], "n_windows": np.arange(lo, hi)}, st, ["bad"] + [""] * (hi - lo - 1)
        )
    w.finalize()
    g = s.root["embeddings/t@none"]
    assert _raw_layout(g["audio"]) is not None and _raw_layout(g["status"]) is not None
    assert _raw_layout(g["n_windows"]) is None  # ints keep the default compression
    t = Store(tmp_path / "s.zarr", mode="r").read_table("embeddings/t@none")
    np.testing.assert_array_equal(t["audio"], X)
    np.testing.assert_array_equal(t["n_windows"], np.arange(70))
    assert list(np.flatnonzero(t["status"] == FAILED)) == [0, 32, 64]
    assert t["error"][32] == "bad" and t["error"][33] == ""
    rev = s.read_table("embeddings/t@none", ids=ids[::-1])
    np.testing.assert_array_equal(rev["audio"], X[::-1])
