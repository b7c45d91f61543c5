"""``python -m heads.score`` through main(argv) and one subprocess run."""

import json
import subprocess
import sys

import pytest

from cache.manifest import LABELLED_COLUMNS
from heads.score import ScoreInputError, main, score_files

PRED_HEADER = "id,predicted_bst_second_level_class,prediction_score\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def example(tmp_path):
    """A worked example of the metric (docs/heads.md, "Metric conventions") as files."""
    truth = write(tmp_path / "truth.csv", "id,class\na,m-sp\nb,m-si\nc,m-si\nd,fx-a\n")
    pred = write(tmp_path / "pred.csv", PRED_HEADER + "d,fx-a,0.9\nc,m-si,0.5\nb,m-m,0.4\na,m-sp,1.0\n")
    return truth, pred


def test_json_output(example, capsys):
    truth, pred = example
    assert main(["--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {
        "hP",
        "hR",
        "hF",
        "per_class",
        "never_predicted",
        "n_items",
        "n_non_target_excluded",
        "n_predictions_for_non_targets",
    }
    assert doc["hP"] == pytest.approx(1.0, abs=1e-9)
    assert doc["hR"] == pytest.approx(0.8958333333333334, abs=1e-9)
    assert doc["hF"] == pytest.approx(0.9382716049382716, abs=1e-9)
    assert doc["per_class"]["m-si"]["hR"] == pytest.approx(0.6875) and set(doc["per_class"]) == {
        "m-sp",
        "m-si",
        "fx-a",
    }
    assert doc["never_predicted"] == "zero" and doc["n_items"] == 4


def test_markdown_output_and_conventions(tmp_path, capsys):
    truth = write(tmp_path / "t.csv", "id,class\n1,m-sp\n2,fx-a\n")
    pred = write(tmp_path / "p.csv", PRED_HEADER + "1,m-sp,0.8\n2,m-si,0.6\n")
    assert main(["--truth", str(truth), "--pred", str(pred)]) == 0
    out = capsys.readouterr().out
    assert "hF 0.5000" in out and "never-predicted convention: 'zero'" in out and "| fx-a |" in out
    assert main(["--truth", str(truth), "--pred", str(pred), "--never-predicted", "drop", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["hP"], doc["hR"], doc["hF"], doc["never_predicted"]) == (1.0, 1.0, 1.0, "drop")
    assert doc["per_class"]["fx-a"]["hP"] is None
    assert score_files(truth, pred, "drop").hF == 1.0 and score_files(truth, pred).hF == 0.5


def test_dataset_metadata_csv_as_truth(tmp_path, capsys):
    truth = write(
        tmp_path / "BSD10k_metadata.csv",
        ",".join(LABELLED_COLUMNS) + "\n"
        '11,fx-a,415,fx,5,u,CC0,dog,"dog,bark",woof\n'
        "12,fx-other,499,fx,,u,CC0,?,,\n"
        "13,,300,sp,,u,CC0,talk,,\n"
        "14,m-sp,101,m,3,u,CC0,drum,,\n",
    )
    pred = write(tmp_path / "p.csv", PRED_HEADER + "11,fx-a,0.7\n12,fx-o,0.5\n14,m-si,0.6\n")
    assert main(["--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["n_items"] == 2
        and doc["n_non_target_excluded"] == 2
        and doc["n_predictions_for_non_targets"] == 1
    )
    # fx-a: 1/1 ; m-sp: R=.375, never predicted -> P=0, F=0
    assert doc["hR"] == pytest.approx((1 + 0.375) / 2) and doc["hF"] == pytest.approx(0.5)


def test_anonymous_id_truth(tmp_path):
    truth = write(tmp_path / "t.csv", "anonymous_id,class\n0b7c-aa,ss-u\n9f00-bb,ss-n\n")
    pred = write(tmp_path / "p.csv", PRED_HEADER + "9f00-bb,ss-n,1\n0b7c-aa,ss-u,1\n")
    assert score_files(truth, pred).hF == 1.0


@pytest.mark.parametrize(
    "pred_body,message",
    [
        ("a,m-sp,1\nb,m-si,1\nc,m-si,1\n", "1 id\\(s\\) of .*truth.csv have no prediction in .*pred.csv: d"),
        (
            "a,m-sp,1\nb,m-si,1\nc,m-si,1\nd,fx-a,1\nzz,fx-a,1\nyy,fx-a,1\n",
            "2 id\\(s\\) of .*pred.csv are not in .*truth.csv: zz, yy",
        ),
        ("a,m-sp,1\nb,fx-zz,1\n", "pred.csv row 2 \\(id 'b'\\): unknown predicted class 'fx-zz'"),
        ("a,m-sp,1\na,m-sp,1\n", "pred.csv row 2: duplicate id 'a' \\(first on row 1\\)"),
        ("a,m-sp,1.5\n", "pred.csv row 1 \\(id 'a'\\): prediction_score 1.5 outside \\[0, 1\\]"),
        ("a,m-sp,high\n", "prediction_score 'high' is not a number"),
        ("a,fx-other,0.1\n", "unknown predicted class 'fx-other'"),
    ],
)
def test_bad_predictions_exit_2_naming_the_problem(example, capsys, pred_body, message):
    truth, pred = example
    write(pred, PRED_HEADER + pred_body)
    with pytest.raises(ScoreInputError, match=message):
        score_files(truth, pred)
    assert main(["--truth", str(truth), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "truth_body,message",
    [
        ("id,label\na,m-sp\n", "needs columns 'id,class'"),
        ("id,class\na,m-sp\nb,fx-zz\n", "truth.csv row 2: unknown class 'fx-zz'"),
        ("id,class\na,m-sp\na,m-si\n", "row 2: duplicate id 'a'"),
        ("id,class\na,m-sp\nb,\n", "row 2 \\(id 'b'\\): empty class"),
        ("id,class\nb,fx-other\n", "no row with a target class"),
    ],
)
def test_bad_truth(example, truth_body, message):
    truth, pred = example
    write(truth, truth_body)
    with pytest.raises(ScoreInputError, match=message):
        score_files(truth, pred)


def test_missing_files_and_columns(tmp_path, example):
    truth, pred = example
    with pytest.raises(ScoreInputError, match="nope.csv: file not found"):
        score_files(truth, tmp_path / "nope.csv")
    write(pred, "id,class\na,m-sp\n")
    with pytest.raises(ScoreInputError, match="missing column\\(s\\) predicted_bst_second_level_class"):
        score_files(truth, pred)


def test_module_entry_point(example):
    truth, pred = example
    r = subprocess.run(
        [sys.executable, "-m", "heads.score", "--truth", str(truth), "--pred", str(pred), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hF"] == pytest.approx(0.9382716049382716, abs=1e-9)
