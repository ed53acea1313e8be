"""Learning-rate schedules, stepped per batch: ``schedule.lr(step)`` for step 0, 1, 2, ...

An optimizer given ``schedule=`` sets its ``lr`` from it before every update (see ``nn.optim``),
as ``torch.optim.lr_scheduler`` does. ``steps_per_epoch`` turns epoch-based settings into steps.
"""

from __future__ import annotations

import math

__all__ = ["Schedule", "Constant", "Step", "Exponential", "Cosine", "OneCycle", "SCHEDULES"]


def _positive(owner, name, value, *, allow_zero=False):
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise ValueError(
            f"{owner}: {name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        )
    return value


class Schedule:
    """Base class: ``lr(step) -> float``."""

    def lr(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr(t) = base_lr``."""

    def __init__(self, base_lr: float):
        self.base_lr = _positive("Constant", "base_lr", base_lr)

    def lr(self, step):
        return self.base_lr


class Step(Schedule):
    """``lr(t) = base_lr * gamma ** floor(t / step_size)``: multiplied by ``gamma`` every
    ``step_size`` steps (``step_size = steps_per_epoch``: after every epoch)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        self.base_lr = _positive("Step", "base_lr", base_lr)
        self.step_size = int(_positive("Step", "step_size", step_size))
        self.gamma = _positive("Step", "gamma", gamma)

    def lr(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class Exponential(Schedule):
    """``lr(t) = base_lr * gamma ** (t / steps_per_epoch)``: a smooth decay by ``gamma`` per
    epoch."""

    def __init__(self, base_lr: float, gamma: float, steps_per_epoch: int = 1):
        self.base_lr = _positive("Exponential", "base_lr", base_lr)
        self.gamma = _positive("Exponential", "gamma", gamma)
        self.steps_per_epoch = int(_positive("Exponential", "steps_per_epoch", steps_per_epoch))

    def lr(self, step):
        return self.base_lr * self.gamma ** (step / self.steps_per_epoch)


class Cosine(Schedule):
    """``lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2``, then
    ``min_lr`` (Loshchilov & Hutter's annealing, without restarts)."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0):
        self.base_lr = _positive("Cosine", "base_lr", base_lr)
        self.total_steps = int(_positive("Cosine", "total_steps", total_steps))
        self.min_lr = _positive("Cosine", "min_lr", min_lr, allow_zero=True)

    def lr(self, step):
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t)) / 2


class OneCycle(Schedule):
    """Smith's one-cycle policy as ``torch.optim.lr_scheduler.OneCycleLR`` (cosine phases): warm up
    from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of ``total_steps``,
    then anneal to ``max_lr / (div_factor * final_div_factor)``."""

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.max_lr = _positive("OneCycle", "max_lr", max_lr)
        self.total_steps = int(_positive("OneCycle", "total_steps", total_steps))
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycle: pct_start must be in (0, 1), got {pct_start!r}")
        self.pct_start = pct_start
        self.div_factor = _positive("OneCycle", "div_factor", div_factor)
        self.final_div_factor = _positive("OneCycle", "final_div_factor", final_div_factor)

    def lr(self, step):
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        warm = max(1.0, self.pct_start * self.total_steps - 1)
        if step <= warm:
            t, a, b = step / warm, start, self.max_lr
        else:
            rest = max(1.0, self.total_steps - 1 - warm)
            t, a, b = min(1.0, (step - warm) / rest), self.max_lr, end
        return b + (a - b) * (1 + math.cos(math.pi * t)) / 2


SCHEDULES = {
    "constant": Constant,
    "step": Step,
    "exponential": Exponential,
    "cosine": Cosine,
    "onecycle": OneCycle,
}
