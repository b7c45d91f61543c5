"""The ``shipped`` backbone: the dataset's precomputed CLAP vectors imported through the runner."""

from __future__ import annotations

import numpy as np
import pytest

from cache.schema import FAILED, OK
from cache.store import Store
from extract.backbones.shipped import ShippedFeatureError, load_vector
from extract.config import EmbeddingsConfig
from extract.runner import run_embeddings

CLIPS = [
    {"id": "1", "seconds": 0.1},
    {"id": "2", "seconds": 0.1, "shipped": False},
    {"id": "3", "bad": "corrupt"},
    {"id": "4", "seconds": 0.1},
    {"id": "5", "seconds": 0.1},
]


def test_shipped_import_with_failure_rows(audio_dataset):
    root = audio_dataset(CLIPS)
    feats = root / "features"
    (feats / "clap_text_embeddings" / "4.npy").write_bytes(b"\x93NUMPY garbage")  # truncated .npy
    np.save(feats / "clap_audio_embeddings" / "5.npy", np.zeros(300, np.float32))  # wrong size
    summary = run_embeddings(
        EmbeddingsConfig(dataset=root, backbone="shipped", chunk_rows=2, num_workers=0, progress=False)
    )
    t = Store(root / "cache.zarr").read_table("embeddings/shipped@none")
    assert t.ids.tolist() == ["1", "2", "3", "4", "5"]
    # clip 3's audio is corrupt, its features are fine
    assert t["status"].tolist() == [OK, FAILED, OK, FAILED, FAILED]
    assert set(t.attrs["columns"]) == {"audio", "text"} and t.attrs["text_source"] == "shipped"
    for k in (0, 2):
        cid = t.ids[k]
        np.testing.assert_array_equal(t["audio"][k], np.load(feats / "clap_audio_embeddings" / f"{cid}.npy"))
        np.testing.assert_array_equal(t["text"][k], np.load(feats / "clap_text_embeddings" / f"{cid}.npy"))
    reasons = dict(summary.failures)
    assert "clap_audio_embeddings/2.npy: file not found" in reasons["2"]
    assert "clap_text_embeddings/4.npy: corrupt or unreadable" in reasons["4"]
    assert "clap_audio_embeddings/5.npy: shape (300,), expected (512,)" in reasons["5"]
    assert not t["audio"][1].any() and not t["text"][3].any()


def test_load_vector_shapes_and_values(tmp_path):
    p = tmp_path / "v.npy"
    np.save(p, np.arange(512, dtype=np.float64).reshape(1, 512))
    v = load_vector(p)
    assert v.dtype == np.float32 and v.shape == (512,) and v[511] == 511
    bad = np.ones(512, np.float32)
    bad[7] = np.nan
    np.save(p, bad)
    with pytest.raises(ShippedFeatureError, match="non-finite"):
        load_vector(p)
    np.save(p, np.array(["a"] * 512))
    with pytest.raises(ShippedFeatureError, match="not numeric"):
        load_vector(p)
