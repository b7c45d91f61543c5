"""Batch plans (every clip once per epoch across ranks), evaluation plans and the exact loss split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.data import epoch_batches, eval_batches, eval_plan, loader_batches, steps_per_epoch, train_plan
from finetune.loss import batch_normalisers, partial_loss
from heads.losses import class_frequency_weights, mixed_loss


@pytest.mark.parametrize(
    "n, processes, accumulation", [(25, 1, 1), (25, 2, 1), (40, 3, 2), (19, 2, 3), (7, 6, 3), (1, 2, 1)]
)
def test_every_clip_exactly_once_per_epoch_across_ranks(n, processes, accumulation):
    g = 18
    for epoch in (0, 1):
        plans = [train_plan(n, g, processes, accumulation, r, seed=3, epoch=epoch) for r in range(processes)]
        seen = np.concatenate([m.items for p in plans for m in p])
        assert sorted(seen.tolist()) == list(range(n))  # each once: no padding, no drops
        # every rank runs the same number of micro-steps (DDP needs it), accumulation steps in order
        assert len({len(p) for p in plans}) == 1
        assert len(plans[0]) == steps_per_epoch(n, g) * accumulation
        assert [m.step for m in plans[0]] == list(range(accumulation)) * steps_per_epoch(n, g)
        # a full global batch is split evenly: each micro-batch holds g / (processes × accumulation) ± 1 clips
        sizes = [len(m.items) for p in plans for m in p if m.batch < n // g]
        assert all(abs(s - g / (processes * accumulation)) < 1 for s in sizes)
        # the dummy item of an empty share is marked invalid
        for p in plans:
            for m, b in zip(p, loader_batches(p), strict=True):
                assert (len(m.items) == 0) == (b == [(int(m.global_items[0]), False)])


def test_epoch_order_is_seeded_and_changes_between_epochs():
    a = np.concatenate(epoch_batches(50, 18, seed=1, epoch=0))
    assert np.array_equal(a, np.concatenate(epoch_batches(50, 18, seed=1, epoch=0)))
    assert not np.array_equal(a, np.concatenate(epoch_batches(50, 18, seed=1, epoch=1)))
    assert not np.array_equal(a, np.concatenate(epoch_batches(50, 18, seed=2, epoch=0)))
    # resuming at global batch 2 yields exactly the remaining micro-steps
    full = train_plan(50, 18, 2, 1, 1, seed=1, epoch=0)
    rest = train_plan(50, 18, 2, 1, 1, seed=1, epoch=0, start_batch=2)
    assert [m.items.tolist() for m in rest] == [m.items.tolist() for m in full if m.batch >= 2]
    # the global batch is the same whatever the number of processes
    one = train_plan(50, 18, 1, 1, 0, seed=1, epoch=0)
    two = [train_plan(50, 18, 2, 1, r, seed=1, epoch=0) for r in range(2)]
    for b in range(3):
        assert sorted(one[b].items.tolist()) == sorted(two[0][b].items.tolist() + two[1][b].items.tolist())


def test_eval_batches_group_by_length_and_cover_all_clips():
    n_windows = np.array([3, 1, 2, 1, 3, 1, 2, 2, 1, 3])
    batches = eval_batches(n_windows, max_windows=4)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(10))
    assert np.all(np.diff(n_windows[flat]) >= 0)  # sorted by length
    assert all(n_windows[b].sum() <= 4 or len(b) == 1 for b in batches)
    assert [b.tolist() for b in batches[:2]] == [[1, 3, 5, 8], [2, 6]]
    shards = [eval_plan(n_windows, 4, 3, r) for r in range(3)]
    assert sorted(np.concatenate([b for s in shards for b in s]).tolist()) == list(range(10))


def test_partial_losses_sum_to_the_global_batch_loss():
    rng = torch.Generator().manual_seed(0)
    n = 18
    logits = torch.randn(n, 23, generator=rng, dtype=torch.float64).float()
    labels = torch.randint(0, 23, (n,), generator=rng)
    train_labels = torch.randint(0, 23, (200,), generator=rng)
    w = class_frequency_weights(train_labels.numpy())
    labels[w[labels] == 0] = int(train_labels[0])  # labels of the batch are training classes
    pseudo = torch.softmax(torch.randn(n, 23, generator=rng), -1)
    has = torch.rand(n, generator=rng) > 0.4
    valid = torch.ones(n, dtype=torch.bool)
    for lam in (0.0, 0.3, 1.0):
        ref = mixed_loss(logits, labels, w, pseudo if lam > 0 else None, has, lam)
        ce_norm, soft_norm = batch_normalisers(labels, has, w)
        for parts in (1, 2, 5, 18):
            total = sum(
                partial_loss(logits[s], labels[s], valid[s], pseudo[s], has[s], w, ce_norm, soft_norm, lam)
                for s in np.array_split(np.arange(n), parts)
            )
            assert torch.allclose(total, ref, atol=1e-5), (lam, parts)
    # a dummy (invalid) item contributes zero loss but keeps the graph connected
    x = logits[:1].clone().requires_grad_(True)
    out = partial_loss(x, labels[:1], torch.tensor([False]), pseudo[:1], has[:1], w, 1.0, 1.0, 0.5)
    out.backward()
    assert float(out.detach()) == 0.0 and x.grad is not None and float(x.grad.abs().sum()) == 0.0


def test_partial_loss_reads_no_value_from_the_device():
    """With the whole batch on the ``meta`` device (which holds no values) the loss and its
    gradient still build: on a GPU a step never waits for a device→host copy."""
    labels = torch.tensor([0, 1, 2, -1, 1, 0])
    valid = torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool)
    has = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    w = class_frequency_weights(np.array([0, 1, 2, 1, 0]))
    ce_norm, soft_norm = batch_normalisers(labels, has, w)
    logits = torch.randn(6, 23, device="meta", requires_grad=True)
    out = partial_loss(
        logits,
        labels.to("meta"),
        valid.to("meta"),
        torch.rand(6, 23, device="meta"),
        has.to("meta"),
        w.to("meta"),
        ce_norm,
        soft_norm,
        0.5,
    )
    out.backward()
    assert out.device.type == "meta" and logits.grad.shape == (6, 23)


def test_items_without_a_pseudo_label_ignore_their_target_row():
    """A NaN row in ``pseudo`` where ``has_pseudo`` is False changes neither the loss nor its gradient."""
    rng = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 23, generator=rng)
    labels, valid = torch.tensor([0, 3, -1, 5]), torch.ones(4, dtype=torch.bool)
    has = torch.tensor([True, False, True, False])
    pseudo = torch.softmax(torch.randn(4, 23, generator=rng), -1)
    w = class_frequency_weights(np.array([0, 3, 5, 3]))
    grads = []
    for p in (pseudo, torch.where(has.unsqueeze(1), pseudo, float("nan"))):
        x = logits.clone().requires_grad_(True)
        loss = partial_loss(x, labels, valid, p, has, w, *batch_normalisers(labels, has, w), 0.4)
        loss.backward()
        grads.append((float(loss.detach()), x.grad))
    assert np.isfinite(grads[1][0]) and grads[0][0] == grads[1][0]
    assert torch.equal(grads[0][1], grads[1][1])


def test_one_loader_serves_every_epoch_from_the_same_workers():
    from finetune.data import PlanBatches, make_loader

    class Pid(torch.utils.data.Dataset):
        clips = None

        def __len__(self):
            return 10

        def __getitem__(self, i):
            import os

            return (i, os.getpid())

    sampler = PlanBatches()
    loader = make_loader(Pid(), sampler, num_workers=2, persistent=True, pin_memory=False)
    loader.collate_fn = lambda items: items
    seen = []
    for plan in ([[0, 1], [2, 3], [4]], [[9], [8, 7]]):
        sampler.batches = plan
        got = list(loader)
        assert [[i for i, _ in b] for b in got] == plan
        seen.append({pid for b in got for _, pid in b})
    assert seen[1] <= seen[0]  # the second epoch's items came from the first epoch's worker processes
