"""Ensembles and decoding."""

import numpy as np
import pytest

from cache.metric import CREDIT, hierarchical_scores
from heads.ensemble import (
    decode,
    expected_credit,
    mean_logits,
    select,
    select_exhaustive,
    select_greedy,
    softmax,
)


def _task(n=300, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 23, n)
    good = rng.normal(size=(n, 23)) * noise
    good[np.arange(n), y] += 2.5
    bad = rng.normal(size=(n, 23))
    return y, good.astype(np.float32), bad.astype(np.float32)


def test_ensemble_of_identical_models_equals_the_single_model():
    y, good, _ = _task()
    stack = np.stack([good, good, good])
    np.testing.assert_allclose(mean_logits(stack), good, rtol=1e-6)
    for rule in ("argmax", "expected-credit"):
        p1, s1 = decode(good, rule)
        p3, s3 = decode(mean_logits(stack), rule)
        np.testing.assert_array_equal(p1, p3)
        np.testing.assert_allclose(s1, s3, rtol=1e-6)
    sel = select_greedy(stack, y)
    assert sel.members == [0]  # adding a copy never improves
    assert sel.val_hF == pytest.approx(hierarchical_scores(y, good.argmax(1)).hF)


def test_greedy_and_exhaustive_selection_prefer_the_informative_model():
    y, good, bad = _task()
    stack = np.stack([bad, good, bad * 0.5])
    assert select_greedy(stack, y).members[0] == 1
    ex = select_exhaustive(stack, y)
    assert 1 in ex.members
    # exhaustive is at least as good as greedy on the data it selects on
    assert ex.val_hF >= select_greedy(stack, y).val_hF - 1e-12
    allsel = select(stack, y, "all")
    assert allsel.members == [0, 1, 2]
    with pytest.raises(ValueError):
        select(stack, y, "nope")


def test_expected_credit_decoding_never_lowers_expected_credit():
    rng = np.random.default_rng(1)
    n = 4000
    # calibrated task: each item's truth is drawn from its predicted distribution
    logits = rng.normal(size=(n, 23)) * 1.5
    p = softmax(logits)
    truth = np.array([rng.choice(23, p=pi) for pi in p])
    pa, _ = decode(logits, "argmax")
    pe, _ = decode(logits, "expected-credit")
    ec = expected_credit(p)
    # per item, the expected credit of the expected-credit decision is the maximum over classes
    assert np.all(ec[np.arange(n), pe] >= ec[np.arange(n), pa] - 1e-12)
    np.testing.assert_allclose(ec[np.arange(n), pe], ec.max(1))
    assert ec[np.arange(n), pe].mean() > ec[np.arange(n), pa].mean()  # strictly better on this task
    # realised credit follows the expectation on a calibrated task
    assert CREDIT[pe, truth].mean() >= CREDIT[pa, truth].mean()


def test_expected_credit_matches_hand_computation():
    # p: 0.4 on m-sp (0), 0.35 on m-si (1), 0.25 on fx-a (15): music gets 0.4+0.375*0.35 etc.
    p = np.zeros((1, 23))
    p[0, 0], p[0, 1], p[0, 15] = 0.4, 0.35, 0.25
    ec = expected_credit(p)[0]
    assert ec[0] == pytest.approx(0.4 + 0.375 * 0.35)
    assert ec[1] == pytest.approx(0.35 + 0.375 * 0.4)
    assert ec[2] == pytest.approx(0.375 * 0.75)  # m-m: same top level as both music classes
    assert ec[15] == pytest.approx(0.25)
    pred, score = decode(np.log(np.clip(p, 1e-12, None)), "expected-credit")
    assert pred[0] == 0 and score[0] == pytest.approx(0.4)
