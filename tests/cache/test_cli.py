"""``python -m cache`` through its main(argv) (one real subprocess run)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from cache.__main__ import main
from cache.schema import FAILED, OK
from cache.splits import Split
from cache.store import Store


def test_validate_reports_problems_counts_and_shared_ids(make_dataset, row, balanced, capsys):
    clean = make_dataset(
        balanced(2, classes=["fx-a", "m-sp"], start=1) + [row("99", "fx-zz", "4xx")],
        sub="bsd10k",
        name="BSD10k",
    )
    noisy = make_dataset(
        [
            row("1", "m-m"),
            row("2", "fx-a"),
            row("50", "fx-other", "499"),
            row("51", "", "400"),
            row("52", "ss-u"),
        ],
        sub="bsd35k",
        name="BSD35k-CS",
        audio_ids=["1", "2", "50", "51"],
    )
    evals = make_dataset(
        [{"anonymous_id": "u-1", "title": "t", "tags": "", "description": ""}],
        sub="eval",
        name="BSD2k",
        id_col="anonymous_id",
    )
    rc = main(["validate", "--dataset", str(clean), "--dataset", str(noisy), "--dataset", str(evals)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "BSD10k_metadata.csv row 5 [class]: unknown class 'fx-zz'" in out
    assert "BSD35k-CS_metadata.csv row 5 [audio]: audio file missing" in out
    assert "non-target rows dropped: other 1, top-level-only 1" in out
    assert "| fx-a | 2 | 1 |" in out and "| m-m | 0 | 1 |" in out and "| total | 4 | 2 |" in out
    assert "ids shared by BSD10k and BSD35k-CS: 2 (1, 2)" in out
    assert "ids shared by BSD10k and BSD2k: 0" in out
    assert "unlabelled, keyed by anonymous_id" in out
    assert out.count("class descriptions: metadata/BST_description.csv not found") == 2


def test_validate_unreadable_dataset_exits_2(make_dataset, row, tmp_path, capsys):
    ok = make_dataset([row("1", "fx-a")])
    broken = make_dataset([{"id": "1", "label": "fx-a"}], sub="broken")
    rc = main(
        ["validate", "--dataset", str(ok), "--dataset", str(broken), "--dataset", str(tmp_path / "nothing")]
    )
    out = capsys.readouterr().out
    assert rc == 2
    assert "[sound_id]: missing column (cannot read the dataset without it)" in out
    assert "no metadata/ folder" in out and "usable rows: 1" in out


def test_split_prints_counts_and_saves(make_dataset, balanced, tmp_path, capsys):
    root = make_dataset(balanced(10, classes=["fx-a", "m-sp", "ss-n"]), name="BSD10k")
    out_json = tmp_path / "split.json"
    assert (
        main(["split", "--dataset", str(root), "--preset", "baseline", "--fold", "2", "--out", str(out_json)])
        == 0
    )
    out = capsys.readouterr().out
    sp = Split.load(out_json)
    assert (sp.preset, sp.fold, sp.fold_seed, sp.dataset) == ("baseline", 2, 1821, "BSD10k")
    assert (
        "| class | train | val | test |" in out and "| total | 19 | 5 | 6 |" in out
    )  # 30 clips: 20% test, 20% of rest val
    label = {r["sound_id"]: r["class"] for r in balanced(10, classes=["fx-a", "m-sp", "ss-n"])}
    for code in ("fx-a", "m-sp", "ss-n"):
        n = [sum(label[i] == code for i in sp.part(p)) for p in ("train", "val", "test")]
        assert n[2] == 2 and sum(n) == 10 and f"| {code} | {n[0]} | {n[1]} | {n[2]} |" in out
    assert (
        main(["split", "--dataset", str(root), "--preset", "custom", "--seed", "9", "--out", str(out_json)])
        == 0
    )
    assert Split.load(out_json).fold_seed == 9
    capsys.readouterr()
    assert main(["split", "--dataset", str(root), "--preset", "custom", "--out", str(out_json)]) == 2
    assert "needs a seed" in capsys.readouterr().err


def _store(tmp_path):
    s = Store(tmp_path / "s.zarr")
    w = s.create_rows(
        "embeddings/toy@none",
        ["a", "b", "c"],
        {"audio": ((2,), "float32")},
        chunk_rows=2,
        attrs={"producer": "extract", "backbone": "toy"},
    )
    w.write_chunk(0, {"audio": np.ones((2, 2))}, [OK, FAILED], ["", "decode failed"])
    s.write_table(
        "logits/run1", ["a", "b", "c"], {"logits": np.zeros((3, 23), np.float32)}, {"producer": "heads"}
    )
    return s, w


def test_info_failures_export_import(tmp_path, capsys):
    s, w = _store(tmp_path)
    assert main(["info", "--store", str(s.path)]) == 0
    out = capsys.readouterr().out
    assert (
        "embeddings/toy@none  [row table, 3 rows, INCOMPLETE (1/2 chunks); ok 1, failed 1, pending 1]" in out
    )
    assert "logits/run1  [table, 3 rows, complete]" in out and "producer=heads" in out
    assert "2 table(s); 1 failed row(s)" in out
    assert main(["failures", "--store", str(s.path)]) == 0
    assert capsys.readouterr().out == "embeddings/toy@none\tb\tdecode failed\n"
    h5 = tmp_path / "x.h5"
    assert main(["export", "--store", str(s.path), "--out", str(h5)]) == 2
    assert "refusing to export incomplete table(s)" in capsys.readouterr().err
    w.write_chunk(1, {"audio": np.ones((1, 2))}, [OK], [""])
    w.finalize()
    assert main(["export", "--store", str(s.path), "--out", str(h5)]) == 0
    assert main(["import", "--store", str(tmp_path / "d.zarr"), "--h5", str(h5), "--group", "logits"]) == 0
    assert "imported 1 table(s)" in capsys.readouterr().out
    assert Store(tmp_path / "d.zarr").tables() == ["logits/run1"]
    assert main(["import", "--store", str(tmp_path / "d.zarr"), "--h5", str(h5), "--group", "logits"]) == 2
    assert main(["info", "--store", str(tmp_path / "missing.zarr")]) == 2
    assert "cache store not found" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    _store(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "cache", "failures", "--store", str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout == "embeddings/toy@none\tb\tdecode failed\n"
    assert "1 failed row(s)" in r.stderr


@pytest.mark.parametrize("argv", [[], ["split", "--dataset", "x"], ["demo-data", "--out", "x"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_warnings_in_info_failures_and_hdf5_round_trip(tmp_path, capsys):
    s = Store(tmp_path / "s.zarr")
    w = s.create_rows("embeddings/toy@none", ["a", "b", "c"], {"audio": ((2,), "float32")}, chunk_rows=2)
    w.write_chunk(
        0, {"audio": np.ones((2, 2))}, [OK, FAILED], ["", "decode failed"], warnings=["a.wav: cut", ""]
    )
    w.write_chunk(1, {"audio": np.ones((1, 2))}, [OK], [""], warnings=["c.wav: loud"])
    w.finalize()
    assert main(["info", "--store", str(s.path)]) == 0
    out = capsys.readouterr().out
    assert "[row table, 3 rows, complete; ok 2, failed 1, pending 0, warnings 2]" in out
    assert "1 table(s); 1 failed row(s), 2 row(s) with warnings (see: python -m cache failures)" in out
    assert main(["failures", "--store", str(s.path)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "embeddings/toy@none\tb\tdecode failed\n"
        "embeddings/toy@none\ta\twarning: a.wav: cut\nembeddings/toy@none\tc\twarning: c.wav: loud\n"
    )
    assert "1 failed row(s), 2 row(s) with warnings (embedded)" in err
    h5 = tmp_path / "x.h5"
    assert main(["export", "--store", str(s.path), "--out", str(h5)]) == 0
    assert main(["import", "--store", str(tmp_path / "d.zarr"), "--h5", str(h5)]) == 0
    assert Store(tmp_path / "d.zarr").read_table("embeddings/toy@none")["warning"].tolist() == [
        "a.wav: cut",
        "",
        "c.wav: loud",
    ]


def test_validate_max_lines_summarises_the_rest(make_dataset, row, capsys):
    rows = [row(str(i), "fx-a") for i in range(1, 4)] + [row(str(1 + i % 3), "fx-a") for i in range(40)]
    rows += [row(str(100 + i), f"fx-zz{i}", "4xx") for i in range(30)]  # each message names another class
    d = make_dataset(rows, audio_ids=[str(i) for i in range(1, 4)] + [str(100 + i) for i in range(30)])
    assert main(["validate", "--dataset", str(d), "--max-lines", "5"]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("  ERROR") or line.startswith("  WARNING")]
    assert len(listed) == 5
    (more,) = [line for line in out.splitlines() if "more problem(s)" in line]
    # 70 problems: 5 listed, 65 summarised by kind with a count and a few rows, not one entry per id
    assert "… 65 more problem(s)" in more
    assert (
        "duplicate id … (first on row N); row dropped ×" in more
        and "unknown class … (class_idx …); row dropped ×30" in more
    )
    assert more.count("rows ") == 2 and len(more) < 400


def _closed_pipe_run(args, **kw):
    """Run ``python args`` with stdout a pipe whose reader is already gone (as ``| head`` that exited)."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(
            [sys.executable, *args], stdout=w, stderr=subprocess.PIPE, text=True, timeout=300, **kw
        )
    finally:
        os.close(w)
    return p


def test_closed_output_pipe_exits_quietly(tmp_path):
    _store(tmp_path)
    for args in (["-m", "cache", "failures", "--store", str(tmp_path / "s.zarr")], ["-m", "cache", "--help"]):
        p = _closed_pipe_run(args)
        assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
        assert p.returncode in (0, 141)
    assert (
        _closed_pipe_run(["-m", "cache", "failures", "--store", str(tmp_path / "s.zarr")]).returncode == 141
    )


def test_an_os_error_is_one_actionable_line_without_scanning_the_store(tmp_path, monkeypatch, capsys):
    import errno

    import cache.__main__ as cli

    Store(tmp_path / "s.zarr").write_table("t/a", ["x"], {"v": np.zeros((1, 2), np.float32)})

    def disk_full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "s.zarr" / "t"))

    monkeypatch.setattr(cli, "_open_store", disk_full)
    monkeypatch.setattr(cli, "verify_store", lambda p: pytest.fail("the store was scanned"))
    assert main(["info", "--store", str(tmp_path / "s.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: No space left on device (")
    assert "s.zarr" in err and "free" in err.lower()
