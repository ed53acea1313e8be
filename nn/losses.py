"""Losses ``f(y_true, y_pred) -> float`` and gradients ``f_prime(y_true, y_pred) -> dL/dy_pred``.

Each value is a mean over the batch (and, for element-wise losses, over outputs too, as in the
tutorial), and each ``*_prime`` is the exact gradient of that value.
"""

from __future__ import annotations

import functools

import numpy as np

from nn.checks import ArgumentError, number

__all__ = [
    "mse",
    "mse_prime",
    "binary_cross_entropy",
    "binary_cross_entropy_prime",
    "cross_entropy",
    "cross_entropy_prime",
    "log_softmax",
    "softmax",
    "LOSSES",
    "smooth_labels",
    "get",
    "describe",
]

_EPS = 1e-7  # keeps log() finite when a sigmoid output saturates to exactly 0 or 1


def _mean(a) -> float:
    """``np.mean(a)`` over every value, as a float: its own arithmetic (one pairwise
    ``add.reduce``, one division by the count), without the Python around it (3 us, which a loss
    computed one sample at a time pays every sample)."""
    return float(np.add.reduce(a, axis=None) / a.size)


def _check(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"{name}: y_true has shape {tuple(y_true.shape)} but y_pred has {tuple(y_pred.shape)}"
        )


def mse(y_true, y_pred):
    """``mean((y_pred - y_true)**2)`` over every element.

    >>> mse(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]]))
    0.25
    """
    _check("mse", y_true, y_pred)
    return _mean((y_pred - y_true) ** 2)


def mse_prime(y_true, y_pred):
    """``2 (y_pred - y_true) / size``."""
    _check("mse", y_true, y_pred)
    return 2.0 * (y_pred - y_true) / y_pred.size


def binary_cross_entropy(y_true, y_pred):
    """``mean(-y log p - (1 - y) log(1 - p))`` over every element; ``p`` is clipped to
    ``[1e-7, 1 - 1e-7]``."""
    _check("binary_cross_entropy", y_true, y_pred)
    p = np.clip(y_pred, _EPS, 1 - _EPS)
    return _mean(-y_true * np.log(p) - (1 - y_true) * np.log(1 - p))


def binary_cross_entropy_prime(y_true, y_pred):
    """``((1 - y) / (1 - p) - y / p) / size`` (zero where the clip is active)."""
    _check("binary_cross_entropy", y_true, y_pred)
    p = np.clip(y_pred, _EPS, 1 - _EPS)
    inside = (y_pred >= _EPS) & (y_pred <= 1 - _EPS)
    return ((1 - y_true) / (1 - p) - y_true / p) * inside / y_pred.size


def log_softmax(z):
    """``z - logsumexp(z)`` over the last axis, shifted by the max so nothing overflows."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z):
    """``exp(z) / sum(exp(z))`` over the last axis (stable)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(y_true, logits):
    """Softmax cross-entropy on logits: ``mean_n(-sum_k y[n, k] log softmax(z[n])_k)``.

    ``y_true`` is one-hot (or any distribution per row) with the shape of ``logits`` ``(N, K)``.
    """
    _check("cross_entropy", y_true, logits)
    return float(-(y_true * log_softmax(logits)).sum() / len(logits))


def cross_entropy_prime(y_true, logits):
    """``(softmax(z) * sum_k y - y) / N``, which is ``(softmax(z) - y) / N`` for one-hot rows."""
    _check("cross_entropy", y_true, logits)
    p = softmax(logits)
    row_mass = y_true.sum(axis=-1, keepdims=True)
    p *= row_mass
    p -= y_true
    p /= len(logits)
    return p


LOSSES = {
    "mse": (mse, mse_prime),
    "binary_cross_entropy": (binary_cross_entropy, binary_cross_entropy_prime),
    "cross_entropy": (cross_entropy, cross_entropy_prime),
}


def smooth_labels(y_true, epsilon: float):
    """Label smoothing (Szegedy et al., 2016): ``(1 - epsilon) * y + epsilon / K``, K classes."""
    k = y_true.shape[-1]
    return y_true * y_true.dtype.type(1 - epsilon) + y_true.dtype.type(epsilon / k)


def get(name: str, *, label_smoothing: float = 0.0):
    """``(loss, loss_prime)`` for a loss name in ``LOSSES``; with ``label_smoothing`` (cross
    entropy only) both see smoothed targets."""
    if name not in LOSSES:
        raise ArgumentError(
            "losses.get", "loss", f"must be one of {', '.join(LOSSES)}, got {name!r}"
        )
    number("losses.get", "label_smoothing", label_smoothing, high=1.0, high_open=True)
    fn, prime = LOSSES[name]
    if not label_smoothing:
        return fn, prime
    if name != "cross_entropy":
        raise ArgumentError(
            "losses.get", "label_smoothing", f"needs the cross_entropy loss, got {name!r}"
        )
    return functools.partial(_smoothed, fn, label_smoothing), functools.partial(
        _smoothed, prime, label_smoothing
    )


def _smoothed(f, epsilon, y_true, y_pred):
    return f(smooth_labels(y_true, epsilon), y_pred)


def describe(loss, loss_prime) -> dict | None:
    """``{"name", "label_smoothing"}`` such that ``get(**it)`` is ``(loss, loss_prime)`` again,
    for a pair that :func:`get` made; None for any other pair."""
    smoothing = 0.0
    if all(isinstance(f, functools.partial) and f.func is _smoothed for f in (loss, loss_prime)):
        if loss.args[1] != loss_prime.args[1]:
            return None
        (loss, smoothing), (loss_prime, _) = loss.args, loss_prime.args
    for name, pair in LOSSES.items():
        if pair == (loss, loss_prime):
            return {"name": name, "label_smoothing": smoothing}
    return None
