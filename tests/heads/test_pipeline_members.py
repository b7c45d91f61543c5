"""Fixed ensemble / pseudo-label compositions (``*.members``) and the noisy/clean overlap switch."""

import json

import numpy as np
import pytest

from cache.config import load_config
from cache.manifest import load_manifest
from cache.splits import Split
from heads.cli import main
from heads.ensemble import mean_logits
from heads.pipeline_config import PipelineConfig, parse_member
from testkit.synthetic_heads import write_synthetic_pipeline

CONFIG = """
name = "m"
stages = [1, 2, 3]
keep = 2
[data]
exclude_noisy_overlap = {exclude}
[data.clean]
root = "{clean}"
[data.noisy]
root = "{noisy}"
[train]
device = "cpu"
[stage1]
k = 2
epochs = 2
[stage2]
k = 2
epochs = 2
[stage3]
k = 2
epochs = 2
[pseudo]
members = ["a", "b"]
[ensemble]
members = ["a", "b:2"]
method = "greedy"
[[models]]
name = "a"
groups = ["embeddings/synth@*"]
prior = "synth"
hidden = 8
[[models]]
name = "b"
groups = ["embeddings/synth@none"]
preset = "mlp"
hidden = 8
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("members")
    return base, write_synthetic_pipeline(
        base / "data", n_per_class=8, n_noisy=80, n_eval=10, dim=6, n_shared=12
    )


def _run(base, paths, exclude: bool):
    cfg = base / f"m-{exclude}.toml"
    cfg.write_text(CONFIG.format(exclude=str(exclude).lower(), clean=paths["clean"], noisy=paths["noisy"]))
    out = base / f"out-{exclude}"
    assert main(["--no-progress", "pipeline", "--config", str(cfg), "--out", str(out)]) == 0
    return out


def _overlap(out, paths) -> tuple[int, int]:
    held_out = Split.load(out / "split.json").evaluation_ids()
    noisy = load_manifest(paths["noisy"], require_audio=False)
    return sum(i in held_out for i in noisy.ids), len(noisy.ids)


def test_fixed_members_and_excluded_noisy_clips_are_recorded(data):
    base, paths = data
    out = _run(base, paths, True)
    overlap, n_noisy = _overlap(out, paths)
    assert overlap > 0
    # the ensemble is exactly the named configurations: a's best and b's second best, no selection
    ens = json.loads((out / "ensemble" / "ensemble.json").read_text())
    sa = json.loads((out / "stage3" / "a" / "search.json").read_text())
    sb = json.loads((out / "stage3" / "b" / "search.json").read_text())
    assert ens["selection"]["method"] == "fixed"
    assert ens["members"] == [sa["names"][sa["order"][0]], sb["names"][sb["order"][1]]]
    pred = np.load(out / "ensemble" / "predictions.npz")
    la, lb = np.load(out / "stage3" / "a" / "logits.npz"), np.load(out / "stage3" / "b" / "logits.npz")
    np.testing.assert_allclose(
        pred["logits_clean"],
        mean_logits(np.stack([la["clean"][sa["order"][0]], lb["clean"][sb["order"][1]]])),
        rtol=1e-6,
    )
    pj = json.loads((out / "pseudo" / "pseudo.json").read_text())
    assert pj["selection"]["method"] == "fixed" and len(pj["members"]) == 2
    # the excluded clips' count is in every stage-2 result: search.json, each run's metrics.json, the report
    for model in ("a", "b"):
        s2 = json.loads((out / "stage2" / model / "search.json").read_text())
        assert s2["excluded_noisy_in_clean_eval"] == s2["noisy_in_clean_eval"] == overlap
        assert s2["exclude_noisy_overlap"] is True and s2["n_train"] == n_noisy - overlap
        for run_dir in s2["run_dirs"].values():
            metrics = json.loads(
                (out / "stage2" / model / "runs" / run_dir.split("/")[-1] / "metrics.json").read_text()
            )
            assert metrics["excluded_noisy_in_clean_eval"] == overlap
    res = json.loads((out / "report" / "results.json").read_text())
    assert (
        res["noisy_overlap"]["excluded_noisy_in_clean_eval"] == overlap
        and res["ensemble_selection"] == "fixed"
    )
    md = (out / "report" / "results.md").read_text()
    assert f"{overlap} excluded from training" in md and "fixed composition" in md


def test_reference_behaviour_trains_on_every_noisy_clip(data):
    base, paths = data
    out = _run(base, paths, False)
    overlap, n_noisy = _overlap(out, paths)
    s2 = json.loads((out / "stage2" / "a" / "search.json").read_text())
    assert s2["n_train"] == n_noisy and s2["noisy_in_clean_eval"] == overlap > 0
    assert s2["excluded_noisy_in_clean_eval"] == 0 and s2["exclude_noisy_overlap"] is False
    assert (
        "0 excluded from training (data.exclude_noisy_overlap = false)"
        in (out / "report" / "results.md").read_text()
    )


def test_member_entries_are_checked(tmp_path):
    assert parse_member("cpclap-fused") == ("cpclap-fused", 1) and parse_member("m2d:3") == ("m2d", 3)
    for bad in ("", "m:0", "m:x"):
        with pytest.raises(ValueError, match="k-th best"):
            parse_member(bad)
    cfg = tmp_path / "c.toml"
    body = CONFIG.format(exclude="true", clean="/c", noisy="/n")
    for members, msg in (
        ('["a", "zzz"]', "not a system model"),
        ('["a:3"]', "keep ≥ 3"),
        ('["a", "a:1"]', "twice"),
    ):
        cfg.write_text(body.replace('members = ["a", "b:2"]', f"members = {members}"))
        with pytest.raises(ValueError, match=msg):
            load_config(PipelineConfig, cfg).validate()


def test_system_configs_name_the_reports_compositions():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "heads"
    expect = {
        1: ["beats-fused", "cpclap-fused", "cpclap-nofusion", "laionclap-fused"],
        2: ["cpclap-fused", "cpclap-nofusion", "m2d-fused"],
        3: ["cpclap-fused", "cpclap-nofusion", "m2d-fused"],
        4: ["cpclap-fused", "cpclap-nofusion", "laionclap-fused", "m2d-fused"],
    }
    for n, members in expect.items():
        cfg = load_config(PipelineConfig, root / f"system{n}.toml")
        cfg.validate()
        assert cfg.ensemble.members == members == [m.name for m in cfg.models]
        assert cfg.data.exclude_noisy_overlap is True and cfg.stage3.decay_start_epoch == 2
