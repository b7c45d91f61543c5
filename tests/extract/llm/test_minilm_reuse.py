"""The offline providers read MiniLM metadata vectors already in the store instead of encoding
them again, only when the table holds exactly what they would compute."""

from __future__ import annotations

import numpy as np
import pytest

from cache.errors import MissingChunkError
from cache.manifest import load_manifest
from cache.schema import FAILED, OK
from cache.store import Store
from cache.tables import read_priors
from extract import minilm_weights
from extract.llm import minilm_reuse
from extract.llm.cli import main
from extract.llm.providers import embedded
from extract.runner import main as extract_main

WORDS = {
    "fx-a": "dog barking growl",
    "fx-v": "car engine passing",
    "m-m": "band song guitar drums",
    "ss-n": "forest birds ambience",
    "sp-s": "man talking voice",
}


@pytest.fixture
def dataset(make_dataset, mrow):
    rows = [
        mrow(
            str(100 + 10 * j + k),
            code,
            f"{words.split()[k % 3]} take {k}",
            words.replace(" ", ", "),
            f"clip {k}",
        )
        for k in range(8)
        for j, (code, words) in enumerate(WORDS.items())
    ]
    return make_dataset(rows)


def _extract(root):
    assert (
        extract_main(
            ["--dataset", str(root), "--backbone", "minilm", "--text-source", "metadata", "--device", "cpu"]
        )
        == 0
    )
    store = Store(root / "cache.zarr", mode="r")
    return next(t for t in store.tables("embeddings") if t.startswith("embeddings/minilm@"))


def _priors(root, tmp_path, *extra, name="embedded", store=None):
    args = [
        "priors",
        "--dataset",
        str(root),
        "--provider",
        name.split(":")[0],
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "llm-cache"),
        *extra,
    ]
    if store:
        args += ["--store", str(store)]
    assert main(args) == 0
    s = Store(store or root / "cache.zarr", mode="r")
    ids = load_manifest(root, require_audio=False, keep_non_targets=True).ids.tolist()
    prior, missing = read_priors(s, name.split(":")[0], ids)
    return prior, missing, s.attrs(f"llm/priors/{name.split(':')[0]}")


def _fresh(root, tmp_path, *extra, name="embedded"):
    """The same priors encoded afresh (a store without embeddings; nothing memoised)."""
    embedded._MEMO.clear()
    return _priors(root, tmp_path, *extra, name=name, store=tmp_path / "fresh.zarr")


@pytest.mark.slow
def test_embedded_and_knn_reuse_the_table_and_equal_fresh_encoding(dataset, tmp_path, monkeypatch):
    group = _extract(dataset)
    fresh, fmiss, fattrs = _fresh(dataset, tmp_path)
    assert fattrs["minilm_reuse"]["reused"] == 0 and fattrs["minilm_reuse"]["encoded"] == 40
    knn = ("--split-preset", "baseline", "--set", "llm.knn_k=5")
    fresh_knn, _, _ = _fresh(dataset, tmp_path, *knn, name="embedded-knn")

    # with the table and the class vectors on disk, no model is loaded at all
    embedded._MEMO.clear()
    monkeypatch.setattr(embedded, "get_encoder", lambda c: pytest.fail("MiniLM was loaded"))
    reused, rmiss, rattrs = _priors(dataset, tmp_path)
    assert rattrs["minilm_reuse"] == {"reused": 40, "table": group, "encoded": 0}
    assert (rmiss == fmiss).all() and np.abs(reused - fresh).max() < 1e-5
    assert reused.argmax(1).tolist() == fresh.argmax(1).tolist()
    reused_knn, _, kattrs = _priors(dataset, tmp_path, *knn, name="embedded-knn")
    assert (
        kattrs["minilm_reuse"]["pool"]["encoded"] == 0 and kattrs["minilm_reuse"]["queries"]["reused"] == 40
    )
    assert np.abs(reused_knn - fresh_knn).max() < 1e-5
    for k in ("encoder_weights_sha256", "encoder_compute_dtype", "encoder_max_length"):
        assert rattrs[k] == fattrs[k]


@pytest.mark.slow
def test_a_table_of_other_metadata_is_not_reused(dataset, tmp_path):
    _extract(dataset)
    csv = next((dataset / "metadata").glob("*_metadata.csv"))
    csv.write_text(csv.read_text().replace("take 3", "take three"))  # the texts changed since extraction
    _, _, attrs = _priors(dataset, tmp_path)
    assert attrs["minilm_reuse"]["reused"] == 0 and attrs["minilm_reuse"]["encoded"] == 40
    assert "manifest digest differs" in attrs["minilm_reuse"]["why_not"]


