"""Losses, hand-computed."""

import math

import pytest
import torch

from heads.losses import class_frequency_weights, mixed_loss, soft_ce, weighted_ce


def test_class_frequency_weights():
    w = class_frequency_weights([0, 0, 0, 1], num_classes=3)
    # N=4, C=3: w0 = 4/(3*3), w1 = 4/(3*1), w2 absent -> 0
    torch.testing.assert_close(w, torch.tensor([4 / 9, 4 / 3, 0.0]))
    assert class_frequency_weights([0, 1]).shape == (23,)
    with pytest.raises(ValueError):
        class_frequency_weights([-1, 0])


def test_weighted_ce_is_weighted_mean():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    w = torch.tensor([3.0, 1.0])
    ce = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1)), math.log(2)]
    expected = (3 * ce[0] + 1 * ce[1] + 1 * ce[2]) / (3 + 1 + 1)
    assert weighted_ce(logits, labels, w).item() == pytest.approx(expected, rel=1e-6)
    assert weighted_ce(logits, labels, None).item() == pytest.approx(sum(ce) / 3, rel=1e-6)
    # an item labelled -1 (only a pseudo-label) is left out of the mean
    unlabelled = torch.tensor([0, 1, -1])
    assert weighted_ce(logits, unlabelled, w).item() == pytest.approx((3 * ce[0] + ce[1]) / 4, rel=1e-6)


def test_soft_ce_masked_mean():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]])
    t = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    mask = torch.tensor([True, True, False])
    item0 = math.log(2)
    item1 = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    assert soft_ce(logits, t, mask).item() == pytest.approx((item0 + item1) / 2, rel=1e-6)
    assert soft_ce(logits, t, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_mixed_loss():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 23, generator=g)
    labels = torch.randint(0, 23, (6,), generator=g)
    pseudo = torch.softmax(torch.randn(6, 23, generator=g), 1)
    has = torch.tensor([True, False, True, True, False, True])
    w = torch.rand(23, generator=g) + 0.5
    lam = 0.3
    expected = 0.7 * weighted_ce(logits, labels, w) + 0.3 * soft_ce(logits, pseudo, has)
    torch.testing.assert_close(mixed_loss(logits, labels, w, pseudo, has, lam), expected)
    torch.testing.assert_close(mixed_loss(logits, labels, w), weighted_ce(logits, labels, w))
    # λ = 1: the hard labels do not matter
    torch.testing.assert_close(
        mixed_loss(logits, labels, w, pseudo, has, 1.0),
        mixed_loss(logits, (labels + 5) % 23, w, pseudo, has, 1.0),
    )
    # ... not even when no item has one
    no_labels = torch.full_like(labels, -1)
    torch.testing.assert_close(
        mixed_loss(logits, no_labels, w, pseudo, has, 1.0), soft_ce(logits, pseudo, has)
    )
