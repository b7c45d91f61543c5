"""Suspicious but usable audio (truncated file, a single sample, floats far beyond ±1) is embedded and
recorded with a warning: the table's ``warning`` column, the run's summary, ``python -m cache failures``
and ``info``; tables made before the column resume without it."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from cache.__main__ import main as cache_main
from cache.schema import FAILED, OK
from cache.store import Store
from extract.audio import load_audio
from extract.backbones import build_backbone
from extract.config import EmbeddingsConfig
from extract.runner import run_embeddings
from extract.windowing import embed_clips

from .conftest import signal, write_audio_dataset

IDS = ["201", "202", "203", "204", "205"]
GROUP = "embeddings/logmel@none"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = write_audio_dataset(
        tmp_path_factory.mktemp("warn") / "ds",
        [
            {"id": "201", "seconds": 1.5},
            {"id": "202", "seconds": 2.0},
            {"id": "203", "seconds": 1.0},
            {"id": "204", "seconds": 1.0},
            {"id": "205", "bad": "corrupt"},
        ],
        shipped=False,
    )
    audio = root / "audio"
    data = (audio / "202.wav").read_bytes()
    (audio / "202.wav").write_bytes(data[: int(len(data) * 0.6)])  # the header still declares 2 s
    sf.write(audio / "203.wav", np.array([[0.5]], dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(audio / "204.wav", signal("204", 1.0, 16000) * 20, 16000, subtype="FLOAT")  # peaks near 10
    return root


def _cfg(root, **kw) -> EmbeddingsConfig:
    base = dict(dataset=root, backbone="logmel", chunk_rows=2, batch_size=2, num_workers=0, progress=False)
    base.update(kw)
    return EmbeddingsConfig(**base)


@pytest.fixture(scope="module")
def run(ds):
    summary = run_embeddings(_cfg(ds))
    return summary, Store(ds / "cache.zarr").read_table(GROUP)


def test_warned_clips_are_embedded_and_recorded(ds, run):
    summary, t = run
    assert t["status"].tolist() == [OK, OK, OK, OK, FAILED]
    w = dict(zip(t.ids.tolist(), t["warning"].tolist(), strict=True))
    assert w["201"] == "" and w["205"] == ""  # a failure is an error, not a warning
    assert w["202"].startswith(
        f"{ds / 'audio' / '202.wav'}: truncated file: its header declares 176400 bytes"
    )
    assert w["203"] == f"{ds / 'audio' / '203.wav'}: only 1 sample(s) (0.0625 ms at 16000 Hz)"
    assert "204.wav: float samples up to" in w["204"] and "beyond ±4" in w["204"]
    assert summary.warnings == [(i, w[i]) for i in ("202", "203", "204")]
    text = summary.format()
    assert "5 rows, 4 ok, 1 failed, 3 with warnings;" in text
    assert "clips embedded with warnings (3):" in text and f"  203: {w['203']}" in text
    # the embeddings are those of the plain per-clip path
    bb = build_backbone("logmel")
    for k, cid in enumerate(IDS[:4]):
        ref = embed_clips(bb, [load_audio(ds / "audio" / f"{cid}.wav", 16000)])[0].numpy()
        np.testing.assert_allclose(t["audio"][k], ref, rtol=1e-5, atol=1e-5)
    assert t["n_windows"].tolist()[:4] == [1, 1, 1, 1]


def test_cache_failures_and_info_list_warnings(ds, run, capsys):
    _, t = run
    store = str(ds / "cache.zarr")
    assert cache_main(["failures", "--store", store]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"{GROUP}\t205\t") and "corrupt" in lines[0]
    assert lines[1:] == [
        f"{GROUP}\t{cid}\twarning: {t['warning'][k]}" for k, cid in ((1, "202"), (2, "203"), (3, "204"))
    ]
    assert "1 failed row(s), 3 row(s) with warnings (embedded)" in err
    assert cache_main(["info", "--store", store]) == 0
    out = capsys.readouterr().out
    assert f"{GROUP}  [row table, 5 rows, complete; ok 4, failed 1, pending 0, warnings 3]" in out
    assert "1 failed row(s), 3 row(s) with warnings (see: python -m cache failures)" in out


def test_a_table_without_the_warning_column_resumes(ds, tmp_path, capsys):
    store_path = tmp_path / "old.zarr"
    run_embeddings(_cfg(ds, store=store_path))
    store = Store(store_path)
    g = store.root[GROUP]
    del g["warning"]  # as created before the column existed
    g["chunk_done"][1] = False
    summary = run_embeddings(_cfg(ds, store=store_path))
    assert summary.chunks_written == 1 and summary.n_ok == 4 and summary.warnings == []
    assert "created before the 'warning' column" in capsys.readouterr().err
    t = Store(store_path).read_table(GROUP)
    assert "warning" not in t.arrays and t["status"].tolist() == [OK, OK, OK, OK, FAILED]
    assert Store(store_path).warnings() == []
