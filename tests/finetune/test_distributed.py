"""Two CPU processes (``accelerate launch --multi_gpu --num_processes 2``): stage 1 → pseudo-labels → 2 → 3.

The tiny backbone's ``clap`` variant exercises the three text-tower cases under DDP (which
runs with find_unused_parameters=False): stage 1 ignores the text tower (unused parameters
frozen before wrapping), stage 2 trains it on the cached summaries, stage 3 freezes it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cache.splits import Split
from cache.store import Store, default_store_path
from cache.tables import read_logits
from finetune.datasets import load_datasets
from finetune.evaluate import predict, score
from finetune.model import model_from_run
from heads.logits_tables import pseudo_labels_from_runs


def _ok(p) -> None:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


@pytest.mark.slow
def test_two_process_three_stages(ft_data, tmp_path, launch_ft):
    s1, s2, s3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    # ---- stage 1 on two processes (9 clips per rank per update)
    clap = ["backbone.variant=clap", "data.summary=test-summary"]
    _ok(
        launch_ft(
            ft_data.args(
                s1, *clap, "backbone.text_source=none", "output.log_seen_ids=true", "output.run_name=t-s1"
            ),
            processes=2,
        )
    )
    r1 = json.loads((s1 / "result.json").read_text())
    assert json.loads((s1 / "config.json").read_text())["facts"]["unused_parameters"] == ["text_tower.weight"]
    assert r1["processes"] == 2 and r1["global_batch"] == 18
    split = Split.load(s1 / "split.json")
    # a second launch into the finished folder is refused with one line (rank 0), not one per process
    again = launch_ft(
        ft_data.args(s1, *clap, "backbone.text_source=none", "output.run_name=t-s1"), processes=2
    )
    assert again.returncode != 0 and again.stderr.count("already holds a training state") == 1, again.stderr[
        -3000:
    ]
    # every training clip exactly once per epoch across the two ranks
    for epoch in range(2):
        parts = [(s1 / "seen" / f"epoch{epoch}.rank{r}.txt").read_text().split() for r in range(2)]
        assert sorted(parts[0] + parts[1]) == sorted(split.train)
        assert not set(parts[0]) & set(parts[1]) and abs(len(parts[0]) - len(parts[1])) <= 1

    # the gathered two-process evaluation equals a one-process evaluation of the same weights
    clean = Store(default_store_path(ft_data.clean), mode="r")
    model, cfg = model_from_run(s1)
    data = load_datasets(cfg)
    for part, clips in (("val", data.val), ("test", data.test)):
        logits, _ = predict(model, clips, max_windows=7, progress=False)
        np.testing.assert_allclose(logits, read_logits(clean, "t-s1", list(clips.ids)), atol=1e-5)
        assert score(logits, clips.labels).hF == pytest.approx(r1[part]["hF"], abs=1e-12)

    # ---- pseudo-labels with the head tier's command: softmax of the mean stage-1 logits (one model here)
    stores = [Store(default_store_path(root)) for root in (ft_data.clean, ft_data.noisy)]
    probs = pseudo_labels_from_runs(stores, ["t-s1"], "pl-test", log=lambda _m: None)
    assert all(np.allclose(p.sum(1), 1.0, atol=1e-5) for p in probs.values())

    # ---- stage 2: noisy set, λ-mixed loss, a fresh head; the clean val/test clips are held out
    _ok(
        launch_ft(
            ft_data.args(
                s2,
                *clap,
                "backbone.text_source=summary",
                "backbone.text_tower=train",
                "train.stage=2",
                "train.lam=0.9",
                "data.pseudo_labels=pl-test",
                "train.epochs=1",
                "output.run_name=t-s2",
                "output.log_seen_ids=true",
            ),
            processes=2,
        )
    )
    facts = json.loads((s2 / "config.json").read_text())["facts"]
    held_out = set(split.val) | set(split.test)
    n_held = sum(i in held_out for i in ft_data.noisy_ids)
    assert facts["noisy"]["excluded_clean_val_test"] == n_held
    trained = sum(((s2 / "seen" / f"epoch0.rank{r}.txt").read_text().split() for r in range(2)), [])
    assert sorted(trained) == sorted(i for i in ft_data.noisy_ids if i not in held_out)
    assert facts["train_with_pseudo_label"] == len(trained)
    r2 = json.loads((s2 / "result.json").read_text())

    # ---- stage 3: clean set from the best stage-2 model (weights only, fresh optimizer)
    _ok(
        launch_ft(
            ft_data.args(
                s3,
                *clap,
                "backbone.text_source=summary",
                "backbone.text_tower=freeze",
                "train.stage=3",
                "train.lam=0.97",
                "data.pseudo_labels=pl-test",
                "train.epochs=1",
                "output.run_name=t-s3",
                f"train.init_from={s2}",
            ),
            processes=2,
        )
    )
    facts3 = json.loads((s3 / "config.json").read_text())["facts"]
    assert facts3["init_from"]["sha256"] == r2["weights_sha256"]
    assert facts3["init_from"]["meta"]["stage"] == 2
    assert (
        facts3["frozen_text_parameters"] == 1 and facts3["use_text"] and facts3["head"]["in_dim"] == 16 + 32
    )
    r3 = json.loads((s3 / "result.json").read_text())
    text = {
        d: torch.load(d / "best" / "model.pt", weights_only=True)["backbone"]["text_tower.weight"]
        for d in (s1, s2, s3)
    }
    assert not torch.equal(text[s1], text[s2])  # stage 2 trained the text tower (stage 1 left it at its init)
    assert torch.equal(text[s2], text[s3])  # stage 3 kept it frozen
    assert r3["stage"] == 3 and r3["processes"] == 2 and 0.0 <= r3["test"]["hF"] <= 1.0
    for root, ids in ((ft_data.clean, ft_data.clean_ids), (ft_data.noisy, ft_data.noisy_ids)):
        st = Store(default_store_path(root), mode="r")
        for run in ("t-s1", "t-s2", "t-s3"):
            assert sorted(st.read_table(f"logits/{run}").ids.tolist()) == sorted(ids)
