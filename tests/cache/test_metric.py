"""Macro hierarchical hP/hR/hF (docs/task.md §4): worked examples, hand-computed rules, properties."""

import numpy as np
import pytest

from cache.metric import CREDIT, format_table, hierarchical_scores, item_credit
from cache.taxonomy import CLASS_INDEX, CLASS_TOP_INDEX, CLASSES

TOL = 1e-9


@pytest.mark.parametrize("conv", ["zero", "drop"])
def test_worked_example_1(conv):
    s = hierarchical_scores(
        ["m-sp", "m-si", "m-si", "fx-a"], ["m-sp", "m-m", "m-si", "fx-a"], never_predicted=conv
    )
    assert s.per_class["m-sp"]["hP"] == 1 and s.per_class["m-sp"]["hR"] == 1
    assert s.per_class["m-si"]["hP"] == 1
    assert s.per_class["m-si"]["hR"] == pytest.approx((0.375 + 1) / 2, abs=TOL)
    assert s.per_class["m-si"]["hF"] == pytest.approx(2 * 0.6875 / 1.6875, abs=TOL)  # 0.814815
    assert s.per_class["fx-a"] == {"hP": 1.0, "hR": 1.0, "hF": 1.0, "support": 1, "n_predicted": 1}
    assert "m-m" not in s.per_class  # predicted only: not in the means
    assert s.hP == pytest.approx(1.0, abs=TOL)
    assert s.hR == pytest.approx((1 + 0.6875 + 1) / 3, abs=TOL)
    assert s.hF == pytest.approx((2 + 2 * 0.6875 / 1.6875) / 3, abs=TOL)
    assert round(s.hR, 6) == 0.895833 and round(s.hF, 6) == 0.938272
    assert s.never_predicted == conv and s.dropped_classes == []


def test_worked_example_2_conventions_differ():
    truth, pred = ["m-sp", "fx-a"], ["m-sp", "m-si"]
    drop = hierarchical_scores(truth, pred, never_predicted="drop")
    assert (drop.hP, drop.hR, drop.hF) == pytest.approx((1.0, 1.0, 1.0), abs=TOL)
    assert drop.dropped_classes == ["fx-a"]
    assert drop.per_class["fx-a"] == {"hP": None, "hR": 0.0, "hF": None, "support": 1, "n_predicted": 0}
    zero = hierarchical_scores(truth, pred, never_predicted="zero")
    assert (zero.hP, zero.hR, zero.hF) == pytest.approx((0.5, 0.5, 0.5), abs=TOL)
    assert zero.per_class["fx-a"] == {"hP": 0.0, "hR": 0.0, "hF": 0.0, "support": 1, "n_predicted": 0}
    assert zero.dropped_classes == []
    assert hierarchical_scores(truth, pred).never_predicted == "zero"  # the default


def test_item_credit_rules():
    truth = ["is-p", "is-p", "is-p", "sp-s"]
    pred = ["is-p", "is-k", "fx-a", "sp-c"]
    np.testing.assert_array_equal(item_credit(truth, pred), [1.0, 0.375, 0.0, 0.375])


def test_hand_computed_mixed_case():
    # truth: fx-a x3, fx-v x1, ss-u x2 ; predictions chosen so every rule appears
    truth = ["fx-a", "fx-a", "fx-a", "fx-v", "ss-u", "ss-u"]
    pred = ["fx-a", "fx-v", "m-m", "fx-a", "ss-u", "ss-n"]
    s = hierarchical_scores(truth, pred)
    # credits: 1, .375, 0, .375, 1, .375
    # fx-a: R=(1+.375+0)/3, P=(1 [item0] + .375 [item3])/2 ; fx-v: R=.375, P=.375 [item1]
    # ss-u: R=(1+.375)/2, P=1 ; m-m and ss-n only predicted
    rA, pA = 1.375 / 3, 1.375 / 2
    rV, pV = 0.375, 0.375
    rU, pU = 0.6875, 1.0
    f = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert set(s.per_class) == {"fx-a", "fx-v", "ss-u"}
    assert s.hP == pytest.approx((pA + pV + pU) / 3, abs=TOL)
    assert s.hR == pytest.approx((rA + rV + rU) / 3, abs=TOL)
    assert s.hF == pytest.approx((f(pA, rA) + f(pV, rV) + f(pU, rU)) / 3, abs=TOL)
    assert s.hF != pytest.approx(f(s.hP, s.hR))  # mean of per-class F, not F of the means
    assert s.accuracy == pytest.approx(2 / 6) and s.top_accuracy == pytest.approx(5 / 6)


def test_class_only_in_predictions_does_not_enter_means():
    a = hierarchical_scores(["fx-a", "fx-a"], ["fx-a", "fx-a"])
    b = hierarchical_scores(["fx-a", "fx-a", "m-sp"], ["fx-a", "fx-a", "ss-n"], never_predicted="drop")
    assert set(b.per_class) == {"fx-a", "m-sp"}
    # m-sp never predicted -> dropped; ss-n only predicted -> ignored; so b == a
    assert (b.hP, b.hR, b.hF) == pytest.approx((a.hP, a.hR, a.hF), abs=TOL) == (1.0, 1.0, 1.0)