def _table(root, ids, attrs_over=None, status=None):
    """A hand-made minilm metadata table over ``ids`` (random unit vectors) matching the dataset."""
    sha = minilm_weights.weights_sha256(None)
    digest = load_manifest(root, require_audio=False, keep_non_targets=True).digest()
    attrs = {
        "backbone": "minilm",
        "text_source": "metadata",
        "random_init": False,
        "checkpoint_sha256": sha,
        "manifest_digest": digest,
        "dtype": "float32",
        "backbone_provenance": {"compute_dtype": "float32", "max_length": 256},
    }
    attrs.update(attrs_over or {})
    store = Store(root / "cache.zarr")
    w = store.create_rows(
        f"embeddings/minilm@{sha[:8]}~metadata",
        ids,
        {"text": ((384,), "float32")},
        chunk_rows=16,
        attrs=attrs,
        overwrite=True,
    )
    vecs = np.random.default_rng(0).normal(size=(len(ids), 384)).astype(np.float32)
    st = np.full(len(ids), OK, dtype=np.uint8) if status is None else status
    for k in range(w.n_chunks):
        lo, hi = w.chunk_range(k)
        if k == 2 and status is not None:
            continue  # chunk 2 never finished
        w.write_chunk(k, {"text": vecs[lo:hi]}, st[lo:hi], [""] * (hi - lo))
    return vecs


def test_only_done_ok_rows_are_taken(dataset):
    ids = load_manifest(dataset, require_audio=False, keep_non_targets=True).ids.tolist()
    status = np.full(len(ids), OK, dtype=np.uint8)
    status[3] = FAILED
    vecs = _table(dataset, ids, status=status)
    want = list(reversed(ids)) + ["nope"]
    digest = load_manifest(dataset, require_audio=False, keep_non_targets=True).digest()
    got, found, info = minilm_reuse.store_vectors(dataset / "cache.zarr", want, None, digest)
    expect = np.array([i != ids[3] and not 32 <= ids.index(i) < 48 for i in want[:-1]] + [False])
    assert (found == expect).all() and info["reused"] == int(expect.sum())
    rows = [ids.index(i) for i in np.array(want)[found]]
    assert np.array_equal(got[found], vecs[rows]) and not got[~found].any()


@pytest.mark.parametrize(
    "over, why",
    [
        ({"text_source": "summary"}, "text source 'summary'"),
        ({"checkpoint_sha256": "0" * 64}, "other weights"),
        ({"random_init": True}, "random weights"),
        ({"backbone_provenance": {"compute_dtype": "bfloat16", "max_length": 256}}, "compute dtype bfloat16"),
        ({"backbone_provenance": {"compute_dtype": "float32", "max_length": 128}}, "max_length 128"),
        ({"manifest_digest": "x"}, "manifest digest differs"),
    ],
)
def test_a_table_that_differs_in_what_decides_the_vectors_is_not_used(dataset, over, why):
    ids = load_manifest(dataset, require_audio=False, keep_non_targets=True).ids.tolist()
    _table(dataset, ids, over)
    digest = load_manifest(dataset, require_audio=False, keep_non_targets=True).digest()
    _, found, info = minilm_reuse.store_vectors(dataset / "cache.zarr", ids, None, digest)
    assert not found.any() and why in info["why_not"]


def test_class_vectors_are_kept_on_disk(tmp_path):
    calls = []

    def enc(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 384), dtype=np.float32)

    a = minilm_reuse.cached_encode(["x", "y"], None, tmp_path, enc)
    b = minilm_reuse.cached_encode(["x", "y"], None, tmp_path, enc)
    minilm_reuse.cached_encode(["x", "z"], None, tmp_path, enc)
    assert calls == [["x", "y"], ["x", "z"]] and np.array_equal(a, b)


def test_a_missing_chunk_file_of_the_table_is_an_error_not_zero_vectors(dataset):
    ids = load_manifest(dataset, require_audio=False, keep_non_targets=True).ids.tolist()
    _table(dataset, ids)
    group = next(t for t in Store(dataset / "cache.zarr", mode="r").tables("embeddings"))
    for f in (dataset / "cache.zarr" / group / "text" / "c").rglob("*"):
        if f.is_file() and f.parent.name == "1":  # row chunk 1 of the text vectors
            f.unlink()
    digest = load_manifest(dataset, require_audio=False, keep_non_targets=True).digest()
    with pytest.raises(MissingChunkError, match="chunk 1 .*missing"):
        minilm_reuse.store_vectors(dataset / "cache.zarr", ids, None, digest)
