"""FusionHead: shapes, presets, parameter counts, missing-prior handling."""

import pytest
import torch

from heads.model import PRESETS, FusionHead


def _inputs(B=5, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, D, generator=g)
    q = torch.softmax(torch.randn(B, 23, generator=g), 1)
    miss = torch.tensor([False, True, False, True, False])[:B]
    return h, q, miss


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("missing", ["zero", "learned"])
def test_shapes(preset, missing):
    head = FusionHead(8, preset=preset, missing_prior=missing)
    h, q, miss = _inputs()
    assert head(h, q, miss).shape == (5, 23)


def test_submitted_parameter_count_matches_formula():
    D, C = 8, 23
    head = FusionHead(D)
    expected = C * D + (2 * D * 2 * D + 2 * D) + (2 * D * D + D) + (D * C + C)
    assert head.n_parameters() == expected
    assert FusionHead(D, missing_prior="learned").n_parameters() == expected + D
    assert FusionHead(D, hidden=5).n_parameters() == C * D + (2 * D * 5 + 5) + (5 * D + D) + (D * C + C)


def test_other_presets_parameter_counts():
    D, C = 8, 23
    assert FusionHead(D, preset="no-prior").n_parameters() == D * C + C
    assert FusionHead(D, preset="workshop").n_parameters() == C * D + (2 * D * 1024 + 1024) + (1024 * C + C)
    H = 16
    assert FusionHead(D, preset="prior-only", hidden=H).n_parameters() == C * H + (H * H + H) + (H * C + C)


def test_submitted_forward_matches_hand_computation():
    head = FusionHead(8).eval()
    h, q, _ = _inputs()
    lin1, lin2, out = head.body[1], head.body[4], head.body[6]
    m = q @ head.prior_embedding
    z = torch.cat([h, m], 1)
    expected = out(lin2(torch.nn.functional.gelu(lin1(z))))
    torch.testing.assert_close(head(h, q), expected)


def test_no_prior_ignores_prior_and_prior_only_ignores_h():
    h, q, miss = _inputs()
    head = FusionHead(8, preset="no-prior").eval()
    torch.testing.assert_close(head(h, q), head(h, None))
    po = FusionHead(8, preset="prior-only").eval()
    torch.testing.assert_close(po(h, q), po(torch.zeros_like(h), q))


def test_missing_prior_zero_equals_zero_prior():
    head = FusionHead(8).eval()
    h, q, miss = _inputs()
    q0 = q.clone()
    q0[miss] = 0
    torch.testing.assert_close(head(h, q, miss), head(h, q0))
    # rows that are not missing are untouched
    torch.testing.assert_close(head(h, q, miss)[~miss], head(h, q)[~miss])


def test_missing_prior_learned_uses_the_learned_vector():
    head = FusionHead(8, missing_prior="learned").eval()
    h, q, miss = _inputs()
    m = head.prior_representation(q, miss, 5)
    torch.testing.assert_close(m[miss], head.missing_embedding.expand(int(miss.sum()), 8))
    torch.testing.assert_close(m[~miss], q[~miss] @ head.prior_embedding)
    # the prior values of a missing clip do not matter
    q2 = q.clone()
    q2[miss] = torch.rand(int(miss.sum()), 23)
    torch.testing.assert_close(head(h, q, miss), head(h, q2, miss))


def test_bad_inputs_raise_clear_errors():
    head = FusionHead(8)
    h, q, _ = _inputs()
    with pytest.raises(ValueError, match="prior"):
        head(h, None)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        head(torch.zeros(5, 7), q)
    with pytest.raises(ValueError, match="preset"):
        FusionHead(8, preset="nope")
    with pytest.raises(ValueError, match="missing_prior"):
        FusionHead(8, missing_prior="mean")


def test_prior_embedding_init_is_standard_normal():
    torch.manual_seed(0)
    E = FusionHead(512).prior_embedding.detach()
    assert abs(E.mean().item()) < 0.02 and abs(E.std().item() - 1) < 0.02