def test_never_predicted_class_zero_vs_drop_hand_computed():
    truth = ["fx-a", "fx-a", "fx-v", "m-sp"]
    pred = ["fx-a", "fx-v", "fx-a", "fx-a"]  # m-sp never predicted; fx-v predicted once
    # fx-a: P = (1 + .375 + 0)/3, R = (1+.375)/2 ; fx-v: P=.375, R=.375 ; m-sp: R=0, P undefined
    pA, rA, pV, rV = 1.375 / 3, 0.6875, 0.375, 0.375
    fA, fV = 2 * pA * rA / (pA + rA), 0.375
    z = hierarchical_scores(truth, pred, "zero")
    assert (z.hP, z.hR, z.hF) == pytest.approx(((pA + pV) / 3, (rA + rV) / 3, (fA + fV) / 3), abs=TOL)
    d = hierarchical_scores(truth, pred, "drop")
    assert (d.hP, d.hR, d.hF) == pytest.approx(((pA + pV) / 2, (rA + rV) / 2, (fA + fV) / 2), abs=TOL)


def test_both_zero_gives_zero_f():
    s = hierarchical_scores(["fx-a", "m-sp"], ["m-sp", "fx-a"])
    assert s.per_class["fx-a"] == {"hP": 0.0, "hR": 0.0, "hF": 0.0, "support": 1, "n_predicted": 1}
    assert (s.hP, s.hR, s.hF) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("conv", ["zero", "drop"])
def test_perfect_prediction_is_one(conv):
    y = np.random.default_rng(0).integers(0, 23, 500)
    s = hierarchical_scores(y, y, conv)
    assert (s.hP, s.hR, s.hF, s.accuracy, s.top_accuracy) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_invariant_to_row_order():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 23, 2000)
    p = np.where(rng.random(2000) < 0.6, t, rng.integers(0, 23, 2000))
    perm = rng.permutation(2000)
    for conv in ("zero", "drop"):
        a, b = hierarchical_scores(t, p, conv), hierarchical_scores(t[perm], p[perm], conv)
        assert (a.hP, a.hR, a.hF) == pytest.approx((b.hP, b.hR, b.hF), abs=TOL)
        assert a.per_class.keys() == b.per_class.keys()
        for c, r in a.per_class.items():
            for k, v in r.items():
                assert v == pytest.approx(b.per_class[c][k], abs=TOL), (c, k)


def test_only_top_level_correct_gives_0375_everywhere():
    # every prediction is a sibling of its truth (same top, different sub-class)
    truth = np.arange(23).repeat(3)
    sibling = {
        c: next(k for k in range(23) if k != c and CLASS_TOP_INDEX[k] == CLASS_TOP_INDEX[c])
        for c in range(23)
    }
    pred = np.array([sibling[c] for c in truth])
    np.testing.assert_array_equal(item_credit(truth, pred), np.full(len(truth), 0.375))
    s = hierarchical_scores(truth, pred)
    assert s.accuracy == 0 and s.top_accuracy == 1
    assert s.hR == pytest.approx(0.375, abs=TOL)
    for r in s.per_class.values():
        assert r["hR"] == pytest.approx(0.375, abs=TOL)
        assert r["hP"] in (0.0, pytest.approx(0.375, abs=TOL))  # 0 only for never-predicted classes


def test_string_codes_equal_indices():
    rng = np.random.default_rng(2)
    t, p = rng.integers(0, 23, 300), rng.integers(0, 23, 300)
    a = hierarchical_scores(t, p)
    b = hierarchical_scores([CLASSES[i] for i in t], np.array([CLASSES[i] for i in p], dtype=object))
    assert a.as_dict() == b.as_dict()


def test_credit_matrix_matches_the_rule():
    for pi, pc in enumerate(CLASSES):
        for ti, tc in enumerate(CLASSES):
            expected = 1.0 if pc == tc else 0.375 if pc.split("-")[0] == tc.split("-")[0] else 0.0
            assert CREDIT[pi, ti] == expected


def test_bad_input():
    with pytest.raises(ValueError, match="unknown class code 'fx-zz'"):
        hierarchical_scores(["fx-a"], ["fx-zz"])
    with pytest.raises(ValueError, match="1 truths but 2 predictions"):
        hierarchical_scores([0], [0, 1])
    with pytest.raises(ValueError, match="indices must lie in 0..22"):
        hierarchical_scores([23], [0])
    with pytest.raises(ValueError, match="never_predicted"):
        hierarchical_scores([0], [0], "ignore")
    with pytest.raises(ValueError, match="nothing to score"):
        hierarchical_scores([], [])


def test_format_table_names_convention():
    text = format_table(hierarchical_scores(["m-sp", "fx-a"], ["m-sp", "m-si"], "drop"))
    assert "never-predicted convention: 'drop'" in text
    assert (
        "| fx-a | — | 0.0000 | — | 1 | 0 |" in text and "| m-sp | 1.0000 | 1.0000 | 1.0000 | 1 | 1 |" in text
    )
    assert CLASS_INDEX["m-sp"] == 0
