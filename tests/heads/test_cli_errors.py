"""User errors of ``python -m heads``: one line naming the file/table and what to do, exit 2;
``--debug`` shows the traceback; a closed output pipe ends quietly."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cache.taxonomy import NUM_CLASSES
from heads.cli import main
from heads.data import InputError
from heads.submission import write_output_csv
from testkit.synthetic_heads import synthetic_arrays, write_synthetic_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A head trained on a synthetic clean set, and an unlabelled set to predict."""
    base = tmp_path_factory.mktemp("cli")
    y = np.repeat(np.arange(NUM_CLASSES), 8)
    _, X, prior, miss = synthetic_arrays(len(y), 6, "both", 0, labels=y)
    write_synthetic_dataset(
        base / "clean", "SYN-clean", [str(1000 + i) for i in range(len(y))], y, X, prior, miss
    )
    cfg = base / "t.toml"
    cfg.write_text(
        f'dataset = "{base / "clean"}"\nname = "heads/cli"\nout = "{base / "run"}"\n'
        '[inputs]\ngroups = ["embeddings/synth@*"]\n[train]\nepochs = 1\nhidden = 8\npreset = "mlp"\n'
        'device = "cpu"\n'
    )
    assert main(["--no-progress", "train", "--config", str(cfg)]) == 0
    return base


def _eval_set(root, X=None, name="SYN-eval"):
    ids = [f"e{i}" for i in range(8)]
    write_synthetic_dataset(root, name, ids, None, X if X is not None else np.ones((8, 6), np.float32))
    return root


def _predict(trained, root, *extra):
    return main(
        [
            "predict",
            "--run",
            str(trained / "run"),
            "--dataset",
            str(root),
            "--out",
            str(root / "pred"),
            *extra,
        ]
    )


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_predict_refuses_a_store_that_does_not_exist(trained, tmp_path, capsys):
    root = _eval_set(tmp_path / "ev")
    missing = tmp_path / "nowhere.zarr"
    assert _predict(trained, root, "--store", str(missing)) == 2
    err = _one_line(capsys)
    assert f"cache store {missing} does not exist" in err and "python -m extract embeddings --dataset" in err
    assert not missing.exists()  # nothing created


def test_predict_names_the_extract_command_for_missing_embeddings(trained, tmp_path, capsys):
    root = tmp_path / "bare"
    write_synthetic_dataset(
        root,
        "SYN-bare",
        [f"e{i}" for i in range(4)],
        None,
        None,
        prior=np.full((4, NUM_CLASSES), 1 / NUM_CLASSES, np.float32),
    )
    assert _predict(trained, root) == 2
    err = _one_line(capsys)
    assert "no embedding group(s) match 'embeddings/synth@*'" in err
    assert f"python -m extract embeddings --dataset {root} --backbone synth" in err


def test_nan_features_are_named_not_reported_as_bad_scores(trained, tmp_path, capsys):
    X = np.ones((8, 6), np.float32)
    X[2, 3] = np.nan
    root = _eval_set(tmp_path / "nan", X)
    assert _predict(trained, root) == 2
    err = _one_line(capsys)
    assert (
        "table 'embeddings/synth@none' (column audio) holds NaN or infinite values for 1 clip(s) (e2)" in err
    )
    assert "[0, 1]" not in err
    # --debug: the traceback instead of the one line
    with pytest.raises(InputError, match="holds NaN"):
        main(
            [
                "--debug",
                "predict",
                "--run",
                str(trained / "run"),
                "--dataset",
                str(root),
                "--out",
                str(tmp_path / "p"),
            ]
        )
    with pytest.raises(InputError):
        _predict(trained, root, "--debug")


def test_damaged_weights_and_nan_scores_are_named(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(trained / "run", run)
    payload = torch.load(run / "head.pt", weights_only=False)
    payload["state_dict"] = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in payload["state_dict"].items()
    }
    torch.save(payload, run / "head.pt")
    root = _eval_set(tmp_path / "ev")
    assert main(["predict", "--run", str(run), "--dataset", str(root), "--out", str(root / "pred")]) == 2
    err = _one_line(capsys)
    assert "logits hold NaN" in err and "head.pt" in err and "retrain" in err
    with pytest.raises(ValueError, match="the logits hold NaN for 1 clip"):
        write_output_csv(tmp_path / "x.csv", ["a", "b"], np.array([0, 1]), np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        write_output_csv(tmp_path / "x.csv", ["a"], np.array([0]), np.array([1.5]))


def test_other_commands_refuse_missing_stores_and_key_errors_print_plainly(tmp_path, capsys, monkeypatch):
    assert (
        main(["pseudo-labels", "--store", str(tmp_path / "s.zarr"), "--runs", "nothing/*", "--name", "x"])
        == 2
    )
    assert "cache store" in _one_line(capsys) and not (tmp_path / "s.zarr").exists()
    import heads.cli

    def missing_table(args, progress):
        raise KeyError("no table 'logits/x' in store s.zarr")

    monkeypatch.setattr(heads.cli, "_run", missing_table)
    assert main(["predict", "--run", "r", "--dataset", "d", "--out", "o"]) == 2
    assert _one_line(capsys) == "error: no table 'logits/x' in store s.zarr"


def test_closed_output_pipe_exits_quietly(trained, tmp_path):
    root = _eval_set(tmp_path / "ev")
    for args in (
        [
            "-m",
            "heads",
            "predict",
            "--run",
            str(trained / "run"),
            "--dataset",
            str(root),
            "--out",
            str(tmp_path / "p"),
        ],
        ["-m", "heads", "--help"],
    ):
        r, w = os.pipe()
        os.close(r)  # the reader is gone, as after `| head`
        try:
            p = subprocess.run(
                [sys.executable, *args], stdout=w, stderr=subprocess.PIPE, text=True, timeout=300
            )
        finally:
            os.close(w)
        assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
        assert p.returncode == (141 if args[2] == "predict" else 0)


@pytest.mark.parametrize(
    "code, hint", [(28, "the disk is full"), (30, "read-only: put the cache store elsewhere")]
)
def test_disk_full_and_read_only_are_one_line(trained, tmp_path, capsys, monkeypatch, code, hint):
    """An OSError a user can act on (errno 28 ENOSPC, 30 EROFS) is one line naming the file, exit 2."""
    import heads.predict

    root = _eval_set(tmp_path / "ev")

    def fail(*_a, **_k):
        raise OSError(code, os.strerror(code), str(root / "pred" / "X.output.csv"))

    monkeypatch.setattr(heads.predict, "write_output_csv", fail)
    assert _predict(trained, root) == 2
    err = _one_line(capsys)
    assert str(root / "pred" / "X.output.csv") in err and hint in err
