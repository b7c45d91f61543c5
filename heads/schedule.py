"""The reference learning-rate schedule, stepped once per update (docs/heads.md, the recipe).

Linear warm-up from 0 over ``warmup_epochs``, constant until ``decay_start_epoch``, then
linear decay to ``final_lr`` at the end of the last epoch.
"""
from __future__ import annotations

from typing import Callable

import torch


def schedule_factor(steps_per_epoch: int, epochs: int, warmup_epochs: float = 1, decay_start_epoch: float = 1,
                    final_ratio: float = 0.0) -> Callable[[int], float]:
    """Multiplier of the base learning rate after ``step`` updates (LambdaLR convention).

    At step 0 the factor is 0 (when warm-up is on); it reaches 1 after ``warmup_epochs``
    epochs, stays 1 until ``decay_start_epoch`` (never before the warm-up ends), and falls
    linearly to ``final_ratio`` at ``epochs · steps_per_epoch`` updates.
    """
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be positive, got {steps_per_epoch}, {epochs}")
    warm = warmup_epochs * steps_per_epoch
    decay_start = max(decay_start_epoch * steps_per_epoch, warm)
    total = epochs * steps_per_epoch

    def factor(step: int) -> float:
        if warm > 0 and step < warm:
            return step / warm
        if step < decay_start:
            return 1.0
        if total <= decay_start:
            return final_ratio
        frac = min(1.0, (step - decay_start) / (total - decay_start))
        return 1.0 + (final_ratio - 1.0) * frac

    return factor


def reference_schedule(optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float = 1,
                       decay_start_epoch: float = 1, final_lr: float = 1e-7) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR for ``optimizer`` (each group's base lr scaled; decays to ``final_lr`` absolute)."""
    lambdas = []
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        ratio = final_lr / base if base > 0 else 0.0
        lambdas.append(schedule_factor(steps_per_epoch, epochs, warmup_epochs, decay_start_epoch, ratio))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)

