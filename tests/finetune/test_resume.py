"""A run killed with SIGKILL mid-epoch and resumed reaches the weights of an uninterrupted run; an unreadable
newest state falls back to the one before."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

from finetune.checkpointing import STATE_FILE

# global batch 6 → 25 training clips make 5 updates per epoch (the last one holds 1 clip);
# a training state every 2 updates; killed right after update 7 (epoch 2, batch 2), i.e. one
# update after the mid-epoch state of update 6
RUN = [
    "train.per_device_batch_size=6",
    "train.checkpoint_every=2",
    "train.epochs=2",
    "output.write_logits=false",
]


def _state_weights(folder):
    return torch.load(folder / STATE_FILE, weights_only=False)["model"]


@pytest.mark.slow
def test_sigkill_and_resume_reach_the_uninterrupted_weights(ft_data, tmp_path, run_ft, launch_ft):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    torch.set_num_threads(1)
    assert run_ft(ft_data.args(ref, *RUN)) == 0

    p = launch_ft(ft_data.args(killed, *RUN), env_extra={"FINETUNE_KILL_AT_STEP": "7"})
    assert p.returncode == -signal.SIGKILL, p.stderr[-3000:]
    state = json.loads((killed / "state" / "last" / "complete.json").read_text())
    assert state == {"global_step": 6, "epoch": 1, "next_batch": 1}  # mid-epoch
    assert not (killed / "result.json").exists()

    assert run_ft([*ft_data.args(killed, *RUN), "--resume"]) == 0
    a, b = _state_weights(ref / "state" / "last"), _state_weights(killed / "state" / "last")
    assert a.keys() == b.keys() and len(a) > 5
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)
    # the same best epoch, the same validation scores, the same number of updates
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (ref, killed))
    assert rb["best_epoch"] == ra["best_epoch"]
    assert rb["val"]["hF"] == pytest.approx(ra["val"]["hF"], abs=1e-9)
    ha, hb = (json.loads((d / "metrics.json").read_text())["history"] for d in (ref, killed))
    assert [h["updates"] for h in hb] == [h["updates"] for h in ha] == [5, 10]
    assert np.allclose([h["train_loss"] for h in hb], [h["train_loss"] for h in ha], rtol=1e-4)


def test_resume_falls_back_to_prev_when_last_is_corrupt(ft_data, tmp_path, run_ft, capsys):
    out = tmp_path / "corrupt"
    args = ft_data.args(
        out, "train.per_device_batch_size=6", "train.checkpoint_every=0", "output.write_logits=false"
    )
    torch.set_num_threads(1)
    assert run_ft(args) == 0  # states after epoch 1 (prev) and epoch 2 (last)
    assert json.loads((out / "state" / "prev" / "complete.json").read_text())["epoch"] == 1
    ref = _state_weights(out / "state" / "last")
    ref_val = json.loads((out / "result.json").read_text())["val"]["hF"]
    (out / "state" / "last" / STATE_FILE).write_bytes(b"cut short")
    capsys.readouterr()

    assert run_ft([*args, "--resume"]) == 0
    notices = [line for line in capsys.readouterr().out.splitlines() if "cannot be loaded" in line]
    assert len(notices) == 1, notices
    assert f"--resume: {out / 'state' / 'last'} cannot be loaded (" in notices[0]
    assert f"falling back to {out / 'state' / 'prev'} (the unloadable one is kept as " in notices[0]
    # set aside: the next save cannot rotate it over the good state (prev is epoch 1's, last epoch 2's)
    assert (out / "state" / "last.unloadable" / STATE_FILE).read_bytes() == b"cut short"
    assert json.loads((out / "state" / "prev" / "complete.json").read_text())["epoch"] == 1
    # epoch 2 trained again from the epoch-1 state reaches the same weights and scores
    got = _state_weights(out / "state" / "last")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6, msg=k)
    assert json.loads((out / "result.json").read_text())["val"]["hF"] == pytest.approx(ref_val, abs=1e-9)
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]
