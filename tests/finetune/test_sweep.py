"""The random search: seeded draws inside the ranges, trial configs, `write`/`run`/`collect` from the command
line."""

from __future__ import annotations

import json
import math
from pathlib import Path

from finetune.config import FinetuneConfig, load_config
from finetune.search_space import search_range
from finetune.sweep import collect_results, list_trials, main, sample_trials, write_results, write_sweep

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "finetune" / "tiny.toml"


def _valid() -> FinetuneConfig:
    cfg = FinetuneConfig()
    cfg.data.clean, cfg.data.prior = "/data/clean", "p"
    return cfg


def test_sweep_trials_are_seeded_and_inside_the_ranges(tmp_path):
    space = search_range("beats", 3)
    a, b = sample_trials(7, space, 20), sample_trials(7, space, 20)
    assert a == b and a != sample_trials(8, space, 20)
    assert all(
        space.lr_min <= t["lr"] <= space.lr_max and space.lam_min <= t["lam"] <= space.lam_max for t in a
    )
    # log-uniform: the mean of log lr is near the middle of the log range
    logs = [math.log(t["lr"]) for t in sample_trials(0, space, 2000)]
    assert abs(sum(logs) / len(logs) - math.log(space.lr_mid)) < 0.05
    base = _valid()
    base.data.noisy, base.data.pseudo_labels, base.train.init_from = "/n", "pl", "/s2/best/model.pt"
    paths = write_sweep(tmp_path / "sw", base, "beats", 3, 20, seed=7)
    assert len(paths) == 20
    cfgs = [load_config(p) for p in paths]
    assert [c.train.lr for c in cfgs] == [t["lr"] for t in a]
    assert {c.train.epochs for c in cfgs} == {15} and len({c.output.run_name for c in cfgs}) == 20
    assert [c.train.seed for c in cfgs] == list(range(20)) and all(c.train.stage == 3 for c in cfgs)
    # collect: finished trials sorted by validation hF, in the head tier's table format
    for i, hf in ((0, 0.5), (3, 0.9), (5, 0.7)):
        r = {
            "run": f"r{i}",
            "lr": cfgs[i].train.lr,
            "lam": cfgs[i].train.lam,
            "seed": i,
            "best_epoch": 2,
            "epochs_run": 4,
            "val": {"hP": hf, "hR": hf, "hF": hf},
            "test": {"hP": 0, "hR": 0, "hF": hf - 0.1},
            "output_dir": str(Path(cfgs[i].output.dir)),
            "weights": "w",
        }
        (Path(cfgs[i].output.dir) / "result.json").write_text(json.dumps(r))
    rows = write_results(tmp_path / "sw")
    assert [r["run"] for r in rows] == ["r3", "r5", "r0"]
    md = (tmp_path / "sw" / "results.md").read_text().splitlines()
    assert md[0].startswith("| rank | run | lr | λ |") and md[2].startswith("| 1 | r3 |")
    assert collect_results(tmp_path / "sw")[0]["val"]["hF"] == 0.9


def test_write_takes_epochs_from_set_else_from_the_range(tmp_path, capsys):
    common = ["write", "--config", str(TINY_CONFIG), "--stage", "2", "--trials", "3"]
    assert (
        main(
            [
                *common,
                "--out",
                str(tmp_path / "a"),
                "--set",
                "train.epochs=2",
                "--set",
                "train.warmup_epochs=0",
            ]
        )
        == 0
    )
    cfgs = [load_config(tmp_path / "a" / f"trial_{i:02d}" / "trial.toml") for i in range(3)]
    assert {
        (c.train.epochs, c.train.warmup_epochs, c.train.decay_start_epoch, c.train.stage) for c in cfgs
    } == {(2, 0.0, 2.0, 2)}
    assert json.loads((tmp_path / "a" / "sweep.json").read_text())["kept"] == ["epochs", "warmup_epochs"]
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    assert (
        load_config(tmp_path / "b" / "trial_01" / "trial.toml").train.epochs
        == search_range("tiny", 2).epochs
        == 5
    )
    # the sweep draws lr and λ: a fixed value is refused, not silently replaced
    assert main([*common, "--out", str(tmp_path / "c"), "--set", "train.lam=0.9"]) == 2
    assert "the sweep draws train.lam from the search range" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert main(["list", "--out", str(tmp_path / "a"), "--set", "train.epochs=3"]) == 2
    assert "apply to `write` only" in capsys.readouterr().err


def test_run_from_another_directory_with_a_relative_out(ft_data, tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    overrides = ft_data.overrides(
        tmp_path / "unused", "train.epochs=1", "data.extra=[]", "output.write_logits=false"
    )
    sets = [arg for o in overrides if not o.startswith("train.lr=") for arg in ("--set", o)]  # lr is drawn
    assert (
        main(["write", "--out", "sw", "--config", str(TINY_CONFIG), "--stage", "1", "--trials", "1", *sets])
        == 0
    )
    monkeypatch.chdir(tmp_path / "b")
    assert main(["run", "--out", "../a/sw"]) == 0, capsys.readouterr()
    result = json.loads((tmp_path / "a" / "sw" / "trial_00" / "result.json").read_text())
    assert result["epochs_run"] == result["epochs"] == 1 and result["run"] == "ft-tiny-s1-t00"
    assert [t["status"] for t in list_trials(Path("../a/sw"))] == ["done"]
    assert not (tmp_path / "b" / "runs").exists()


def test_a_failed_trial_says_whether_running_again_resumes(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["write", "--out", str(out), "--config", str(TINY_CONFIG), "--trials", "1"]) == 0
    assert main(["run", "--out", str(out), "--launcher", "false"]) == 1
    said = capsys.readouterr().out
    assert (
        "trial 00 failed (exit 1); it saved no training state: `run` again starts it from the beginning"
        in said
    )
    assert "resumes" not in said
    state = out / "trial_00" / "state" / "last"
    state.mkdir(parents=True)
    (state / "complete.json").write_text(json.dumps({"global_step": 3, "epoch": 0, "next_batch": 3}))
    assert main(["run", "--out", str(out), "--launcher", "false"]) == 1
    said = capsys.readouterr().out
    assert (
        "--resume" in said
        and "trial 00 failed (exit 1); `run` again resumes it from its last training state" in said
    )
