"""Learning-rate schedules, stepped per batch: ``schedule.lr(step)`` for step 0, 1, 2, ...

An optimizer given ``schedule=`` sets its ``lr`` from it before every update (see ``nn.optim``),
as ``torch.optim.lr_scheduler`` does. ``steps_per_epoch`` turns epoch-based settings into steps.
"""

from __future__ import annotations

import math

from nn.checks import number, positive_int

__all__ = ["Schedule", "Constant", "Step", "Exponential", "Cosine", "OneCycle", "SCHEDULES"]


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
        self.base_lr = number("Constant", "base_lr", base_lr, low_open=True)

    def lr(self, step):
        return self.base_lr


class Step(Schedule):
    """``lr(t) = base_lr * gamma ** floor(t / step_size)``: multiplied by ``gamma`` every
    ``step_size`` steps (``step_size = steps_per_epoch``: after every epoch)."""

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1):
        self.base_lr = number("Step", "base_lr", base_lr, low_open=True)
        self.step_size = positive_int("Step", "step_size", step_size)
        self.gamma = number("Step", "gamma", gamma, low_open=True)

    def lr(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class Exponential(Schedule):
    """``lr(t) = base_lr * gamma ** (t / steps_per_epoch)``: a smooth decay by ``gamma`` per
    epoch."""

    def __init__(self, base_lr: float, gamma: float, steps_per_epoch: int = 1):
        self.base_lr = number("Exponential", "base_lr", base_lr, low_open=True)
        self.gamma = number("Exponential", "gamma", gamma, low_open=True)
        self.steps_per_epoch = positive_int("Exponential", "steps_per_epoch", steps_per_epoch)

    def lr(self, step):
        return self.base_lr * self.gamma ** (step / self.steps_per_epoch)


class Cosine(Schedule):
    """``lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2``, then
    ``min_lr`` (Loshchilov & Hutter's annealing, without restarts)."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0):
        self.base_lr = number("Cosine", "base_lr", base_lr, low_open=True)
        self.total_steps = positive_int("Cosine", "total_steps", total_steps)
        self.min_lr = number("Cosine", "min_lr", min_lr)

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
        self.max_lr = number("OneCycle", "max_lr", max_lr, low_open=True)
        self.total_steps = positive_int("OneCycle", "total_steps", total_steps)
        self.pct_start = number(
            "OneCycle", "pct_start", pct_start, low_open=True, high=1.0, high_open=True
        )
        self.div_factor = number("OneCycle", "div_factor", div_factor, low_open=True)
        self.final_div_factor = number(
            "OneCycle", "final_div_factor", final_div_factor, low_open=True
        )

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
