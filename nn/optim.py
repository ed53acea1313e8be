"""Optimizers: they own the learning rate and update a model's params from its grads, in place."""

from __future__ import annotations

import math

import numpy as np

from nn.checks import ArgumentError, number

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm"]


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale every gradient in place so that their global L2 norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping. Summed in the dict's
    order, so the result does not depend on the machine."""
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= g.dtype.type(scale)
    return total


class Optimizer:
    """Base class: ``step(model)`` applies one update using ``model.params`` and ``model.grads``.

    State (momentum, moments) is kept per parameter name, so one optimizer serves one model.
    With a ``schedule`` (``nn.schedules``), ``lr`` is set to ``schedule.lr(steps)`` before each
    update, ``steps`` counting the updates made so far. Weight decay applies to the weights of
    Dense and Conv2D (arrays of two or more dimensions), never to biases or BatchNorm's scale and
    shift.
    """

    schedule = None
    steps = 0

    def step(self, model) -> None:
        if self.schedule is not None:
            self.lr = self.schedule.lr(self.steps)
        grads = model.grads
        for name, p in model.params.items():
            self.update(name, p, grads[name])
        self.steps += 1

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov) and L2 decay.

    ``g += weight_decay * p`` (weights only); ``v = momentum * v + g``; ``p -= lr * v``, or with
    ``nesterov`` ``p -= lr * (g + momentum * v)`` (PyTorch's formulation). With ``momentum=0``
    this is ``p -= lr * g``.
    """

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        *,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        schedule=None,
    ):
        self.lr = number("SGD", "lr", lr, low_open=True)
        self.momentum = number("SGD", "momentum", momentum, high=1.0, high_open=True)
        if nesterov and not self.momentum:
            raise ArgumentError("SGD", "nesterov", "needs a momentum above 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = number("SGD", "weight_decay", weight_decay)
        self.schedule = schedule
        self.velocity: dict[str, np.ndarray] = {}

    def update(self, name, p, g):
        if self.weight_decay and p.ndim > 1:
            g = g + p.dtype.type(self.weight_decay) * p
        if self.momentum:
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = np.zeros_like(p)
            v *= self.momentum
            v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g

    def __repr__(self):
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
            f"weight_decay={self.weight_decay})"
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, and AdamW's decoupled weight decay
    (Loshchilov & Hutter, 2019).

    ``p -= lr * weight_decay * p`` (weights only); ``m = b1 m + (1 - b1) g``;
    ``v = b2 v + (1 - b2) g**2``; ``p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)``.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        *,
        weight_decay: float = 0.0,
        schedule=None,
    ):
        self.lr = number("Adam", "lr", lr, low_open=True)
        if len(betas) != 2:
            raise ArgumentError("Adam", "betas", f"must be a pair, got {betas!r}")
        self.betas = tuple(number("Adam", "betas", b, high=1.0, high_open=True) for b in betas)
        self.eps = number("Adam", "eps", eps, low_open=True)
        self.weight_decay = number("Adam", "weight_decay", weight_decay)
        self.schedule = schedule
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, model):
        self.t += 1
        super().step(model)

    def update(self, name, p, g):
        b1, b2 = self.betas
        if self.weight_decay and p.ndim > 1:
            p *= p.dtype.type(1 - self.lr * self.weight_decay)
        if name not in self.m:
            self.m[name], self.v[name] = np.zeros_like(p), np.zeros_like(p)
        m, v = self.m[name], self.v[name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        step_size = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        # Both corrections folded into the step size; scaling eps by sqrt(1 - b2**t) keeps this
        # exactly PyTorch's update, lr / (1 - b1**t) * m / (sqrt(v / (1 - b2**t)) + eps).
        denom = np.sqrt(v)
        denom += self.eps * math.sqrt(1 - b2**self.t)
        p -= step_size * (m / denom)

    def __repr__(self):
        return (
            f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay})"
        )
