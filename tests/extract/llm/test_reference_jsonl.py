"""Provider `reference-jsonl`: importing the reference run's predictions.jsonl, one rule per test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cache.store import Store
from cache.tables import read_priors, read_summaries
from cache.taxonomy import CLASS_INDEX
from extract.llm.cli import main


def _line(idx, sound_id, title, raw, status=200, error=None, **extra):
    return {
        "custom_id": f"dataset-index-{idx}",
        "dataset_index": idx,
        "sound_id": sound_id,
        "title": title,
        "tags": "",
        "description": "",
        "status_code": status,
        "error": error,
        "raw_response": raw,
        "prompt": "ignored",
        "reasoning": None,
        **extra,
    }


def _write(tmp_path: Path, lines, run="20260611_211801_BSD10k_gpt-5.4-mini_f5706ed2") -> Path:
    path = tmp_path / "processed_metadata" / run / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _arr(*pairs):
    return json.dumps([{"label": lab, "probability": p} for lab, p in pairs])


def _run(kind, root, path, *extra):
    return main(
        [
            kind,
            "--dataset",
            str(root),
            "--provider",
            "reference-jsonl",
            "--from",
            str(path),
            "--no-progress",
            *extra,
        ]
    )


def _priors(root, ids, name="reference-jsonl"):
    store = Store(root / "cache.zarr", mode="r")
    prior, missing = read_priors(store, name, ids)
    return prior, missing, store.read_table(f"llm/priors/{name}", ids=ids), store.attrs(f"llm/priors/{name}")


@pytest.fixture
def dataset(make_dataset, mrow):
    rows = [mrow("11", "fx-a", "dog bark"), mrow("12", "fx-v", "car passing"), mrow("13", "ss-n", "forest")]
    return make_dataset(rows)


def _one(dataset, tmp_path, raw, **kw):
    """Import one answer for clip 11 (the others get a plain fx-o answer); return its prior row."""
    lines = [
        _line(0, 11, "dog bark", raw, **kw),
        _line(1, 12, "car passing", _arr(("fx-o", 1))),
        _line(2, 13, "forest", _arr(("fx-o", 1))),
    ]
    assert _run("priors", dataset, _write(tmp_path, lines)) == 0
    prior, missing, table, _ = _priors(dataset, ["11"])
    return prior[0], bool(missing[0]), str(table["reason"][0])


def test_matches_by_sound_id_in_any_order(dataset, tmp_path):
    lines = [
        _line(2, 13, "forest", _arr(("ss-n", 1.0))),
        _line(0, 11, "dog bark", _arr(("fx-a", 1.0))),
        _line(1, 12, "car passing", _arr(("fx-v", 1.0))),
    ]
    lines[1]["dataset_index"] = 99  # the id decides; the index is not consulted when there is an id
    assert _run("priors", dataset, _write(tmp_path, lines)) == 0
    prior, missing, _, attrs = _priors(dataset, ["11", "12", "13"])
    assert not missing.any()
    assert prior.argmax(1).tolist() == [CLASS_INDEX["fx-a"], CLASS_INDEX["fx-v"], CLASS_INDEX["ss-n"]]
    assert attrs["import"]["matched_by_id"] == 3 and attrs["import"]["unmatched_lines"] == 0


def test_matches_by_dataset_index_counting_every_csv_row_and_checks_the_title(make_dataset, tmp_path):
    # an evaluation-style set: anonymous ids, no sound_id in the lines; CSV row 1 is a duplicate id
    # (dropped by the manifest but still counted by dataset_index)
    header = ["anonymous_id", "title", "tags", "description"]
    rows = [
        {"anonymous_id": "a1", "title": "rain"},
        {"anonymous_id": "a1", "title": "dup"},
        {"anonymous_id": "a3", "title": "birds"},
        {"anonymous_id": "a4", "title": "bells"},
    ]
    root = make_dataset(rows, header=header, id_col="anonymous_id", name="EVAL")
    lines = [
        _line(0, None, "rain", _arr(("ss-n", 1))),
        _line(2, None, "birds", _arr(("fx-a", 1))),
        _line(3, None, "not the title", _arr(("is-p", 1))),
    ]
    assert _run("priors", root, _write(tmp_path, lines)) == 0
    prior, missing, table, attrs = _priors(root, ["a1", "a3", "a4"])
    assert missing.tolist() == [False, False, True]
    assert prior[1, CLASS_INDEX["fx-a"]] == pytest.approx(1.0)  # row 2, not row 1
    imp = attrs["import"]
    assert imp["matched_by_dataset_index"] == 2 and imp["unmatched_lines"] == 1
    assert "line 3: title 'not the title' differs from CSV row 3" in imp["unmatched_examples"][0]
    assert str(table["reason"][2]) == "no line in predictions.jsonl"


def test_matches_by_anonymous_id_where_the_line_has_one(make_dataset, tmp_path):
    header = ["anonymous_id", "title", "tags", "description"]
    root = make_dataset(
        [{"anonymous_id": "x7", "title": "t"}, {"anonymous_id": "x8", "title": "u"}],
        header=header,
        id_col="anonymous_id",
        name="EVAL",
    )
    lines = [_line(0, None, "wrong title", _arr(("fx-h", 1)), anonymous_id="x8")]
    assert _run("priors", root, _write(tmp_path, lines)) == 0
    prior, missing, _, _ = _priors(root, ["x7", "x8"])
    assert missing.tolist() == [True, False] and prior[1, CLASS_INDEX["fx-h"]] == pytest.approx(1.0)


def test_unmatched_lines_and_clips_without_a_line_are_counted_and_named(dataset, tmp_path, capsys):
    lines = [
        _line(0, 11, "dog bark", _arr(("fx-a", 1))),
        _line(5, 999, "elsewhere", _arr(("fx-a", 1))),
        _line(7, None, "x", _arr(("fx-a", 1))),
    ]
    assert _run("priors", dataset, _write(tmp_path, lines)) == 0
    out = capsys.readouterr().out
    _, missing, table, attrs = _priors(dataset, ["11", "12", "13"])
    imp = attrs["import"]
    assert imp["unmatched_lines"] == 2 and imp["clips_without_line"] == 2
    assert imp["clips_without_line_examples"] == ["12", "13"]
    assert imp["unmatched_examples"] == [
        "line 2: id 999 is not a clip of this dataset",
        "line 3: dataset_index 7 outside the CSV's 3 rows",
    ]
    assert "clips_without_line: 2" in out and "unmatched_lines: 2" in out
    report = json.loads((dataset / "llm_reports" / "priors-reference-jsonl.json").read_text())
    assert report["report"]["provider_report"]["clips_without_line_examples"] == ["12", "13"]
    assert missing.tolist() == [False, True, True]


def test_only_a_json_list_counts(dataset, tmp_path):
    assert _one(dataset, tmp_path, json.dumps({"labels": [{"label": "fx-a", "probability": 1}]}))[1:] == (
        True,
        "rejected: not a JSON list (a JSON dict)",
    )
    assert _one(dataset, tmp_path, '```json\n[{"label": "fx-a", "probability": 1}]\n```')[1:] == (
        True,
        "rejected: not JSON",
    )


def test_items_that_are_not_objects_are_dropped(dataset, tmp_path):
    raw = json.dumps(["fx-v", ["fx-v", 0.9], {"label": "fx-a", "probability": 0.5}])
    prior, missing, _ = _one(dataset, tmp_path, raw)
    assert (
        not missing and prior[CLASS_INDEX["fx-a"]] == pytest.approx(1.0) and prior.sum() == pytest.approx(1.0)
    )


def test_other_and_unknown_labels_are_dropped_and_labels_are_exact(dataset, tmp_path):
    raw = _arr(("fx-a", 0.2), ("other", 0.5), ("FX-V", 0.1), ("Animals", 0.1), ("fx_v", 0.1))
    prior, missing, _ = _one(dataset, tmp_path, raw)
    assert not missing and prior[CLASS_INDEX["fx-a"]] == pytest.approx(1.0)  # no case/name repair
    _, attrs = _priors(dataset, ["11"])[2:]
    assert attrs["import"]["dropped_labels"] == {"other": 1, "unknown": 3}


def test_non_numeric_and_non_positive_probabilities_are_dropped(dataset, tmp_path):
    raw = json.dumps(
        [
            {"label": "fx-a", "probability": "0.9"},
            {"label": "fx-v", "probability": 0},
            {"label": "ss-n", "probability": -0.3},
            {"label": "fx-o", "probability": None},
            {"label": "is-p", "probability": 0.3},
            {"label": "fx-h"},
        ]
    )
    prior, missing, _ = _one(dataset, tmp_path, raw)
    assert not missing and prior[CLASS_INDEX["is-p"]] == pytest.approx(1.0)


def test_a_repeated_label_keeps_its_last_value_and_the_rest_is_renormalised(dataset, tmp_path):
    prior, missing, _ = _one(
        dataset, tmp_path, _arr(("fx-a", 0.9), ("fx-v", 0.2), ("fx-a", 0.2), ("other", 0.6))
    )
    assert not missing
    assert prior[CLASS_INDEX["fx-a"]] == pytest.approx(0.5) and prior[CLASS_INDEX["fx-v"]] == pytest.approx(
        0.5
    )
    assert np.count_nonzero(prior) == 2


def test_nothing_usable_is_missing(dataset, tmp_path):
    assert _one(dataset, tmp_path, _arr(("other", 1.0)))[1:] == (True, "rejected: only 'other'")
    assert _one(dataset, tmp_path, _arr(("fx-zz", 1.0), ("fx-a", 0)))[1:] == (
        True,
        "rejected: no usable label",
    )
    assert _one(dataset, tmp_path, "[]")[1:] == (True, "rejected: no usable label")
    assert _one(dataset, tmp_path, None)[1:] == (True, "rejected: no answer")


def test_failed_requests_are_missing(dataset, tmp_path):
    good = _arr(("fx-a", 1.0))
    assert _one(dataset, tmp_path, good, status=500)[1:] == (True, "request failed: status_code 500")
    assert _one(dataset, tmp_path, good, status=None)[1:] == (True, "request failed: status_code None")
    prior, missing, reason = _one(dataset, tmp_path, good, error={"code": "batch_expired"})
    assert missing and reason.startswith('request failed: {"code": "batch_expired"}')
    assert not prior.any()


def test_rejected_answers_are_kept_in_the_table(dataset, tmp_path):
    _one(dataset, tmp_path, _arr(("other", 1.0)))
    _, _, table, _ = _priors(dataset, ["11", "12"])
    assert table["answer"].tolist() == [_arr(("other", 1.0)), ""]


def test_summaries_are_verbatim_and_an_empty_answer_is_an_empty_text(dataset, tmp_path):
    lines = [
        _line(0, 11, "dog bark", "  A dog barks twice.\nThen silence. "),
        _line(1, 12, "car passing", None),
        _line(2, 13, "forest", None, status=500),
    ]
    assert _run("summaries", dataset, _write(tmp_path, lines)) == 0
    store = Store(dataset / "cache.zarr", mode="r")
    text, missing = read_summaries(store, "reference-jsonl", ["11", "12", "13"])
    assert text == ["  A dog barks twice.\nThen silence. ", "", ""]
    assert missing.tolist() == [False, False, True]
    assert store.attrs("llm/summaries/reference-jsonl")["import"]["empty_summaries"] == 1


def test_provenance_and_name(dataset, tmp_path):
    path = _write(tmp_path, [_line(0, 11, "dog bark", _arr(("fx-a", 1)))], run="run_A")
    assert _run("priors", dataset, path, "--name", "cpjku-gpt54mini") == 0
    attrs = Store(dataset / "cache.zarr", mode="r").attrs("llm/priors/cpjku-gpt54mini")
    assert attrs["provider"] == "reference-jsonl" and attrs["source_run"] == "run_A"
    assert attrs["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bad_line_or_no_file_is_a_clear_error(dataset, tmp_path, capsys):
    path = _write(tmp_path, [_line(0, 11, "dog bark", _arr(("fx-a", 1)))])
    path.write_text(path.read_text() + "{not json\n")
    assert _run("priors", dataset, path) == 2  # a user error: one line, exit 2
    assert f"{path}: line 2 is not valid JSON" in capsys.readouterr().err
    assert _run("priors", dataset, tmp_path / "nope.jsonl") == 2
    assert "--from: no such file" in capsys.readouterr().err
    assert main(["priors", "--dataset", str(dataset), "--provider", "reference-jsonl"]) == 2
    assert "needs the file to import: --from" in capsys.readouterr().err
