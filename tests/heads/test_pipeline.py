"""The whole pipeline and the CLI on small synthetic datasets written through cache.store."""

import json
import shutil

import numpy as np
import pytest
import yaml

from cache.manifest import load_manifest
from cache.metric import hierarchical_scores
from cache.splits import Split
from cache.store import Store
from cache.tables import read_logits, read_pseudo_labels
from cache.taxonomy import CLASSES
from heads.cli import main
from heads.ensemble import mean_logits, softmax
from heads.run_folder import load_run, run_parameters
from heads.score import read_predictions, score_files
from testkit.synthetic_heads import write_synthetic_pipeline

CONFIG = """
name = "t"
stages = [1, 2, 3]
keep = 2
[data.clean]
root = "{clean}"
[data.noisy]
root = "{noisy}"
[data.eval]
root = "{eval}"
[train]
device = "cpu"
[stage1]
k = 3
epochs = 4
[stage2]
k = 2
epochs = 3
[stage3]
k = 2
epochs = 3
[pseudo]
candidates_per_model = 2
[ensemble]
candidates_per_model = 2
method = "greedy"
[submission]
label = "T_1"
[[models]]
name = "fused"
groups = ["embeddings/synth@*"]
prior = "synth"
hidden = 16
[[models]]
name = "audio"
groups = ["embeddings/synth@none"]
columns = ["audio"]
preset = "mlp"
hidden = 16
role = "comparison"
[[models]]
name = "prior"
prior = "synth"
preset = "prior-only"
hidden = 16
role = "comparison"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipe")
    paths = write_synthetic_pipeline(base / "data", n_per_class=8, n_noisy=150, n_eval=30, dim=8, n_shared=12)
    cfg = base / "p.toml"
    cfg.write_text(CONFIG.format(**{k: paths[k] for k in ("clean", "noisy", "eval")}))
    out = base / "out"
    assert main(["--no-progress", "pipeline", "--config", str(cfg), "--out", str(out)]) == 0
    return {"paths": paths, "cfg": cfg, "out": out}


def test_pipeline_outputs_and_exclusion(run):
    out, paths = run["out"], run["paths"]
    split = Split.load(out / "split.json")
    noisy = load_manifest(paths["noisy"], require_audio=False)
    held_out = split.evaluation_ids()
    excluded = sum(i in held_out for i in noisy.ids)
    assert excluded > 0  # the synthetic sets share ids
    s2 = json.loads((out / "stage2" / "fused" / "search.json").read_text())
    assert s2["excluded_noisy_in_clean_eval"] == excluded
    assert s2["n_train"] == len(noisy.ids) - excluded
    for stage, k in ((1, 3), (2, 2), (3, 2)):
        meta = json.loads((out / f"stage{stage}" / "fused" / "search.json").read_text())
        assert len(meta["names"]) == k
        run_dir = out / f"stage{stage}" / "fused" / "runs" / f"c{meta['order'][0]:02d}"
        for f in ("head.pt", "metrics.json", "config.json", "split.json", "provenance.json"):
            assert (run_dir / f).exists(), f
    assert not (out / "stage2" / "audio").exists()  # comparison models run stage 1 only
    # stage 3 starts from the best stage-2 head: with a zero learning rate it would stay there
    s3 = json.loads((out / "stage3" / "fused" / "search.json").read_text())
    assert s3["init_from"] == s2["names"][s2["order"][0]]
    assert json.loads((out / "stage2" / "fused" / "search.json").read_text())["init_from"] == ""
    # every trained configuration's logits are in the stores
    clean, noisy_store = Store(paths["clean"] / "cache.zarr", "r"), Store(paths["noisy"] / "cache.zarr", "r")
    cm = load_manifest(paths["clean"], require_audio=False)
    for stage, k in ((1, 3), (2, 2), (3, 2)):
        for c in range(k):
            assert read_logits(clean, f"heads/t/fused/s{stage}/c{c:02d}", cm.ids).shape == (len(cm), 23)
    # pseudo-labels = softmax of the mean logits of the selected stage-1 members, for both sets
    pj = json.loads((out / "pseudo" / "pseudo.json").read_text())
    members = pj["members"]
    for store, m in ((clean, cm), (noisy_store, noisy)):
        probs = read_pseudo_labels(store, "t-stage1", m.ids)
        expect = softmax(mean_logits(np.stack([read_logits(store, r, m.ids) for r in members])))
        np.testing.assert_allclose(probs, expect, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    # report files
    for f in (
        "results.md",
        "results.json",
        "ensemble_test.md",
        "ensemble_test_confusion.png",
        "training_curves.png",
    ):
        assert (out / "report" / f).exists(), f
    assert "never-predicted-class convention 'zero'" in (out / "report" / "results.md").read_text()


def test_submission_round_trips_through_heads_score(run):
    out, paths = run["out"], run["paths"]
    csv_path = out / "submission" / "T_1.output.csv"
    pred = read_predictions(csv_path)
    ev = load_manifest(paths["eval"], require_audio=False)
    assert sorted(pred.ids) == sorted(ev.ids.tolist()) and ((pred.scores >= 0) & (pred.scores <= 1)).all()
    truth = dict(line.split(",") for line in paths["truth"].read_text().splitlines()[1:])
    expected = hierarchical_scores([truth[i] for i in pred.ids], [CLASSES[c] for c in pred.labels])
    got = score_files(paths["truth"], csv_path)
    assert got.hF == pytest.approx(expected.hF) and got.hP == pytest.approx(expected.hP)
    meta = yaml.safe_load((out / "submission" / "T_1.meta.yaml").read_text())
    dev = meta["results"]["development_datasets"]["bsd10k-v1.2"]
    assert set(dev["overall"]) == {"hP", "hR", "hF"} and len(dev["class_wise"]) == 23
    ens = json.loads((out / "ensemble" / "ensemble.json").read_text())
    assert dev["overall"]["hF"] == pytest.approx(ens["scores"]["argmax"]["test"]["hF"], abs=1e-4)
    assert meta["system"]["complexity"]["total_parameters"] == ens["n_parameters"] > 0


def test_rerun_resumes_and_predict_reproduces_the_submission(run, capsys):
    out, paths = run["out"], run["paths"]
    before = (out / "submission" / "T_1.output.csv").read_text()
    moved = run["cfg"].with_name("moved.toml")  # roots given on the command line instead
    text = run["cfg"].read_text()
    for k in ("clean", "noisy", "eval"):
        text = text.replace(str(paths[k]), f"/nowhere/{k}")
    moved.write_text(text)
    assert (
        main(
            [
                "--no-progress",
                "pipeline",
                "--config",
                str(moved),
                "--out",
                str(out),
                "--clean",
                str(paths["clean"]),
                "--noisy",
                str(paths["noisy"]),
                "--eval",
                str(paths["eval"]),
            ]
        )
        == 0
    )
    log = capsys.readouterr().out
    assert log.count("unchanged, reusing") == 3 + 1 + 1  # stage 1 (3 models), stage 2, stage 3
    assert (out / "submission" / "T_1.output.csv").read_text() == before
    pred_dir = out / "predict"
    assert (
        main(
            [
                "predict",
                "--run",
                str(out / "ensemble" / "ensemble.json"),
                "--dataset",
                str(paths["eval"]),
                "--out",
                str(pred_dir),
                "--label",
                "P",
            ]
        )
        == 0
    )
    a, b = (
        read_predictions(out / "submission" / "T_1.output.csv"),
        read_predictions(pred_dir / "P.output.csv"),
    )
    assert a.ids == b.ids and a.labels.tolist() == b.labels.tolist()
    np.testing.assert_allclose(a.scores, b.scores, atol=2e-6)


def test_generic_commands_on_logits_tables(run, tmp_path):
    paths = run["paths"]
    split = str(run["out"] / "split.json")
    assert (
        main(
            [
                "ensemble",
                "--dataset",
                str(paths["clean"]),
                "--split",
                split,
                "--runs",
                "heads/t/fused/s3/*",
                "--method",
                "exhaustive",
                "--out",
                str(tmp_path / "ens"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert res["candidates"] == ["heads/t/fused/s3/c00", "heads/t/fused/s3/c01"]
    assert (
        main(
            [
                "report",
                "--predictions",
                str(tmp_path / "ens" / "predictions.npz"),
                "--out",
                str(tmp_path / "rep"),
            ]
        )
        == 0
    )
    assert (tmp_path / "rep" / "report_test.md").exists()
    assert (
        main(
            [
                "pseudo-labels",
                "--store",
                str(paths["clean"] / "cache.zarr"),
                "--runs",
                "heads/t/fused/s1/c0[01]",
                "--name",
                "mine",
            ]
        )
        == 0
    )
    store = Store(paths["clean"] / "cache.zarr", "r")
    cm = load_manifest(paths["clean"], require_audio=False)
    expect = softmax(
        mean_logits(np.stack([read_logits(store, f"heads/t/fused/s1/c0{i}", cm.ids) for i in (0, 1)]))
    )
    np.testing.assert_allclose(read_pseudo_labels(store, "mine", cm.ids), expect, rtol=1e-4, atol=1e-6)


def test_train_and_search_commands(run, tmp_path):
    paths = run["paths"]
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'dataset = "{paths["clean"]}"\nname = "heads/cmd"\nout = "{tmp_path / "train"}"\n'
        '[inputs]\ngroups = ["embeddings/synth@none"]\nprior = "synth"\n'
        '[train]\nepochs = 3\nhidden = 16\ndevice = "cpu"\n[search]\nk = 2\n'
    )
    assert main(["--no-progress", "train", "--config", str(cfg)]) == 0
    assert (tmp_path / "train" / "head.pt").exists()
    assert (
        main(["--no-progress", "search", "--config", str(cfg), "--set", f'out="{tmp_path / "search"}"']) == 0
    )
    assert (tmp_path / "search" / "search.md").read_text().count("heads/cmd/c0") == 2
    assert main(["train", "--config", str(cfg), "--set", 'inputs.groups=["embeddings/nothing@*"]']) == 2


def test_bad_config_is_reported(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[data.clean]\nroot = "/nowhere"\n[[models]]\nname = "m"\ngroups = ["x"]\npreset = "submitted"\n'
    )
    assert main(["pipeline", "--config", str(cfg)]) == 2
    assert "needs a prior" in capsys.readouterr().err


def test_cv_and_baseline_commands(run, tmp_path):
    paths = run["paths"]
    cfg = tmp_path / "cv.toml"
    text = run["cfg"].read_text().replace("stages = [1, 2, 3]", "stages = [1]").replace("k = 3", "k = 2")
    cfg.write_text(text)
    assert (
        main(["--no-progress", "cv", "--config", str(cfg), "--folds", "0,1", "--out", str(tmp_path / "cv")])
        == 0
    )
    res = json.loads((tmp_path / "cv" / "cv.json").read_text())
    hfs = [f["argmax"]["hF"] for f in res["folds"]]
    assert len(hfs) == 2 and res["summary"]["argmax"]["hF"][0] == pytest.approx(np.mean(hfs))
    assert res["summary"]["argmax"]["hF"][1] == pytest.approx(np.std(hfs, ddof=1))
    splits = [Split.load(tmp_path / "cv" / f"fold{f}" / "split.json") for f in (0, 1)]
    assert not set(splits[0].test) & set(splits[1].test)  # different test folds
    assert (
        main(
            [
                "--no-progress",
                "baseline",
                "--dataset",
                str(paths["clean"]),
                "--folds",
                "0,1",
                "--out",
                str(tmp_path / "base"),
                "--set",
                'groups=["embeddings/synth@none"]',
                "--set",
                "train.epochs=2",
                "--set",
                "train.hidden=16",
                "--set",
                'train.device="cpu"',
                "--set",
                "train.threads=1",
            ]
        )
        == 0
    )
    b = json.loads((tmp_path / "base" / "baseline.json").read_text())
    assert [f["fold"] for f in b["folds"]] == [0, 1] and Split.load(
        tmp_path / "base" / "fold0" / "split.json"
    ).preset == "baseline"


def test_shipped_configs_load_and_validate():
    from pathlib import Path

    from cache.config import load_config
    from heads.baseline import BaselineConfig
    from heads.pipeline_config import PipelineConfig

    root = Path(__file__).resolve().parents[2] / "configs" / "heads"
    names = sorted(p.name for p in root.glob("*.toml"))
    assert {
        "demo.toml",
        "system1.toml",
        "system2.toml",
        "system3.toml",
        "system4.toml",
        "baseline.toml",
    } <= set(names)
    for p in root.glob("*.toml"):
        if p.name == "baseline.toml":
            load_config(BaselineConfig, p)
        else:
            load_config(PipelineConfig, p).validate()
    s1 = load_config(PipelineConfig, root / "system1.toml")
    assert [m.preset for m in s1.models].count("no-prior") == 1 and s1.stage1.k == 20


def test_stage_settings_halving_reaches_the_search(run, tmp_path):
    """``[stage1] halving = true`` runs successive halving inside the pipeline: of 4 configurations
    searched for 4 epochs (rung at epoch 2), the worse half stops there, recorded as ``halving``."""
    cfg = tmp_path / "h.toml"
    cfg.write_text(
        run["cfg"]
        .read_text()
        .replace(
            "[stage1]\nk = 3\nepochs = 4\n", "[stage1]\nk = 4\nepochs = 4\nhalving = true\nrung_epochs = 2\n"
        )
    )
    out = tmp_path / "out"
    assert main(["--no-progress", "stage", "--config", str(cfg), "--stage", "1", "--out", str(out)]) == 0
    search = json.loads((out / "stage1" / "fused" / "search.json").read_text())
    stopped = [s["stopped_by"] for s in search["summaries"]]
    epochs = [s["epochs_trained"] for s in search["summaries"]]
    assert stopped.count("halving") == 2  # 4 → 2 at the rung after epoch 2; the others train on
    assert [e for e, why in zip(epochs, stopped, strict=True) if why == "halving"] == [2, 2]
    assert [e for e, why in zip(epochs, stopped, strict=True) if why != "halving"] == [4, 4]


def test_raising_keep_retrains_a_stage_saved_with_fewer_run_folders(run, tmp_path, capsys):
    """A stage saved with ``keep = 2`` is not reused when 3 run folders are needed (it would lack one)."""

    out = tmp_path / "out"
    shutil.copytree(run["out"], out)
    cfg = tmp_path / "k.toml"
    cfg.write_text(run["cfg"].read_text().replace("keep = 2\n", "keep = 3\n"))
    capsys.readouterr()
    assert main(["--no-progress", "stage", "--config", str(cfg), "--stage", "1", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "[stage 1] fused: unchanged" not in log
    search = json.loads((out / "stage1" / "fused" / "search.json").read_text())
    assert len(search["run_dirs"]) == 3
    # the same config again: now complete, reused
    assert main(["--no-progress", "stage", "--config", str(cfg), "--stage", "1", "--out", str(out)]) == 0
    assert "[stage 1] fused: unchanged" in capsys.readouterr().out


def test_parameter_count_comes_from_the_run_records_and_matches_the_weights(run, tmp_path):
    ens = json.loads((run["out"] / "ensemble" / "ensemble.json").read_text())
    from_weights = [load_run(d).head.n_parameters() for d in ens["run_dirs"]]
    assert [run_parameters(d) for d in ens["run_dirs"]] == from_weights
    assert ens["n_parameters"] == sum(from_weights)
    old = tmp_path / "old_run"  # a folder written before metrics.json recorded the count
    shutil.copytree(ens["run_dirs"][0], old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["n_parameters"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert run_parameters(old) == run_parameters(old / "head.pt") == from_weights[0]
