"""One-process runs of finetune/run.py in this process: outputs, cache logits, evaluation, refusals."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.manifest import load_manifest
from cache.splits import Split
from cache.store import Store, default_store_path
from cache.tables import read_logits
from finetune.config import load_config
from finetune.datasets import load_datasets
from finetune.evaluate import predict, score
from finetune.model import WEIGHTS_FORMAT, model_from_run

REPO = Path(__file__).resolve().parents[2]


def test_stage1_one_process_writes_every_output(ft_data, tmp_path, run_ft):
    out = tmp_path / "s1"
    assert run_ft(ft_data.args(out, "data.num_workers=1", "output.tensorboard=true")) == 0
    result = json.loads((out / "result.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert result["processes"] == 1 and result["global_batch"] == 18 and result["epochs_run"] == 2
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] == result["best_epoch"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and h["train_loss"] > 0 for h in metrics["history"])
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    cfg = load_config(out / "config.toml")
    assert cfg.train.epochs == 2 and cfg.output.dir == str(out)
    best = torch.load(out / "best" / "model.pt", weights_only=True)
    assert best["format"] == WEIGHTS_FORMAT and best["meta"]["epoch"] + 1 == result["best_epoch"]

    # logits for every clip of both datasets, in the head tier's table format, with provenance
    split = Split.load(out / "split.json")
    for root, ids in ((ft_data.clean, ft_data.clean_ids), (ft_data.noisy, ft_data.noisy_ids)):
        store = Store(default_store_path(root), mode="r")
        t = store.read_table(f"logits/{cfg.run_name}")
        assert sorted(t.ids.tolist()) == sorted(ids) and t["logits"].shape == (len(ids), 23)
        assert t["logits"].dtype == np.float32 and np.isfinite(t["logits"]).all()
        assert t.attrs["producer"] == "finetune" and t.attrs["stage"] == 1 and t.attrs["backbone"] == "tiny"
    clean = Store(default_store_path(ft_data.clean), mode="r")
    labels = dict(zip(load_manifest(ft_data.clean).ids, load_manifest(ft_data.clean).labels, strict=True))
    for part in ("val", "test"):
        ids = split.part(part)
        s = score(read_logits(clean, cfg.run_name, ids), np.array([labels[i] for i in ids]))
        assert s.hF == pytest.approx(result[part]["hF"], abs=1e-12)

    # evaluating the best weights again from the run folder gives the same logits
    model, cfg2 = model_from_run(out)
    val = load_datasets(cfg2).val
    logits, failures = predict(model, val, max_windows=5, progress=False)
    assert not failures
    np.testing.assert_allclose(logits, read_logits(clean, cfg.run_name, list(val.ids)), atol=1e-5)


def test_refusals(ft_data, tmp_path, capsys, run_ft):
    out = tmp_path / "refused"
    # 18 clips per global batch cannot be split into 4 accumulation steps of one process
    assert run_ft(ft_data.args(out, "train.grad_accum=4")) == 2
    err = capsys.readouterr().err
    assert "global batch size 18 is not divisible by 1 process(es) × 4 accumulation step(s) = 4" in err
    assert not (out / "state").exists()
    # ... unless a per-device batch is given (here 3 × 1 × 4 = 12 per update); one epoch is enough
    assert (
        run_ft(
            ft_data.args(
                out,
                "train.grad_accum=4",
                "train.per_device_batch_size=3",
                "train.epochs=1",
                "output.write_logits=false",
            )
        )
        == 0
    )
    assert json.loads((out / "result.json").read_text())["global_batch"] == 12
    # a finished run is never overwritten silently
    assert run_ft(ft_data.args(out, "train.epochs=1")) == 2
    assert "already holds a training state" in capsys.readouterr().err


def test_text_from_metadata_and_a_clip_that_fails_to_decode(ft_data, tmp_path, run_ft):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(ft_data.clean, data, ignore=shutil.ignore_patterns("cache.zarr"))
    shutil.copytree(ft_data.clean / "cache.zarr", data / "cache.zarr")
    bad = ft_data.clean_ids[5]
    (data / "audio" / f"{bad}.wav").write_bytes(b"RIFF not really a wav file")
    out = tmp_path / "meta"
    args = ft_data.args(
        out,
        "backbone.variant=clap",
        "backbone.text_source=metadata",
        "train.epochs=1",
        "data.noisy=''",
        f"data.clean={data}",
        "output.run_name=t-meta",
    )
    assert run_ft(args) == 0
    facts = json.loads((out / "config.json").read_text())["facts"]
    assert facts["use_text"] and facts["head"]["in_dim"] == 16 + 32 and facts["unused_parameters"] == []
    result = json.loads((out / "result.json").read_text())
    assert list(result["decode_failures"]) == ["TESTCLEAN"] and bad in result["decode_failures"]["TESTCLEAN"]
    t = Store(default_store_path(data), mode="r").read_table("logits/t-meta")
    assert len(t) == 40 and np.isfinite(t["logits"]).all() and t.attrs["decode_failures"] == [bad]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("finetune:")]


def test_missing_inputs_exit_2_with_one_line_naming_them(ft_data, tmp_path, capsys, run_ft):
    stage2 = ["train.stage=2", "train.lam=0.9", "train.epochs=1", "output.write_logits=false"]
    assert run_ft(ft_data.args(tmp_path / "a", *stage2, "data.pseudo_labels=no-such-labels")) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert (
        "data.pseudo_labels: no table pseudo_labels/no-such-labels in" in line
        and "python -m heads pseudo-labels" in line
    )
    missing = tmp_path / "no-such-run"
    assert run_ft(ft_data.args(tmp_path / "b", "train.init_from=" + str(missing), "train.epochs=1")) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert f"train.init_from: no weights file {missing} (give a finished run folder" in line
    missing.mkdir()  # a run folder without best weights
    assert run_ft(ft_data.args(tmp_path / "c", "train.init_from=" + str(missing), "train.epochs=1")) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert f"train.init_from: no weights file {missing}/best/model.pt" in line


def test_only_rank_0_prints_the_refusal(ft_data, tmp_path, capsys, run_ft, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert run_ft(ft_data.args(tmp_path / "x", "train.grad_accum=4")) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert run_ft(ft_data.args(tmp_path / "x", "train.grad_accum=4")) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1


def test_a_second_run_into_a_held_output_folder_is_refused(ft_data, tmp_path, capsys, run_ft):
    out = tmp_path / "locked"
    holder = subprocess.Popen(  # another process holds the folder's lock (cache.locks), as a live run would
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom cache.locks import hold_lock\n"
            "with hold_lock(sys.argv[1], 'a fine-tune run'):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n",
            str(out / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_ft(ft_data.args(out, "train.epochs=1")) == 2
        [line] = _error_lines(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait()
    assert f"{out} is in use by another fine-tune run (pid {holder.pid} on {socket.gethostname()}" in line
    assert not (out / "state").exists()
    # the holder is gone (killed: the kernel dropped its lock): the run goes ahead
    assert run_ft(ft_data.args(out, "train.epochs=1", "output.write_logits=false")) == 0


def test_workers_and_prefetch_leave_the_results_unchanged(ft_data, tmp_path, run_ft):
    """Persistent decode workers that start the next epoch during validation give the logits and
    losses of a run that decodes in the main process (same seed); metrics.json and result.json
    hold the time per phase."""
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        torch.set_num_threads(1)
        assert (
            run_ft(
                ft_data.args(
                    out, f"data.num_workers={workers}", "train.epochs=3", "output.write_logits=false"
                )
            )
            == 0
        )
        runs[workers] = out
    a, b = (np.load(runs[w] / "logits.npz") for w in (0, 2))
    assert a.files == b.files
    for k in a.files:
        if k.endswith("__logits"):
            np.testing.assert_array_equal(a[k], b[k])
    ha, hb = (json.loads((runs[w] / "metrics.json").read_text()) for w in (0, 2))
    assert [h["train_loss"] for h in ha["history"]] == [h["train_loss"] for h in hb["history"]]
    assert [p["epoch"] for p in hb["phase_seconds"]] == [1, 2, 3]
    assert {"train_step", "data_wait", "eval", "state_save", "logging"} <= set(hb["phase_seconds"][0])
    phases = json.loads((runs[2] / "result.json").read_text())["phase_seconds"]
    assert {"setup", "epochs", "finish"} <= set(phases) and phases["per_phase"]["train_step"] > 0


def test_disk_full_is_one_line_with_exit_2(ft_data, tmp_path, capsys, monkeypatch):
    import errno

    import finetune.trainer
    from finetune.run import main as run_main

    def fail(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "state"))

    monkeypatch.setattr(finetune.trainer, "train", fail)
    assert run_main(ft_data.args(tmp_path / "o", "train.epochs=1")) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert (
        "the disk is full" in line and str(tmp_path / "o" / "state") in line and "another output.dir" in line
    )


@pytest.mark.parametrize("exclude", [True, False])
def test_stage2_noisy_overlap_switch(ft_data, tmp_path, exclude):
    """Stage 2 leaves out the noisy clips that are in the clean validation/test split by default;
    ``data.exclude_noisy_overlap = false`` trains on every noisy clip, as the reference did.
    Both count them."""
    cfg = load_config(
        None,
        ft_data.overrides(tmp_path, "train.stage=2", f"data.exclude_noisy_overlap={str(exclude).lower()}"),
    )
    data = load_datasets(cfg, log=lambda _m: None)
    held_out = set(data.split.val) | set(data.split.test)
    overlap = [i for i in ft_data.noisy_ids if i in held_out]
    assert overlap  # the fixture shares clean clips with the noisy set
    trained = set(map(str, data.train.ids))
    assert trained == (
        {i for i in ft_data.noisy_ids if i not in held_out} if exclude else set(ft_data.noisy_ids)
    )
    noisy = data.facts["noisy"]
    assert noisy["overlap_clean_val_test"] == len(overlap)
    assert noisy["excluded_clean_val_test"] == (len(overlap) if exclude else 0)
    assert noisy["exclude_noisy_overlap"] is exclude
