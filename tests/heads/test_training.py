"""Stacked engine vs FusionHead / torch.optim.AdamW; search vs single runs; learning; determinism."""

import dataclasses

import numpy as np
import pytest
import torch

from heads.batched_adamw import BatchedAdamW, clip_grad_norms_
from heads.losses import item_weights, loss_targets, mixed_loss
from heads.model import FusionHead
from heads.search import SearchSpace, ranking, results_table, run_search, sample_configs
from heads.stacked import StackedHeads, mask_generator
from heads.training import TrainConfig, predict_logits, train_head, train_stacked
from testkit.synthetic_heads import synthetic_data

FAST = dict(epochs=6, patience=10, device="cpu", hidden=32)


@pytest.mark.parametrize("preset", ["submitted", "workshop", "no-prior", "prior-only", "mlp"])
@pytest.mark.parametrize("missing", ["zero", "learned"])
def test_stacked_forward_equals_each_head(preset, missing):
    torch.manual_seed(0)
    heads = [FusionHead(6, preset=preset, missing_prior=missing, hidden=10).eval() for _ in range(3)]
    st = StackedHeads.from_heads(heads)
    data = synthetic_data(7, dim=6, seed=3)
    out = st(data.X, data.prior, data.missing)
    for k, h in enumerate(heads):
        torch.testing.assert_close(out[k], h(data.X, data.prior, data.missing), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(st.head(k)(data.X, data.prior, data.missing), out[k], rtol=1e-5, atol=1e-6)


def _leaf_copies(st):
    return {n: v.detach().clone().requires_grad_(True) for n, v in st.params.items()}


def reference_losses(logits, labels, weights, lam, pseudo, has):
    """(K,) losses of the reference form, :func:`heads.losses.mixed_loss` on each configuration's batch."""
    return torch.stack(
        [
            mixed_loss(logits[k], labels[k], weights, pseudo[k], has[k], float(lam[k]))
            for k in range(len(logits))
        ]
    )


def fused_step(st, h, prior, missing, masks, labels, weights, lam, pseudo, has, grads):
    """The trainer's step on one batch per configuration: item weights, loss targets and the prior
    prepared as :func:`heads.training.train_stacked` does, then the fused loss and hand-written backward."""
    y, w = item_weights(labels, weights)
    T, s = loss_targets(y, w, lam, pseudo, has.to(torch.float32), labels.shape[1], 23)
    qx = st.prior_inputs(prior, missing) if st.template.uses_prior else None
    return st.fast_loss_and_grads(h, qx, masks, T, s, grads)


@pytest.mark.parametrize("clip_in_step", [False, True], ids=["clip_grad_norms_", "step(clip_grad_norm)"])
def test_batched_adamw_matches_torch_adamw_with_clipping(clip_in_step):
    torch.manual_seed(1)
    heads = [FusionHead(5, dropout=0.0) for _ in range(3)]
    refs = [FusionHead(5, dropout=0.0) for _ in range(3)]
    for r, h in zip(refs, heads, strict=True):
        r.load_state_dict(h.state_dict())
    lrs, wds = [1e-2, 3e-3, 1e-3], [0.01, 0.0, 0.1]
    st = StackedHeads.from_heads(heads)
    opt = BatchedAdamW(st.params, lrs, wds)
    ref_opts = [
        torch.optim.AdamW(r.parameters(), lr=lr, weight_decay=wd)
        for r, lr, wd in zip(refs, lrs, wds, strict=True)
    ]
    data = synthetic_data(9, dim=5, seed=2)
    names = list(st.params)
    for _ in range(4):
        leaf = _leaf_copies(st)
        logits = st(data.X, data.prior, data.missing, params=leaf)
        loss = sum(torch.nn.functional.cross_entropy(logits[k], data.labels) for k in range(3))
        grads = list(torch.autograd.grad(loss, [leaf[n] for n in names]))
        if clip_in_step:  # the fused kernel's grad_scale does the clipping
            opt.set_grads(grads)
            opt.step(clip_grad_norm=0.5)
        else:
            clip_grad_norms_(grads, 0.5)
            opt.set_grads(grads)
            opt.step()
        for r, o in zip(refs, ref_opts, strict=True):
            o.zero_grad()
            torch.nn.functional.cross_entropy(r(data.X, data.prior, data.missing), data.labels).backward()
            torch.nn.utils.clip_grad_norm_(r.parameters(), 0.5)
            o.step()
    for k, r in enumerate(refs):
        for n, p in r.named_parameters():
            torch.testing.assert_close(st.params[n][k].detach(), p.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["submitted", "workshop", "no-prior", "prior-only", "mlp"])
@pytest.mark.parametrize("missing", ["zero", "learned"])
def test_hand_written_gradients_match_autograd(preset, missing):
    torch.manual_seed(2)
    K, B, D = 3, 7, 6
    heads = [FusionHead(D, preset=preset, missing_prior=missing, hidden=10, dropout=0.2) for _ in range(K)]
    st = StackedHeads.from_heads(heads)
    g = torch.Generator().manual_seed(0)
    data = [synthetic_data(B, dim=D, seed=s) for s in range(K)]
    h = torch.stack([d.X for d in data])
    prior = torch.stack([d.prior for d in data])
    miss = torch.stack([d.missing for d in data])
    labels = torch.stack([d.labels for d in data])
    labels[0, 2] = -1  # an item with only a pseudo-label
    pseudo = torch.softmax(torch.randn(K, B, 23, generator=g), -1)
    has = torch.rand(K, B, generator=g) > 0.3
    lam = torch.tensor([0.0, 0.4, 1.0])
    weights = torch.rand(23, generator=g) + 0.5
    uniforms = torch.rand(K, B, st.dropout_width, generator=g)
    gflat, gviews = st.grad_buffer()
    losses = fused_step(
        st, h, prior, miss, st.dropout_masks(uniforms), labels, weights, lam, pseudo, has, gviews
    )
    leaf = _leaf_copies(st)
    logits = st(h, prior, miss, uniforms, params=leaf)
    ref = reference_losses(logits, labels, weights, lam, pseudo, has)
    torch.testing.assert_close(losses, ref, rtol=1e-5, atol=1e-6)
    auto = torch.autograd.grad(ref.sum(), list(leaf.values()), allow_unused=True)
    for (name, view), ga in zip(gviews.items(), auto, strict=True):
        torch.testing.assert_close(
            view,
            torch.zeros_like(view) if ga is None else ga,
            rtol=1e-4,
            atol=1e-6,
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_dropout_masks_from_generators(kind):
    def gen(seed):
        return torch.Generator().manual_seed(seed) if kind == "torch" else mask_generator(seed)

    st = StackedHeads.from_heads([FusionHead(6, hidden=10, dropout=0.25) for _ in range(2)])
    W = st.dropout_width
    masks = st.dropout_masks_from([gen(3), gen(4)], 5000)
    assert masks.shape == (2, 5000, W)
    keep = 0.75 if kind == "torch" else 1 - round(0.25 * 65536) / 65536  # numpy: p in steps of 1/65536
    values = masks.unique().tolist()
    assert values[0] == 0.0 and values[1] == pytest.approx(1 / keep) and len(values) == 2
    frac = (masks > 0).double().mean(dim=(1, 2))
    sd = (keep * (1 - keep) / (5000 * W)) ** 0.5
    assert ((frac - keep).abs() < 5 * sd).all()  # the keep probability, per configuration
    # each row depends only on its own generator: drawn alone == drawn inside a stack
    alone = st.dropout_masks_from([gen(4)], 5000)
    assert torch.equal(alone[0], masks[1])
    assert not torch.equal(masks[0], masks[1])
    st0 = StackedHeads.from_heads([FusionHead(6, hidden=10, dropout=1e-9)])
    assert torch.equal(st0.dropout_masks_from([gen(0)], 3), torch.ones(1, 3, st0.dropout_width))


def test_loss_targets_give_the_reference_loss_of_each_batch_including_a_short_last_one():
    g = torch.Generator().manual_seed(0)
    K, n, B, C = 2, 11, 4, 23
    labels = torch.randint(0, C, (K, n), generator=g)
    labels[1, 1] = -1  # an item with only a pseudo-label
    labels[0, 8:] = -1  # a batch whose items have no hard label
    weights = torch.rand(C, generator=g) + 0.5
    pseudo = torch.softmax(torch.randn(K, n, C, generator=g), -1)
    has = torch.rand(K, n, generator=g) > 0.4
    lam = torch.tensor([0.3, 1.0])
    y, w = item_weights(labels, weights)
    T, s = loss_targets(y, w, lam, pseudo, has.float(), B, C)
    logits = torch.randn(K, n, C, generator=g)
    logp = torch.log_softmax(logits, -1)
    for lo in range(0, n, B):  # batches of 4, 4 and 3 items, each normalised on its own
        sl = slice(lo, lo + B)
        for k in range(K):
            if (labels[k, sl] >= 0).any():
                ref = mixed_loss(
                    logits[k, sl], labels[k, sl], weights, pseudo[k, sl], has[k, sl], float(lam[k])
                )
            else:  # no hard label in the batch: its CE term is 0
                ref = lam[k] * mixed_loss(
                    logits[k, sl], labels[k, sl], weights, pseudo[k, sl], has[k, sl], 1.0
                )
            torch.testing.assert_close(-(T[k, sl] * logp[k, sl]).sum(), ref)
        torch.testing.assert_close(s[:, sl], T[:, sl].sum(-1))


def test_small_cpu_runs_train_on_one_thread_and_restore_the_count(monkeypatch):
    import heads.training as training

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []  # torch's thread count at every optimizer step
    real_step = training.BatchedAdamW.step

    def spy(self, *a, **k):
        seen.append(torch.get_num_threads())
        return real_step(self, *a, **k)

    monkeypatch.setattr(training.BatchedAdamW, "step", spy)
    train = synthetic_data(40, dim=4, seed=0)
    try:
        train_head(TrainConfig(epochs=1, device="cpu", hidden=8), train, None)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        monkeypatch.setattr(training, "SINGLE_THREAD_WORK", 0)  # every run counts as large
        train_head(TrainConfig(epochs=1, device="cpu", hidden=8), train, None)
        assert set(seen) == {2} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_head_learns_when_only_the_prior_carries_the_label():
    train = synthetic_data(500, dim=16, signal="prior", seed=0)
    val = synthetic_data(200, dim=16, signal="prior", seed=1)
    res = train_head(TrainConfig(lr=2e-3, epochs=12, device="cpu", hidden=64), train, val)
    assert res.best_val["hF"] > 0.8  # chance is ~0.05; features are pure noise
    no_prior = train_head(TrainConfig(preset="no-prior", lr=2e-3, epochs=12, device="cpu"), train, val)
    assert no_prior.best_val["hF"] < 0.3


def test_search_matches_single_runs():
    train = synthetic_data(120, dim=8, signal="both", seed=0)
    val = synthetic_data(60, dim=8, signal="both", seed=1)
    configs = sample_configs(TrainConfig(**FAST), SearchSpace(k=3, seed=5))
    assert len({c.seed for c in configs}) == 3 and len({c.lr for c in configs}) == 3
    together = run_search(configs, train, val)
    for c, r in zip(configs, together, strict=True):
        alone = train_head(c, train, val)
        assert alone.best_epoch == r.best_epoch
        assert [h["val_hF"] for h in alone.history] == pytest.approx(
            [h["val_hF"] for h in r.history], abs=1e-9
        )
        for n, v in alone.state_dict.items():
            torch.testing.assert_close(r.state_dict[n], v, rtol=1e-5, atol=1e-5)
    # chunked stacking gives the same result too
    chunked = run_search(configs, train, val, max_stack=2)
    for a, b in zip(together, chunked, strict=True):
        for n in a.state_dict:
            torch.testing.assert_close(a.state_dict[n], b.state_dict[n], rtol=1e-5, atol=1e-5)
    order = ranking(together)
    assert together[order[0]].best_val["hF"] == max(r.best_val["hF"] for r in together)
    assert results_table(together).count("\n") == 4


def test_same_seed_same_numbers_and_global_rng_untouched():
    train = synthetic_data(80, dim=8, seed=0)
    val = synthetic_data(40, dim=8, seed=1)
    cfg = TrainConfig(seed=7, **FAST)
    torch.manual_seed(123)
    a = train_head(cfg, train, val)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = train_head(cfg, train, val)
    assert torch.equal(after, torch.rand(1))
    for n in a.state_dict:
        assert torch.equal(a.state_dict[n], b.state_dict[n])
    assert a.history == b.history
    c = train_head(dataclasses.replace(cfg, seed=8), train, val)
    assert not torch.equal(a.state_dict["body.1.weight"], c.state_dict["body.1.weight"])


def test_early_stopping_keeps_the_best_epoch():
    train = synthetic_data(60, dim=8, seed=0)
    val = synthetic_data(30, dim=8, seed=1)
    res = train_head(TrainConfig(lr=3e-3, epochs=8, patience=2, device="cpu", hidden=16), train, val)
    hfs = [h["val_hF"] for h in res.history]
    assert res.best_epoch == int(np.argmax(hfs))
    assert res.best_val["hF"] == max(hfs)
    # the returned weights are the best epoch's: re-scoring them gives the recorded hF
    from cache.metric import hierarchical_scores

    pred = predict_logits([res], val, device="cpu")[0].argmax(-1)
    assert hierarchical_scores(val.labels.numpy(), pred).hF == pytest.approx(res.best_val["hF"])
    if len(hfs) < 8:  # stopped early: patience epochs without improvement after the best
        assert len(hfs) - 1 - res.best_epoch == 2


def test_stage2_lambda_one_ignores_hard_labels():
    train = synthetic_data(100, dim=8, signal="both", seed=0)
    val = synthetic_data(40, dim=8, signal="both", seed=1)
    pseudo = torch.softmax(torch.randn(100, 23, generator=torch.Generator().manual_seed(0)) * 3, 1)
    train = train.with_pseudo(pseudo)
    cfg = TrainConfig(lam=1.0, **FAST)
    a = train_head(cfg, train, val)
    shuffled = dataclasses.replace(
        train, labels=torch.from_numpy(np.random.default_rng(0).integers(0, 23, 100))
    )
    b = train_head(cfg, shuffled, val)
    for n in a.state_dict:
        assert torch.equal(a.state_dict[n], b.state_dict[n])
    c = train_head(dataclasses.replace(cfg, lam=0.5), shuffled, val)
    assert not torch.equal(a.state_dict["body.1.weight"], c.state_dict["body.1.weight"])


def test_incompatible_configs_are_refused():
    train = synthetic_data(20, dim=4)
    with pytest.raises(ValueError, match="epochs"):
        train_stacked([TrainConfig(**FAST), dataclasses.replace(TrainConfig(**FAST), epochs=3)], train, None)
    with pytest.raises(ValueError, match="pseudo"):
        train_head(TrainConfig(lam=0.5, **FAST), train, None)


def test_init_state_starts_every_configuration_from_the_given_head():
    train = synthetic_data(40, dim=8, seed=0)
    val = synthetic_data(20, dim=8, seed=1)
    start = FusionHead(8, hidden=16).state_dict()
    cfgs = [TrainConfig(lr=1e-12, seed=s, epochs=2, hidden=16, device="cpu") for s in (1, 2)]
    for r in train_stacked(cfgs, train, val, init_state=start):
        for n, v in start.items():
            torch.testing.assert_close(r.state_dict[n], v, rtol=1e-6, atol=1e-6)
