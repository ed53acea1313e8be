"""Keep-best and early stopping for ``fit``: remember the best epoch's weights, stop when the
monitored value has not improved for ``patience`` epochs."""

from __future__ import annotations

import math

from nn.checks import positive_int

__all__ = ["KeepBest"]


class KeepBest:
    """Track ``monitor`` in ``fit``'s history rows; keep a copy of the model's params and buffers
    from the best epoch so far, and restore them at the end of training.

    Args:
        monitor: a history key, e.g. ``"val_accuracy"`` (higher is better) or ``"val_loss"``
            (lower is better: any key ending in ``loss``).
        patience: stop after this many epochs without improvement (None: never stop early).

    Attributes:
        best_epoch, best_value: the epoch kept and its value (None before the first update).
    """

    def __init__(self, monitor: str = "val_accuracy", patience: int | None = None):
        if patience is not None:
            positive_int("KeepBest", "patience", patience)
        self.monitor, self.patience = monitor, patience
        self.lower_is_better = monitor.endswith("loss")
        self.best_epoch = self.best_value = None
        self._state = None

    def update(self, row: dict, model) -> bool:
        """Record an epoch's row; returns True when training should stop."""
        if self.monitor not in row:
            raise ValueError(
                f"KeepBest: history has no {self.monitor!r} (got {', '.join(row)}); "
                "val_* values need validation data"
            )
        value = row[self.monitor]
        better = self.best_value is None or (
            value < self.best_value if self.lower_is_better else value > self.best_value
        )
        if better and math.isfinite(value):
            self.best_epoch, self.best_value = row["epoch"], value
            self._state = {k: a.copy() for k, a in (model.params | model.buffers).items()}
        waited = row["epoch"] - (self.best_epoch or 0)
        return self.patience is not None and waited >= self.patience

    def restore(self, model) -> None:
        """Copy the best epoch's arrays back into ``model`` (in place)."""
        if self._state is None:
            return
        for key, a in (model.params | model.buffers).items():
            a[...] = self._state[key]

    def __repr__(self):
        return f"KeepBest(monitor={self.monitor!r}, patience={self.patience})"
