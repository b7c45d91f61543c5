"""The reference learning-rate schedule, stepped once per update (docs/heads.md, the recipe).

Linear warm-up from 0 over ``warmup_epochs`` (reaching the base rate at its last update),
constant until ``decay_start_epoch``, then linear decay reaching ``final_lr`` exactly at the
last update. Epoch counts are turned into update counts as the reference does:
``int(epochs · steps_per_epoch)``. Shared by the head and fine-tune tiers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def schedule_steps(
    steps_per_epoch: int, epochs: int, warmup_epochs: float = 1, decay_start_epoch: float | None = 1
) -> tuple[int, int | None, int]:
    """(warm-up updates, first decay update or None, total updates), truncated to whole updates."""
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be positive, got {steps_per_epoch}, {epochs}")
    warm = max(0, int(warmup_epochs * steps_per_epoch))
    decay = None if decay_start_epoch is None else max(0, int(decay_start_epoch * steps_per_epoch))
    return warm, decay, max(1, int(epochs * steps_per_epoch))


def schedule_parts(step: int, warm: int, decay: int | None, total: int) -> tuple[float, float]:
    """lr(step) = a·base_lr + b·final_lr for update ``step`` (0-based) of the schedule
    (``warm``, ``decay``, ``total`` from :func:`schedule_steps`).

    Warm-up (``step < warm``): a = step / (warm − 1), so 0 at update 0 and 1 at update warm − 1
    (a = 0 when warm = 1). Then a = 1 until ``decay`` (no decay when it is None or ≥ total).
    Decay over span = total − decay updates: the fraction min(step − decay, span − 1) / (span − 1)
    of the way to ``final_lr``, which the last update (total − 1) reaches; span ≤ 1 gives
    ``final_lr`` at once. As in the reference, warm-up wins over a decay that starts inside it.
    """
    if warm > 0 and step < warm:
        return (0.0 if warm == 1 else step / (warm - 1)), 0.0
    if decay is None or decay >= total or step < decay:
        return 1.0, 0.0
    span = total - decay
    if span <= 1:
        return 0.0, 1.0
    frac = min(step - decay, span - 1) / (span - 1)
    return 1.0 - frac, frac


def schedule_factor(
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 1,
    decay_start_epoch: float | None = 1,
    final_ratio: float = 0.0,
) -> Callable[[int], float]:
    """Multiplier of the base learning rate at update ``step`` (LambdaLR convention);
    ``final_ratio`` = final_lr / base_lr (clamped to [0, 1] as the reference does)."""
    warm, decay, total = schedule_steps(steps_per_epoch, epochs, warmup_epochs, decay_start_epoch)
    ratio = min(max(0.0, final_ratio), 1.0)

    def factor(step: int) -> float:
        a, b = schedule_parts(step, warm, decay, total)
        return a + b * ratio

    return factor


def reference_schedule(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 1,
    decay_start_epoch: float | None = 1,
    final_lr: float = 1e-7,
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR for ``optimizer`` (each group's base lr scaled; decays to ``final_lr`` absolute)."""
    lambdas = []
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        ratio = final_lr / base if base > 0 else 0.0
        lambdas.append(schedule_factor(steps_per_epoch, epochs, warmup_epochs, decay_start_epoch, ratio))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
