"""Reference schedule values at known steps; the trainer follows it; early stopping."""
import pytest
import torch

from heads.early_stopping import EarlyStopping
from heads.schedule import reference_schedule, schedule_factor
from testkit.synthetic_heads import synthetic_data
from heads.training import TrainConfig, train_head


def lr_at(base_lr, step, steps_per_epoch, epochs, warmup_epochs=1, decay_start_epoch=1, final_lr=1e-7):
    """Learning rate of update number ``step`` (0-based) under the reference schedule."""
    factor = schedule_factor(steps_per_epoch, epochs, warmup_epochs, decay_start_epoch, final_lr / base_lr)
    return base_lr * factor(step)


def _lrs(n_steps, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = reference_schedule(opt, **kw)
    out = []
    for _ in range(n_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_reference_schedule_known_values():
    lrs = _lrs(50, steps_per_epoch=10, epochs=5)
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(5e-4)
    assert lrs[10] == pytest.approx(1e-3)
    # decay from step 10 (1e-3) to step 50 (1e-7): linear
    assert lrs[30] == pytest.approx(1e-3 + (1e-7 - 1e-3) * 0.5)
    assert lrs[49] == pytest.approx(1e-3 + (1e-7 - 1e-3) * 39 / 40)
    assert lr_at(1e-3, 50, 10, 5) == pytest.approx(1e-7)


def test_reference_schedule_decay_start_epoch_2():
    lrs = _lrs(40, steps_per_epoch=10, epochs=4, decay_start_epoch=2)
    assert lrs[10] == pytest.approx(1e-3) and lrs[19] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(1e-3 + (1e-7 - 1e-3) * 0.5)
    assert [lr_at(1e-3, s, 10, 4, decay_start_epoch=2) for s in range(40)] == pytest.approx(lrs)


def test_trainer_follows_the_reference_schedule():
    # 40 items in batches of 8: 5 updates per epoch; each epoch's history row holds the lr of its last update
    cfg = TrainConfig(lr=2e-3, epochs=4, batch_size=8, decay_start_epoch=2, device="cpu", hidden=8)
    res = train_head(cfg, synthetic_data(40, dim=4), None)
    got = [row["lr"] for row in res.history]
    assert got == pytest.approx([lr_at(2e-3, 5 * e + 4, 5, 4, decay_start_epoch=2) for e in range(4)], rel=1e-6)


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
