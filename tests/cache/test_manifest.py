"""Manifest validation tried as a new user would: broken datasets built in tmp dirs."""

import csv

import numpy as np
import pytest

from cache.manifest import (
    LABELLED_COLUMNS,
    UNLABELLED,
    ManifestError,
    load_class_descriptions,
    load_manifest,
    shared_ids,
)
from cache.taxonomy import CLASS_INDEX


def problems_at(report, row):
    return [str(p) for p in report.problems if p.row == row]


def test_clean_dataset(make_dataset, row):
    root = make_dataset([row("1", "fx-a", confidence="5"), row("2", "m-sp", confidence=""), row("3", "ss-u")])
    m = load_manifest(root)
    assert m.name == "TEST" and m.labelled
    assert m.ids.tolist() == ["1", "2", "3"]
    assert m.labels.tolist() == [CLASS_INDEX["fx-a"], CLASS_INDEX["m-sp"], CLASS_INDEX["ss-u"]]
    assert m.confidence[0] == 5 and np.isnan(m.confidence[1])
    assert m.audio_paths[0] == root.resolve() / "audio" / "1.wav"
    assert m.title[2] == "clip 3" and m.metadata_text(0) == "clip 1 | field-recording,test | A short clip."
    assert m.report.errors == [] and m.report.counts["usable"] == 3
    assert m.class_counts()["fx-a"] == 1 and sum(m.class_counts().values()) == 3
    assert m.digest() == load_manifest(root).digest()
    assert "no problems found" in m.report.format()


def test_broken_dataset_report_names_each_problem_and_row(make_dataset, row):
    rows = [
        row("10", "fx-a"),  # row 1 ok
        row("10", "m-sp"),  # row 2 duplicate id
        row("11", "fx-zz", "4xx"),  # row 3 unknown class
        row("12", "is-p"),  # row 4 audio missing
        row("../../etc/x", "fx-a"),  # row 5 escapes the root
        row("13", "fx-other", "499"),  # row 6 non-target (other)
        row("14", "fx", "400"),  # row 7 non-target (top-level only)
        row("15", "", "500"),  # row 8 empty class, class_idx ...00
        row("16", "", "299"),  # row 9 empty class, class_idx ...99
        row("17", "ss-n", title="", tags="", description=""),  # row 10 all text empty
        row("", "fx-a"),  # row 11 empty id
        row("18", "", ""),  # row 12 no label at all
    ]
    root = make_dataset(rows, audio_ids=["10", "11", "13", "14", "15", "16", "17", "18"])
    m = load_manifest(root)
    rep = m.report
    assert m.ids.tolist() == ["10", "17"]
    assert any("duplicate id '10' (first on row 1)" in p for p in problems_at(rep, 2))
    assert any("unknown class 'fx-zz'" in p for p in problems_at(rep, 3))
    assert any("audio file missing" in p and "12.wav" in p for p in problems_at(rep, 4))
    assert any("outside the dataset root" in p and "../../etc/x" in p for p in problems_at(rep, 5))
    assert any("all metadata fields empty" in p for p in problems_at(rep, 10))
    assert any("empty id" in p for p in problems_at(rep, 11))
    assert any("empty class" in p for p in problems_at(rep, 12))
    assert problems_at(rep, 6) == problems_at(rep, 7) == problems_at(rep, 8) == problems_at(rep, 9) == []
    c = rep.counts
    assert (c["non_target_other"], c["non_target_top-level-only"], c["non_target_missing"]) == (2, 2, 1)
    assert (
        c["dropped_duplicate"],
        c["dropped_unknown_class"],
        c["dropped_missing_audio"],
        c["dropped_bad_id"],
    ) == (1, 1, 1, 2)
    assert c["rows"] == 12 and c["usable"] == 2 and c["empty_title"] == 1
    text = rep.format()
    for needle in ("row 2", "row 3", "row 4", "row 5", "row 11", "TEST_metadata.csv"):
        assert needle in text
    # the escaping id never produced a path outside the root
    assert all(p.is_relative_to(root.resolve()) for p in m.audio_paths)


