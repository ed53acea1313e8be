"""Obvious loop versions of the tricky kernels: readable references and test oracles.

These loop over every sample and output pixel, so they are slow; ``nn.conv`` computes the same
results vectorized.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv2d_naive", "maxpool2d_naive", "maxpool2d_backward_naive"]


def conv2d_naive(x, weight, bias, *, stride=1, padding=0):
    """``y[n, o, i, j] = bias[o] + sum_{c,a,b} xpad[n, c, i*s+a, j*s+b] * weight[o, c, a, b]``."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo), dtype=np.result_type(x, weight))
    for s in range(n):
        for f in range(o):
            for i in range(ho):
                for j in range(wo):
                    window = xp[s, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[s, f, i, j] = np.sum(window * weight[f]) + bias[f]
    return y


def maxpool2d_naive(x, k):
    """``y[n, c, i, j] = max(x[n, c, i*k:(i+1)*k, j*k:(j+1)*k])``."""
    n, c, h, w = x.shape
    y = np.zeros((n, c, h // k, w // k), dtype=x.dtype)
    for s in range(n):
        for ch in range(c):
            for i in range(h // k):
                for j in range(w // k):
                    y[s, ch, i, j] = x[s, ch, i * k : (i + 1) * k, j * k : (j + 1) * k].max()
    return y


def maxpool2d_backward_naive(x, grad_y, k):
    """The gradient of ``maxpool2d_naive``: each window's ``grad_y`` goes to its first maximum
    in row-major order (PyTorch's choice on ties); everything else gets 0."""
    gx = np.zeros_like(x, dtype=grad_y.dtype)
    n, c, ho, wo = grad_y.shape
    for s in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    window = x[s, ch, i * k : (i + 1) * k, j * k : (j + 1) * k]
                    a, b = np.unravel_index(np.argmax(window), window.shape)  # the first maximum
                    gx[s, ch, i * k + a, j * k + b] = grad_y[s, ch, i, j]
    return gx
