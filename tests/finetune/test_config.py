"""Config loading, overrides, validation, the batch-divisibility refusal, Table-1 configs and sweep trials."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from finetune.config import (ConfigError, FinetuneConfig, apply_overrides, load_config, parse_overrides, resolve_batch,
                             save_config)
from finetune.sweep import collect_results, sample_trials, write_results, write_sweep
from finetune.table1 import REPORT_BACKBONES, TABLE1, search_range

REPO = Path(__file__).resolve().parents[2]


def _valid() -> FinetuneConfig:
    cfg = FinetuneConfig()
    cfg.data.clean, cfg.data.prior = "/data/clean", "p"
    return cfg


def test_overrides_dotted_bare_and_typed(tmp_path):
    cfg = apply_overrides(_valid(), parse_overrides([
        "lr=3e-6", "--train.epochs", "5", "--data.noisy=/n", "extra=['/e1', '/e2']",
        "backbone.overrides={window_seconds = 1.0}", "--name", "passt", "epochs=7", "warmup_epochs=2"]))
    assert cfg.train.lr == 3e-6 and cfg.train.epochs == 7 and cfg.data.noisy == "/n"
    assert cfg.data.extra == ["/e1", "/e2"] and cfg.backbone.overrides == {"window_seconds": 1.0}
    assert cfg.backbone.name == "passt" and cfg.train.warmup_epochs == 2.0 and isinstance(cfg.train.warmup_epochs, float)
    with pytest.raises(ConfigError, match="no such config key"):
        parse_overrides(["learning_rate=1"])
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        parse_overrides(["trian.lr=1"])
    with pytest.raises(ConfigError, match="cannot read override"):
        parse_overrides(["--lr"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(_valid(), parse_overrides(["train.epochs=2.5"]))
    # round trip through the saved TOML
    save_config(cfg, tmp_path)
    assert load_config(tmp_path / "config.toml") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["config"]["train"]["lr"] == 3e-6


def test_config_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nlearning_rate = 1e-5\n')
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'train.learning_rate'"):
        load_config(bad)
    bad.write_text('[trian]\nlr = 1e-5\n')
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)


@pytest.mark.parametrize("change, message", [
    ({"stage": 2}, "data.noisy"),
    ({"stage": 3}, "init_from"),
    ({"lam": 0.5}, "pseudo_labels"),
    ({"lam": 1.5}, r"\[0, 1\]"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
])
def test_validation_names_the_problem(change, message):
    cfg = _valid()
    for k, v in change.items():
        setattr(cfg.train, k, v)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()
    cfg = _valid()
    cfg.data.prior = ""
    with pytest.raises(ConfigError, match="no-prior"):
        cfg.validate()
    cfg.head.preset = "no-prior"
    cfg.validate()


def test_batch_divisibility_refusal():
    t = _valid().train
    assert resolve_batch(t, 1).per_device == 18
    assert (resolve_batch(t, 2).per_device, resolve_batch(t, 6).per_device) == (9, 3)
    with pytest.raises(ConfigError, match=r"18 is not divisible by 4 process\(es\) × 1 accumulation"):
        resolve_batch(t, 4)
    t.grad_accum = 2
    assert resolve_batch(t, 3).per_device == 3
    with pytest.raises(ConfigError, match="per_device_batch_size"):
        resolve_batch(t, 2)
    t.per_device_batch_size = 5  # explicit per-device batch: accepted, global batch follows
    plan = resolve_batch(t, 4)
    assert (plan.global_batch, plan.per_device, plan.processes, plan.accumulation) == (40, 5, 4, 2)


def test_table1_configs_load_and_mirror_the_report():
    files = sorted((REPO / "configs" / "finetune").glob("*.toml"))
    seen = set()
    for f in files:
        cfg = load_config(f)
        r = search_range(cfg.backbone.name, cfg.train.stage)
        assert f.name == f"{cfg.backbone.name}_stage{cfg.train.stage}.toml"
        assert r.lr_min <= cfg.train.lr <= r.lr_max and cfg.train.epochs == r.epochs
        assert (r.lam_min <= cfg.train.lam <= r.lam_max) if cfg.train.stage > 1 else cfg.train.lam == 0.0
        assert cfg.train.batch_size == 18 and cfg.train.clip_grad_norm == 1.0 and cfg.train.weight_decay == 0.01
        assert cfg.train.decay_start_epoch == (2.0 if cfg.train.stage == 2 else 1.0)
        cfg.validate()
        seen.add((cfg.backbone.name, cfg.train.stage))
    assert {(b, s) for b in REPORT_BACKBONES for s in (1, 2, 3)} <= seen
    # a few rows of the report's Table 1, by hand
    assert (TABLE1[("passt", 1)].lr_min, TABLE1[("passt", 1)].lr_max, TABLE1[("passt", 1)].epochs) == (5e-6, 1e-5, 30)
    assert (TABLE1[("m2d", 2)].lr_max, TABLE1[("m2d", 2)].epochs, TABLE1[("m2d", 2)].lam_min) == (3e-6, 30, 0.75)
    assert (TABLE1[("laion-clap", 3)].lr_min, TABLE1[("laion-clap", 3)].lam_min) == (1e-6, 0.95)


def test_sweep_trials_are_seeded_and_inside_the_ranges(tmp_path):
    space = search_range("beats", 3)
    a, b = sample_trials(7, space, 20), sample_trials(7, space, 20)
    assert a == b and a != sample_trials(8, space, 20)
    assert all(space.lr_min <= t["lr"] <= space.lr_max and space.lam_min <= t["lam"] <= space.lam_max for t in a)
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
        r = {"run": f"r{i}", "lr": cfgs[i].train.lr, "lam": cfgs[i].train.lam, "seed": i, "best_epoch": 2, "epochs_run": 4,
             "val": {"hP": hf, "hR": hf, "hF": hf}, "test": {"hP": 0, "hR": 0, "hF": hf - 0.1},
             "output_dir": str(Path(cfgs[i].output.dir)), "weights": "w"}
        (Path(cfgs[i].output.dir) / "result.json").write_text(json.dumps(r))
    rows = write_results(tmp_path / "sw")
    assert [r["run"] for r in rows] == ["r3", "r5", "r0"]
    md = (tmp_path / "sw" / "results.md").read_text().splitlines()
    assert md[0].startswith("| rank | run | lr | λ |") and md[2].startswith("| 1 | r3 |")
    assert collect_results(tmp_path / "sw")[0]["val"]["hF"] == 0.9