def test_keep_non_targets_marks_them_unlabelled(make_dataset, row):
    root = make_dataset([row("1", "fx-a"), row("2", "", "400"), row("3", "sp-other", "399")])
    m = load_manifest(root, keep_non_targets=True)
    assert m.ids.tolist() == ["1", "2", "3"]
    assert m.labels.tolist() == [CLASS_INDEX["fx-a"], UNLABELLED, UNLABELLED]
    assert m.label_kinds.tolist() == ["target", "top-level-only", "other"]
    assert m.targets().ids.tolist() == ["1"]


def test_missing_optional_column_is_a_warning(make_dataset, row):
    header = [c for c in LABELLED_COLUMNS if c != "confidence"]
    root = make_dataset([row("1", "fx-a")], header=header)
    m = load_manifest(root)
    assert len(m) == 1 and np.isnan(m.confidence[0])
    assert [(p.field, p.severity) for p in m.report.problems] == [("confidence", "warning")]


@pytest.mark.parametrize("drop", ["sound_id", "class"])
def test_missing_key_column_is_fatal_and_named(make_dataset, row, drop):
    header = [c for c in row("1", "fx-a") if c != drop]
    root = make_dataset([row("1", "fx-a")], header=header)
    with pytest.raises(ManifestError, match=f"\\[{drop}\\]: missing column"):
        load_manifest(root)


def test_no_metadata_folder(tmp_path):
    with pytest.raises(ManifestError, match="no metadata/ folder"):
        load_manifest(tmp_path)


def test_ragged_rows_are_reported(make_dataset, row):
    root = make_dataset([row("1", "fx-a"), row("2", "fx-a")])
    csv_path = root / "metadata" / "TEST_metadata.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] += ",extra"
    lines[2] = "2,fx-a,415"
    csv_path.write_text("\n".join(lines) + "\n")
    m = load_manifest(root)
    assert m.ids.tolist() == ["1", "2"]
    assert any("more value(s) than header" in p for p in problems_at(m.report, 1))
    assert any("fewer than header" in p for p in problems_at(m.report, 2))


def test_non_utf8_bytes(make_dataset, row):
    root = make_dataset([row("1", "fx-a"), row("2", "fx-a", title="caf\u00e9")])
    csv_path = root / "metadata" / "TEST_metadata.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9"))  # latin-1 byte
    m = load_manifest(root)
    assert m.ids.tolist() == ["1", "2"] and m.title[1] == "caf\ufffd"
    assert any("non-UTF-8 bytes on line 3" in str(p) for p in m.report.problems)
    assert any("non-UTF-8" in p and "[title]" in p for p in problems_at(m.report, 2))


def test_multiline_quoted_description_keeps_rows(make_dataset, row):
    root = make_dataset(
        [row("1", "fx-a", description="line one\nline <b>two</b>, with comma"), row("2", "is-k")]
    )
    m = load_manifest(root)
    assert m.ids.tolist() == ["1", "2"] and m.description[0].startswith("line one\nline")


def test_unlabelled_evaluation_layout(make_dataset):
    rows = [
        {"anonymous_id": "0b7c-aa", "title": "t", "tags": "a,b", "description": "d"},
        {"anonymous_id": "9f00-bb", "title": "", "tags": "", "description": ""},
        {"anonymous_id": "0b7c-aa", "title": "again", "tags": "", "description": ""},
    ]
    root = make_dataset(rows, name="BSD2k", id_col="anonymous_id")
    m = load_manifest(root)
    assert not m.labelled and m.name == "BSD2k"
    assert m.ids.tolist() == ["0b7c-aa", "9f00-bb"] and m.labels.tolist() == [UNLABELLED, UNLABELLED]
    assert m.label_kinds.tolist() == ["unlabelled", "unlabelled"]
    assert any("duplicate id" in p for p in problems_at(m.report, 3))
    assert any("all metadata fields empty" in p for p in problems_at(m.report, 2))


def test_shared_ids_between_datasets(make_dataset, row):
    a = load_manifest(
        make_dataset([row("1", "fx-a"), row("2", "m-sp"), row("3", "ss-u")], sub="a", name="BSD10k")
    )
    b = load_manifest(
        make_dataset(
            [row("3", "ss-n"), row("2", "fx-a"), row("9", "fx-other", "499")], sub="b", name="BSD35k-CS"
        )
    )
    assert shared_ids(a, b) == ["2", "3"]


