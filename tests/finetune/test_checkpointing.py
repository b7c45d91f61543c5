"""Training states: what a save snapshots, what a load restores, background writes and failed writes."""

from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import finetune.checkpointing as ckpt
from finetune.checkpointing import STATE_FILE, StateFolders, TrainState, load_state


def _setup(seed: int = 0, device: str = "cpu"):
    torch.manual_seed(seed)
    acc = Accelerator(cpu=device == "cpu")
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    model, opt = acc.prepare(model, opt)
    return acc, model, opt, sched, TrainState()


def _train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        model(torch.randn(4, 6)).square().mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("background", [True, False])
def test_load_restores_what_the_save_snapshotted(tmp_path, background):
    acc, model, opt, sched, state = _setup()
    _train(model, opt, sched, 3)
    state.global_step, state.history = 3, [{"epoch": 1}]
    folders = StateFolders(tmp_path / "state", acc, background=background)
    folders.save({"global_step": 3}, model, opt, [sched, state])
    saved_w, saved_opt = _weights(model), json.dumps(opt.state_dict()["param_groups"])
    expected_draws = (random.random(), np.random.rand(), torch.rand(3))  # what follows the saved RNG states
    _train(model, opt, sched, 1)  # training goes on while the state is written
    folders.wait()
    assert json.loads((tmp_path / "state" / "last" / "complete.json").read_text()) == {"global_step": 3}

    acc2, model2, opt2, sched2, state2 = _setup(seed=1)  # other weights, fresh optimizer
    load_state(acc2, tmp_path / "state" / "last", model2, opt2, [sched2, state2])
    got = _weights(model2)
    assert all(torch.equal(got[k], saved_w[k]) for k in saved_w)
    assert json.dumps(opt2.state_dict()["param_groups"]) == saved_opt
    assert sched2.last_epoch == 3 and state2.global_step == 3 and state2.history == [{"epoch": 1}]
    draws = (random.random(), np.random.rand(), torch.rand(3))
    assert draws[0] == expected_draws[0] and draws[1] == expected_draws[1]
    assert torch.equal(draws[2], expected_draws[2])
    assert float(opt2.state_dict()["state"][0]["step"]) == 3


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))],
)
def test_a_background_write_holds_the_values_of_the_moment_of_saving(tmp_path, monkeypatch, device):
    """On a GPU the copies to pinned host buffers are asynchronous: the writer must still see the
    values of the moment of saving although the weights change right after ``save`` returns."""
    acc, model, opt, sched, state = _setup(device=device)
    saved = _weights(model)
    real_save, started, go = torch.save, [], threading.Event()

    def slow_save(obj, f):  # the write starts only after the training thread changed every weight
        started.append(True)
        go.wait(timeout=60)
        real_save(obj, f)

    monkeypatch.setattr(ckpt.torch, "save", slow_save)
    folders = StateFolders(tmp_path / "state", acc)
    folders.save({"global_step": 0}, model, opt, [sched, state])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    go.set()
    folders.wait()
    assert started == [True]
    written = torch.load(tmp_path / "state" / "last" / STATE_FILE, weights_only=False)["model"]
    assert all(torch.equal(written[k], saved[k].cpu()) for k in saved)


def test_a_failed_write_keeps_the_previous_state_and_is_raised_by_the_next_wait(tmp_path, monkeypatch):
    acc, model, opt, sched, state = _setup()
    folders = StateFolders(tmp_path / "state", acc)
    folders.save({"global_step": 1}, model, opt, [sched, state])
    folders.wait()

    def disk_full(obj, f):
        with open(f, "wb") as half:  # part of a file, as a full disk leaves it
            half.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    folders.save({"global_step": 2}, model, opt, [sched, state])
    with pytest.raises(OSError, match="No space left"):
        folders.wait()
    folders.wait()  # raised once
    assert folders.complete() == [tmp_path / "state" / "last"]
    assert json.loads((tmp_path / "state" / "last" / "complete.json").read_text()) == {"global_step": 1}
    assert not (tmp_path / "state" / "tmp" / "complete.json").exists()


def test_states_saved_by_accelerate_save_state_are_still_loaded(tmp_path):
    acc, model, opt, sched, state = _setup()
    acc.register_for_checkpointing(sched, state)
    _train(model, opt, sched, 2)
    state.global_step = 2
    acc.save_state(str(tmp_path / "old"), safe_serialization=False)
    saved = _weights(model)
    _train(model, opt, sched, 2)
    state.global_step = 4
    load_state(acc, tmp_path / "old", model, opt, [sched, state])
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved) and state.global_step == 2


def test_consecutive_saves_reuse_host_buffers_without_mixing_states(tmp_path):
    acc, model, opt, sched, state = _setup()
    folders = StateFolders(tmp_path / "state", acc)
    written, buffers = [], []
    for step in (1, 2, 3):
        _train(model, opt, sched, 1)
        written.append(_weights(model))
        folders.save({"global_step": step}, model, opt, [sched, state])
        buffers.append({k: b.data_ptr() for k, b in folders._host._buffers.items()})
    folders.wait()
    assert len(buffers[0]) > 6 and buffers[0] == buffers[1] == buffers[2]  # the same memory every time
    for name, want in (("prev", written[1]), ("last", written[2])):
        got = torch.load(tmp_path / "state" / name / STATE_FILE, weights_only=False)
        assert all(torch.equal(got["model"][k], want[k]) for k in want), name
        assert float(got["optimizer"]["state"][0]["step"]) == {"prev": 2, "last": 3}[name]
