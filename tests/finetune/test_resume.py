"""A run killed with SIGKILL mid-epoch and resumed reaches the weights of an uninterrupted run."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

# global batch 6 → 25 training clips make 5 updates per epoch (the last one holds 1 clip);
# a training state every 2 updates; killed right after update 7 (epoch 2, batch 2), i.e. one
# update after the mid-epoch state of update 6
RUN = ["train.per_device_batch_size=6", "train.checkpoint_every=2", "train.epochs=2", "output.write_logits=false"]


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
    a = torch.load(ref / "state" / "last" / "pytorch_model.bin", weights_only=True)
    b = torch.load(killed / "state" / "last" / "pytorch_model.bin", weights_only=True)
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