def test_class_descriptions(make_dataset, row):
    root = make_dataset([row("1", "fx-a")])
    with open(root / "metadata" / "BST_description.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "class_idx",
                "class_key",
                "class_key_long",
                "top_level",
                "second_level",
                "description",
                "examples",
            ]
        )
        w.writerow(["415", "fx-a", "fx-animals", "Sound effects", "Animals", "Animal sounds.", "dog bark"])
        w.writerow(["400", "fx", "fx", "Sound effects", "", "Top only.", ""])
    d = load_class_descriptions(root)
    assert list(d) == ["fx-a"] and d["fx-a"].name == "Animals" and d["fx-a"].examples == "dog bark"
    # the description file is not mistaken for the metadata file
    assert load_manifest(root).ids.tolist() == ["1"]


def test_field_of_several_megabytes_is_read_whole(make_dataset, row):
    rows = [row(str(i), "fx-a") for i in range(1, 31)]
    rows[4]["description"] = "long " * 1_000_000  # 5 MB, far over the csv module's default 128 KiB limit
    m = load_manifest(make_dataset(rows))
    assert len(m) == 30 and m.report.errors == []
    assert m.description[4] == ("long " * 1_000_000).strip()


def test_csv_that_stops_parsing_part_way_is_an_error_naming_file_and_row(make_dataset, row):
    root = make_dataset([row("1", "fx-a"), row("2", "fx-a", description="x" * 5000), row("3", "fx-a")])
    old = csv.field_size_limit(1000)  # any parse error that would drop the rest of the file
    try:
        with pytest.raises(
            ManifestError, match=r"TEST_metadata.csv: CSV cannot be parsed .*data row 2.*field larger"
        ):
            load_manifest(root)
    finally:
        csv.field_size_limit(old)


def test_symlinked_audio_folder_and_files_are_kept(make_dataset, row, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in ("1", "2", "3"):
        (pool / f"{i}.wav").write_bytes(b"RIFF")
    # the whole audio folder is a link to a pool outside the dataset
    root = make_dataset(
        [row("1", "fx-a"), row("2", "m-sp"), row("3", "ss-u")], sub="linked_dir", audio_ids=[]
    )
    (root / "audio").rmdir()
    (root / "audio").symlink_to(pool)
    m = load_manifest(root)
    assert m.ids.tolist() == ["1", "2", "3"] and m.report.errors == []
    assert m.audio_paths[0] == root.resolve() / "audio" / "1.wav"  # the dataset's path, not the link's target
    # per-file links, one of them dangling: the dangling one is kept (its decode fails later, per clip)
    root = make_dataset(
        [row("1", "fx-a"), row("2", "m-sp"), row("3", "ss-u")], sub="linked_files", audio_ids=[]
    )
    for i in ("1", "2"):
        (root / "audio" / f"{i}.wav").symlink_to(pool / f"{i}.wav")
    (root / "audio" / "3.wav").symlink_to(tmp_path / "nowhere" / "3.wav")
    m = load_manifest(root)
    assert m.ids.tolist() == ["1", "2", "3"] and m.report.errors == []
    assert not m.audio_paths[2].exists()


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "..", ".", "x..y", "/abs"])
def test_ids_that_are_not_plain_file_names_are_dropped(make_dataset, row, bad):
    m = load_manifest(make_dataset([row("1", "fx-a"), row(bad, "fx-a")], audio_ids=["1"]))
    assert m.ids.tolist() == ["1"]
    assert any("not a plain file name" in p and repr(bad) in p for p in problems_at(m.report, 2))


def test_no_usable_rows_is_an_error_naming_the_csv(make_dataset, row):
    root = make_dataset([], header=list(row("1", "fx-a")))  # header only
    with pytest.raises(
        ManifestError, match=r"no usable rows in .*TEST_metadata.csv \(it has a header but no data"
    ):
        load_manifest(root)
    root = make_dataset([row("1", "fx-a"), row("2", "m-sp")], sub="noaudio", audio_ids=[])
    with pytest.raises(
        ManifestError,
        match=r"(?s)no usable rows in .*TEST_metadata.csv \(the file has 2 row\(s\).*"
        r"audio file missing",
    ):
        load_manifest(root)
