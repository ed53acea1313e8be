"""Centered finite-difference gradient checks (use float64 layers and inputs)."""

from __future__ import annotations

import numpy as np

from nn.layers import Layer, as_generator

__all__ = ["numerical_gradient", "layer_gradients", "relative_error"]


def numerical_gradient(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``(f(a + eps e_i) - f(a - eps e_i)) / (2 eps)`` for every element i of ``a`` (changed in
    place and restored)."""
    grad = np.zeros_like(a, dtype=np.float64)
    flat, gflat = a.reshape(-1), grad.reshape(-1)  # views: a must be contiguous
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(max|a| + max|b|, tiny)``: scale-free, 0 when equal."""
    scale = max(np.abs(a).max(initial=0) + np.abs(b).max(initial=0), 1e-12)
    return float(np.abs(a - b).max(initial=0) / scale)


def layer_gradients(layer: Layer, x: np.ndarray, *, rng=0, eps: float = 1e-6):
    """Analytic and numerical gradients of ``L = sum(layer(x) * r)`` for a fixed random ``r``.

    Returns ``{name: (analytic, numerical)}`` with ``"x"`` for the input and every parameter name.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    r = as_generator(rng).normal(size=layer.forward(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * r))

    layer.forward(x)
    grad_x = layer.backward(r)
    out = {"x": (np.asarray(grad_x), numerical_gradient(loss, x, eps))}
    analytic = {k: g.copy() for k, g in layer.grads.items()}
    for name, p in layer.params.items():
        out[name] = (analytic[name], numerical_gradient(loss, p, eps))
    return out
