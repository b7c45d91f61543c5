"""Config loading (file, stage sections, --set), validation, the batch-divisibility refusal, the per-backbone
configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cache.config import to_dict
from finetune.config import ConfigError, FinetuneConfig, load_config, resolve_batch, save_config
from finetune.run import main as run_main
from finetune.search_space import REPORT_BACKBONES, SEARCH_RANGES, search_range

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "finetune"
BACKBONES = ("passt", "beats", "m2d", "cpclap", "laion-clap", "tiny")


def _valid() -> FinetuneConfig:
    cfg = FinetuneConfig()
    cfg.data.clean, cfg.data.prior = "/data/clean", "p"
    return cfg


def test_set_overrides_are_typed_and_the_saved_config_reloads(tmp_path):
    cfg = load_config(
        None,
        [
            "train.lr=3e-6",
            "train.epochs=5",
            "data.noisy=/n",
            "data.extra=['/e1', '/e2']",
            "backbone.overrides={window_seconds = 1.0}",
            "backbone.name=passt",
            "train.epochs=7",
            "train.warmup_epochs=2",
            "data.clean=/c",
            "data.prior=p",
        ],
    )
    assert cfg.train.lr == 3e-6 and cfg.train.epochs == 7 and cfg.data.noisy == "/n"
    assert cfg.data.extra == ["/e1", "/e2"] and cfg.backbone.overrides == {"window_seconds": 1.0}
    assert (
        cfg.backbone.name == "passt"
        and cfg.train.warmup_epochs == 2.0
        and isinstance(cfg.train.warmup_epochs, float)
    )
    with pytest.raises(ConfigError, match=r"unknown key 'train.learning_rate'"):
        load_config(None, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'lr'"):  # a bare key is not guessed
        load_config(None, ["lr=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'trian'"):
        load_config(None, ["trian.lr=1"])
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE, got '--lr'"):
        load_config(None, ["--lr"])
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(None, ["train.epochs=2.5"])
    # round trip through the saved TOML
    save_config(cfg, tmp_path)
    assert load_config(tmp_path / "config.toml") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["config"]["train"]["lr"] == 3e-6


def test_stage_sections(tmp_path):
    f = tmp_path / "b.toml"
    f.write_text(
        "[train]\nepochs = 4\n\n[stage1]\ntrain.lr = 1e-5\n\n"
        '[stage2]\ntrain.lr = 2e-5\ntrain.lam = 0.5\ndata.pseudo_labels = "pl"\noutput.dir = "runs/s2"\n'
    )
    one, two = load_config(f), load_config(f, stage=2)
    assert (one.train.stage, one.train.lr, one.train.lam, one.data.pseudo_labels) == (1, 1e-5, 0.0, "")
    assert (two.train.stage, two.train.lr, two.train.lam, two.data.pseudo_labels) == (2, 2e-5, 0.5, "pl")
    assert one.train.epochs == two.train.epochs == 4 and two.output.dir == "runs/s2"
    assert load_config(f, ["train.stage=2"]) == two  # --stage N is --set train.stage=N
    assert load_config(f, ["train.lr=3e-5"], stage=2).train.lr == 3e-5  # --set wins over the stage section
    assert load_config(f, stage=3).train.lr == FinetuneConfig().train.lr  # no [stage3]: the shared keys only
    with pytest.raises(ConfigError, match=r"train.stage must be 1, 2 or 3, got 4"):
        load_config(f, ["train.stage=4"])
    f.write_text("[stage2]\ntrain.learning_rate = 1\n")
    with pytest.raises(ConfigError, match=r"b.toml: \[stage2\]: unknown key 'train.learning_rate'"):
        load_config(f, stage=2)
    f.write_text("[stage2]\ntrain.stage = 3\n")
    with pytest.raises(ConfigError, match=r"\[stage2\] must not set train.stage"):
        load_config(f, stage=2)


#: the deliberate changes since the 18 per-stage files (docs/parity.md, "Fine-tuning"): per stage, and per
#: backbone and stage; everything else must resolve exactly as those files did
CHANGED_SINCE_THE_STAGE_FILES = {
    "all": {  # new switches, at the former behaviour (a state save blocked training before)
        "data.exclude_noisy_overlap": True,
        "train.checkpoint_in_background": True,
    },
    2: {"data.pseudo_labels": "pl-stage2"},  # one pseudo-label table per stage
    3: {
        "data.pseudo_labels": "pl-stage3",
        "train.decay_start_epoch": 2.0,
    },  # the reference's stage-2.2 sweeps
    ("laion-clap", 2): {"data.pseudo_labels": "pl-stage3", "train.lam": 0.975},  # its sweep: lam in [0.95, 1]
    "cpclap": {"backbone.patchout_t": 15},  # the reference's CP-CLAP patchout
}


def test_one_config_per_backbone_resolves_as_the_former_per_stage_files():
    """``resolved_stage_configs.json`` holds what the former ``<backbone>_stage<N>.toml`` files resolved to
    (captured before they were merged); the per-backbone files give that, plus only the named changes."""
    expected = json.loads((Path(__file__).parent / "resolved_stage_configs.json").read_text())
    assert sorted(expected) == sorted(f"{b}_stage{s}" for b in BACKBONES for s in (1, 2, 3))
    assert sorted(p.stem for p in CONFIGS.glob("*.toml")) == sorted(BACKBONES)
    for name, want in expected.items():
        backbone, stage = name.rsplit("_stage", 1)
        for key in ("all", int(stage), backbone, (backbone, int(stage))):
            for dotted, value in CHANGED_SINCE_THE_STAGE_FILES.get(key, {}).items():
                section, field = dotted.split(".")
                want[section][field] = value
        assert to_dict(load_config(CONFIGS / f"{backbone}.toml", stage=int(stage))) == want, name


def test_run_takes_config_stage_and_set_only(capsys):
    assert (
        run_main(
            [
                "--config",
                str(CONFIGS / "m2d.toml"),
                "--stage",
                "2",
                "--set",
                "train.lr=1e-6",
                "--print-config",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "stage = 2" in printed and "lr = 1e-06" in printed and 'pseudo_labels = "pl-stage2"' in printed
    assert run_main(["--config", str(CONFIGS / "m2d.toml"), "lr=1e-6", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "unrecognised argument(s) lr=1e-6: overrides are --set section.key=value" in err
    )


def test_config_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1e-5\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'train.learning_rate'"):
        load_config(bad)
    bad.write_text("[trian]\nlr = 1e-5\n")
    with pytest.raises(ConfigError, match="bad.toml: unknown key 'trian'"):
        load_config(bad)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stage": 2}, "data.noisy"),
        ({"stage": 3}, "init_from"),
        ({"lam": 0.5}, "pseudo_labels"),
        ({"lam": 1.5}, r"\[0, 1\]"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
    ],
)
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


def test_configs_hold_the_middle_of_the_search_ranges():
    for backbone in BACKBONES:
        for stage in (1, 2, 3):
            cfg = load_config(CONFIGS / f"{backbone}.toml", stage=stage)
            r = search_range(cfg.backbone.name, cfg.train.stage)
            assert cfg.backbone.name == backbone and cfg.train.stage == stage
            assert cfg.train.lr == pytest.approx(r.lr_mid, rel=5e-3) and cfg.train.epochs == r.epochs
            assert cfg.train.lam == (r.lam_min + r.lam_max) / 2 if stage > 1 else cfg.train.lam == 0.0
            assert (
                cfg.train.batch_size == 18
                and cfg.train.clip_grad_norm == 1.0
                and cfg.train.weight_decay == 0.01
            )
            # the reference's sweeps: decay from epoch 1 in stage 1, from epoch 2 in stages 2 and 3
            assert cfg.train.decay_start_epoch == r.decay_start_epoch == (1.0 if stage == 1 else 2.0)
            # one pseudo-label table per stage; LAION-CLAP's stage 2 reads the stage-3 table, as the
            # reference's sweep
            table = {1: "", 2: "pl-stage3" if backbone == "laion-clap" else "pl-stage2", 3: "pl-stage3"}[
                stage
            ]
            assert cfg.data.pseudo_labels == table or stage == 1
            assert cfg.output.run_name == f"ft-{backbone}-s{stage}"
            cfg.validate()
    assert {(b, s) for b in REPORT_BACKBONES for s in (1, 2, 3)} <= set(SEARCH_RANGES)
    # a few rows of the report's Table 1, by hand
    p1, m2, l3 = SEARCH_RANGES[("passt", 1)], SEARCH_RANGES[("m2d", 2)], SEARCH_RANGES[("laion-clap", 3)]
    assert (p1.lr_min, p1.lr_max, p1.epochs) == (5e-6, 1e-5, 30)
    assert (m2.lr_max, m2.epochs, m2.lam_min) == (3e-6, 30, 0.75)
    l2 = SEARCH_RANGES[("laion-clap", 2)]  # the reference's lclap stage-2.1 sweep, not the report's 0.75-1
    assert (l2.lam_min, l2.lam_max) == (0.95, 1.0)
    assert (l3.lr_min, l3.lam_min) == (1e-6, 0.95)


def test_tags_text_source_gives_the_keyword_text(tmp_path):
    from cache.manifest import load_manifest
    from finetune.data import clip_set
    from testkit.bsd_dataset import labelled_row, write_metadata

    cfg = _valid()
    cfg.backbone.text_source = "tags"
    cfg.validate()  # accepted
    write_metadata(
        tmp_path,
        [labelled_row("1", "fx-a", tags="rain; water,outdoors"), labelled_row("2", "fx-a", tags="")],
        "T",
    )
    m = load_manifest(tmp_path, require_audio=False)
    assert clip_set(m, None, text_source="tags").texts == ["rain water outdoors", ""]
