"""Early stopping on a validation score, keeping track of the best epoch."""

from __future__ import annotations

import math


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement of the monitored value.

    ``mode="max"`` (e.g. validation hF) or ``"min"`` (e.g. a loss). ``step`` returns True when
    the value improved on the best so far (the caller then keeps that epoch's weights).
    """

    def __init__(self, patience: int = 10, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 0:
            raise ValueError("patience must be >= 0")
        self.patience = int(patience)
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float = -math.inf if mode == "max" else math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.should_stop = False

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; True if it is a new best."""
        value = float(value)
        if self._better(value):
            self.best, self.best_epoch, self.bad_epochs = value, int(epoch), 0
            return True
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.should_stop = True
        return False

    def may_stop_next(self) -> bool:
        """True when the next :meth:`step` stops training unless its value improves."""
        return self.should_stop or self.bad_epochs + 1 >= self.patience

    def state_dict(self) -> dict:
        return {
            "patience": self.patience,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "should_stop": self.should_stop,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
