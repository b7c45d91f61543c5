"""Reference schedule values at known steps; the trainer follows it; early stopping."""

import numpy as np
import pytest
import torch

from heads.early_stopping import EarlyStopping
from heads.schedule import reference_schedule, schedule_factor
from heads.training import TrainConfig, train_head
from testkit.synthetic_heads import synthetic_data


def lr_at(base_lr, step, steps_per_epoch, epochs, warmup_epochs=1, decay_start_epoch=1, final_lr=1e-7):
    """Learning rate of update number ``step`` (0-based) under the reference schedule."""
    factor = schedule_factor(steps_per_epoch, epochs, warmup_epochs, decay_start_epoch, final_lr / base_lr)
    return base_lr * factor(step)


def described_factor(step, spe, epochs, warmup_epochs, decay_start_epoch, ratio):
    """The reference's lambda as docs/parity.md describes it, written out independently."""
    W = int(warmup_epochs * spe)
    D = None if decay_start_epoch is None else int(decay_start_epoch * spe)
    T = max(1, int(epochs * spe))
    if W > 0 and step < W:
        return 0.0 if W == 1 else step / (W - 1)
    if D is None or D >= T or step < D:
        return 1.0
    span = T - D
    if span <= 1:
        return ratio
    return 1.0 - (1.0 - ratio) * min(step - D, span - 1) / (span - 1)


def _lrs(n_steps, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = reference_schedule(opt, **kw)
    out = []
    for _ in range(n_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize(
    "spe,epochs,warmup,decay",
    [
        (10, 5, 1, 1),
        (10, 4, 1, 2),
        (7, 3, 1, 2),
        (1, 6, 1, 1),
        (3, 2, 0.5, 1),
        (5, 3, 0, 1),
        (4, 3, 2, 1),
        (6, 2, 1, 2),
        (6, 2, 1, 1.9),
        (9, 4, 1.5, None),
        (2, 1, 0, 0),
    ],
)
def test_schedule_equals_the_reference_formula(spe, epochs, warmup, decay):
    ratio = 1e-4
    f = schedule_factor(spe, epochs, warmup, decay, ratio)
    total = spe * epochs
    assert [f(s) for s in range(total + 3)] == pytest.approx(
        [described_factor(s, spe, epochs, warmup, decay, ratio) for s in range(total + 3)], abs=1e-15
    )


def test_reference_schedule_known_values():
    lrs = _lrs(50, steps_per_epoch=10, epochs=5)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(1e-3 * 5 / 9)
    assert lrs[9] == pytest.approx(1e-3)  # the peak at the last warm-up update
    assert lrs[10] == pytest.approx(1e-3)  # decay starts here: fraction 0
    # decay over 40 updates, 39 steps from 1e-3 (update 10) to exactly 1e-7 (update 49, the last)
    assert lrs[30] == pytest.approx(1e-3 + (1e-7 - 1e-3) * 20 / 39)
    assert lrs[49] == pytest.approx(1e-7, rel=1e-9)
    assert lr_at(1e-3, 60, 10, 5) == pytest.approx(1e-7, rel=1e-9)  # stays at the minimum


def test_reference_schedule_edge_cases():
    # one warm-up update: factor 0 at update 0, then the base rate
    f = schedule_factor(1, 4, 1, 2, 0.0)
    assert [f(s) for s in range(4)] == [0.0, 1.0, 1.0, 0.0]
    # a decay span of one update: the minimum at once
    f = schedule_factor(5, 2, 1, 1.8, 0.25)
    assert [f(s) for s in range(10)] == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 0.25])
    # no warm-up: the base rate from update 0
    assert schedule_factor(5, 2, 0, 1, 0.0)(0) == 1.0


def test_reference_schedule_decay_start_epoch_2():
    lrs = _lrs(40, steps_per_epoch=10, epochs=4, decay_start_epoch=2)
    assert lrs[9] == pytest.approx(1e-3) and lrs[19] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(1e-3 + (1e-7 - 1e-3) * 10 / 19)
    assert lrs[39] == pytest.approx(1e-7, rel=1e-9)
    assert [lr_at(1e-3, s, 10, 4, decay_start_epoch=2) for s in range(40)] == pytest.approx(lrs)


def test_trainer_follows_the_reference_schedule():
    # 40 items in batches of 8: 5 updates per epoch; each epoch's history row holds the lr of its last update
    cfg = TrainConfig(lr=2e-3, epochs=4, batch_size=8, decay_start_epoch=2, device="cpu", hidden=8)
    res = train_head(cfg, synthetic_data(40, dim=4), None)
    got = [row["lr"] for row in res.history]
    assert got == pytest.approx(
        [lr_at(2e-3, 5 * e + 4, 5, 4, decay_start_epoch=2) for e in range(4)], rel=1e-6
    )


def test_early_stopping():
    es = EarlyStopping(patience=2, mode="max")
    assert es.step(0.5, 0) and not es.should_stop
    assert not es.step(0.4, 1) and not es.should_stop
    assert es.step(0.6, 2) and es.best_epoch == 2
    assert not es.step(0.6, 3)
    assert not es.step(0.1, 4) and es.should_stop
    assert es.best == 0.6 and es.best_epoch == 2
    es = EarlyStopping(patience=1, mode="min")
    assert es.step(1.0, 0) and es.step(0.5, 1) and not es.step(0.7, 2) and es.should_stop


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_may_stop_next_predicts_whether_a_non_improving_epoch_stops(patience):
    rng = np.random.default_rng(patience)
    es = EarlyStopping(patience=patience, mode="max")
    for epoch, value in enumerate(rng.random(12)):
        probe = EarlyStopping(patience)
        probe.load_state_dict(es.state_dict())
        probe.step(float("nan"), epoch)  # never an improvement
        assert es.may_stop_next() == probe.should_stop
        es.step(value, epoch)
