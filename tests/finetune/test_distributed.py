"""Two CPU processes (``accelerate launch --multi_gpu --num_processes 2``): stage 1 → pseudo-labels → 2 → 3."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cache.features import read_logits
from cache.splits import Split
from cache.store import Store, default_store_path
from finetune.evaluate import predict, score
from finetune.model import model_from_run
from finetune.trainer import load_datasets
from heads.ensemble import softmax
from heads.runs import write_pseudo_labels


def _ok(p) -> None:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


@pytest.mark.slow
def test_two_process_three_stages(ft_data, tmp_path, launch_ft):
    s1, s2, s3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    # ---- stage 1 on two processes (9 clips per rank per update)
    _ok(launch_ft(ft_data.args(s1, "output.log_seen_ids=true", "run_name=t-s1"), processes=2))
    r1 = json.loads((s1 / "result.json").read_text())
    assert r1["processes"] == 2 and r1["global_batch"] == 18
    split = Split.load(s1 / "split.json")
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

    # ---- pseudo-labels: softmax of the stage-1 logits (an ensemble of one) for both datasets
    for root in (ft_data.clean, ft_data.noisy):
        st = Store(default_store_path(root))
        t = st.read_table("logits/t-s1")
        write_pseudo_labels(st, "pl-test", t.ids, softmax(t["logits"]), source=["t-s1"])

    # ---- stage 2: noisy set, λ-mixed loss, a fresh head; the clean val/test clips are held out
    _ok(launch_ft(ft_data.args(s2, "stage=2", "lam=0.9", "data.pseudo_labels=pl-test", "epochs=1", "run_name=t-s2",
                               "output.log_seen_ids=true"), processes=2))
    facts = json.loads((s2 / "config.json").read_text())["facts"]
    held_out = set(split.val) | set(split.test)
    n_held = sum(i in held_out for i in ft_data.noisy_ids)
    assert facts["noisy"]["excluded_clean_val_test"] == n_held
    trained = sum(((s2 / "seen" / f"epoch0.rank{r}.txt").read_text().split() for r in range(2)), [])
    assert sorted(trained) == sorted(i for i in ft_data.noisy_ids if i not in held_out)
    assert facts["train_with_pseudo_label"] == len(trained)
    r2 = json.loads((s2 / "result.json").read_text())

    # ---- stage 3: clean set from the best stage-2 model (weights only, fresh optimizer)
    _ok(launch_ft(ft_data.args(s3, "stage=3", "lam=0.97", "data.pseudo_labels=pl-test", "epochs=1", "run_name=t-s3",
                               f"init_from={s2}"), processes=2))
    facts3 = json.loads((s3 / "config.json").read_text())["facts"]
    assert facts3["init_from"]["sha256"] == r2["weights_sha256"]
    assert facts3["init_from"]["meta"]["stage"] == 2
    r3 = json.loads((s3 / "result.json").read_text())
    assert r3["stage"] == 3 and r3["processes"] == 2 and 0.0 <= r3["test"]["hF"] <= 1.0
    for root, ids in ((ft_data.clean, ft_data.clean_ids), (ft_data.noisy, ft_data.noisy_ids)):
        st = Store(default_store_path(root), mode="r")
        for run in ("t-s1", "t-s2", "t-s3"):
            assert sorted(st.read_table(f"logits/{run}").ids.tolist()) == sorted(ids)
