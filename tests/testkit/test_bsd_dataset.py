"""The testkit's tiny datasets are what the manifest reader expects: no problems, every row usable."""

from __future__ import annotations

import numpy as np

from cache.manifest import LABELLED_COLUMNS, load_manifest
from cache.taxonomy import CLASS_INDEX
from testkit.bsd_dataset import balanced_rows, labelled_row, unlabelled_row, write_dataset, write_wav


def test_labelled_dataset_reads_back_without_problems(tmp_path):
    rows = balanced_rows(1, classes=["fx-a", "m-sp"], start=5) + [labelled_row("9", "ss-u", confidence="2")]
    root = write_dataset(tmp_path / "d", rows, name="SET")
    assert (root / "metadata" / "SET_metadata.csv").read_text().splitlines()[0] == ",".join(LABELLED_COLUMNS)
    m = load_manifest(root)
    assert m.report.problems == [] and m.labelled
    assert m.ids.tolist() == ["5", "6", "9"]
    assert m.labels.tolist() == [CLASS_INDEX["fx-a"], CLASS_INDEX["m-sp"], CLASS_INDEX["ss-u"]]
    assert m.confidence.tolist() == [4.0, 4.0, 2.0]


def test_unlabelled_dataset_and_real_audio(tmp_path):
    root = write_dataset(
        tmp_path / "e",
        [unlabelled_row("a-1", "dog"), unlabelled_row("b-2", tags="rain")],
        name="EVAL",
        id_col="anonymous_id",
    )
    x = np.sin(np.arange(800) / 5).astype(np.float32) * 0.5
    write_wav(root, "a-1", x, 8000)
    m = load_manifest(root)
    assert not m.labelled and m.ids.tolist() == ["a-1", "b-2"] and m.report.problems == []
    assert (root / "audio" / "a-1.wav").stat().st_size == 44 + 2 * 800  # 16-bit PCM WAV
    assert (root / "audio" / "b-2.wav").stat().st_size == 0  # placeholder
