"""Stacked search: early-stopped configurations leave the stack; successive halving."""

import dataclasses

import pytest
import torch

from heads.search import ranking, run_search, rung_ends
from heads.training import TrainConfig, train_head, train_stacked
from testkit.synthetic_heads import synthetic_data


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_early_stopped_configurations_leave_the_stack_and_the_others_are_unchanged():
    train = synthetic_data(200, dim=8, signal="both", seed=0)
    val = synthetic_data(60, dim=8, signal="both", seed=1)
    base = TrainConfig(epochs=12, patience=2, device="cpu", hidden=32)
    cfgs = [dataclasses.replace(base, lr=lr, seed=s) for s, lr in enumerate([3e-3, 1e-5, 1e-3, 3e-4, 3e-3])]
    shrunk = train_stacked(cfgs, train, val)
    lengths = [len(r.history) for r in shrunk]
    assert len(set(lengths)) >= 2, lengths  # configurations stop at different epochs
    # the stack holds exactly the configurations still training in each epoch
    for r in shrunk:
        for row in r.history:
            assert row["stacked"] == sum(n > row["epoch"] for n in lengths)
    assert min(row["stacked"] for r in shrunk for row in r.history) < len(cfgs)
    assert all(r.stopped_by == ("early-stopping" if len(r.history) < 12 else "") for r in shrunk)
    # the former trainer (stopped configurations kept in the stack): the same results, bit for bit
    # while a configuration shares the stack with another; a configuration left alone in it
    # takes the single-configuration matmul path, which rounds like a configuration trained alone
    kept = train_stacked(cfgs, train, val, shrink=False)
    assert all(row["stacked"] == len(cfgs) for r in kept for row in r.history)
    shared = [min(row["stacked"] for row in r.history) >= 2 for r in shrunk]
    assert sum(shared) >= 3 and not all(shared)
    for a, b, exact in zip(shrunk, kept, shared, strict=True):
        assert a.best_epoch == b.best_epoch and len(a.history) == len(b.history)
        if exact:
            assert a.best_val == b.best_val
            assert [h["val_hF"] for h in a.history] == [h["val_hF"] for h in b.history]
            assert _equal(a.state_dict, b.state_dict)
        else:
            assert a.best_val["hF"] == pytest.approx(b.best_val["hF"], abs=1e-9)
            for n in a.state_dict:
                torch.testing.assert_close(a.state_dict[n], b.state_dict[n], rtol=1e-5, atol=1e-5)
    # and each configuration trained alone (batched matmuls round alike up to float precision)
    for c, r in zip(cfgs, shrunk, strict=True):
        alone = train_head(c, train, val)
        assert alone.best_epoch == r.best_epoch and len(alone.history) == len(r.history)
        assert [h["val_hF"] for h in alone.history] == pytest.approx(
            [h["val_hF"] for h in r.history], abs=1e-9
        )
        for n, v in alone.state_dict.items():
            torch.testing.assert_close(r.state_dict[n], v, rtol=1e-5, atol=1e-5)


def test_rung_ends():
    assert rung_ends(30, 2) == [2, 4, 8, 16]
    assert rung_ends(30, 3) == [3, 6, 12, 24]
    assert rung_ends(8, 2) == [2, 4]
    assert rung_ends(2, 2) == []
    with pytest.raises(ValueError, match="rung_epochs"):
        rung_ends(10, 0)


def test_successive_halving_keeps_the_best_half_and_finds_the_known_best_learning_rate():
    # only the prior carries the label and 8 epochs are short: of these learning rates the
    # largest one learns by far the most (the known answer); the tiny ones learn nothing
    train = synthetic_data(400, dim=8, signal="prior", seed=0)
    val = synthetic_data(100, dim=8, signal="prior", seed=1)
    base = TrainConfig(epochs=8, patience=20, device="cpu", hidden=32)
    lrs = [1e-6, 3e-3, 3e-6, 1e-5, 1e-3, 3e-5, 1e-4, 3e-4]
    cfgs = [dataclasses.replace(base, lr=lr, seed=i) for i, lr in enumerate(lrs)]
    plain = run_search(cfgs, train, val)
    halved = run_search(cfgs, train, val, halving=True, rung_epochs=2)
    best = lrs.index(max(lrs))
    assert ranking(plain)[0] == best and ranking(halved)[0] == best
    assert halved[best].best_val["hF"] > 2 * max(r.best_val["hF"] for i, r in enumerate(halved) if i != best)
    # rungs end after epochs 2 and 4: 8 -> 4 -> 2 configurations, chosen on the best validation hF
    # so far (ties: lower index), read off the plain search's curves (equal up to the stop)
    alive = list(range(len(cfgs)))
    expected = {}
    for end in (2, 4):
        alive.sort(key=lambda k: (-max(h["val_hF"] for h in plain[k].history[:end]), k))
        for k in alive[len(alive) // 2 :]:
            expected[k] = end
        alive = sorted(alive[: len(alive) // 2])
    for k in alive:
        expected[k] = 8
    assert [len(r.history) for r in halved] == [expected[k] for k in range(len(cfgs))]
    assert sum(len(r.history) for r in halved) == 4 * 2 + 2 * 4 + 2 * 8  # of 64 in the plain search
    assert [r.stopped_by for r in halved] == ["halving" if expected[k] < 8 else "" for k in range(len(cfgs))]
    assert [h["stacked"] for h in halved[best].history] == [8, 8, 4, 4, 2, 2, 2, 2]
    for a, b in zip(
        plain, halved, strict=True
    ):  # a dropped configuration's curve is the plain one, cut at its rung
        assert [h["val_hF"] for h in b.history] == [h["val_hF"] for h in a.history[: len(b.history)]]
    # a survivor equals the configuration trained alone (its schedule is the full-length one)
    for k in alive:
        assert halved[k].best_epoch == plain[k].best_epoch
        for n, v in train_head(cfgs[k], train, val).state_dict.items():
            torch.testing.assert_close(halved[k].state_dict[n], v, rtol=1e-5, atol=1e-5)
    # groups of stacked configurations are halved together: same outcome
    grouped = run_search(cfgs, train, val, max_stack=3, halving=True, rung_epochs=2)
    assert [len(r.history) for r in grouped] == [len(r.history) for r in halved]
    for a, b in zip(grouped, halved, strict=True):
        for n in a.state_dict:
            torch.testing.assert_close(a.state_dict[n], b.state_dict[n], rtol=1e-5, atol=1e-5)


def test_halving_needs_a_validation_set():
    train = synthetic_data(40, dim=4, seed=0)
    with pytest.raises(ValueError, match="validation"):
        run_search([TrainConfig(epochs=4, device="cpu", hidden=8)], train, None, halving=True)
