"""Layers that behave differently in training and evaluation: Dropout and BatchNorm."""

from __future__ import annotations

import numpy as np

from nn.checks import number, positive_int
from nn.layers import Layer, as_generator

__all__ = ["Dropout", "BatchNorm"]


class Dropout(Layer):
    """Inverted dropout: in training ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` drawn
    per element; in evaluation ``y = x``. Scaling in training keeps ``E[y] = x``, so evaluation
    needs no rescaling.

    Args:
        p: probability of zeroing an element, in [0, 1).
        rng: Generator or int seed for the masks (replicas of a sharded step draw from their own
            streams, spawned from it in shard order).

    Shape:
        any -> the same shape.
    """

    def __init__(self, p: float = 0.5, *, rng=None):
        super().__init__()
        self.p = number("Dropout", "p", p, high=1.0, high_open=True)
        self.rng = as_generator(0 if rng is None else rng)

    def forward(self, x):
        if not self.training or self.p == 0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p  # (N, ...) bool
        self.mask = keep * x.dtype.type(1 / (1 - self.p))
        return x * self.mask

    def backward(self, grad_y):
        return grad_y if self.mask is None else grad_y * self.mask

    def config(self):
        return {"p": self.p}


class BatchNorm(Layer):
    """Batch normalization (Ioffe & Szegedy, 2015) over every axis but the channel axis 1:
    ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    In training, ``mean`` and ``var`` (biased) are the batch's, and the running estimates are
    updated: ``running = (1 - momentum) * running + momentum * batch`` (with the unbiased
    variance, as PyTorch does). In evaluation the running estimates are used.

    Args:
        num_features: channels C (axis 1 of the input).
        momentum: weight of the batch statistics in the running estimates.
        eps: added to the variance.
        dtype: parameter dtype.

    Shape:
        x: ``(N, C)`` (after a Dense layer) or ``(N, C, H, W)`` (after a Conv2D) -> same shape.

    Attributes:
        gamma: ``(C,)``, ones at first (a param).
        beta: ``(C,)``, zeros at first (a param).
        running_mean: ``(C,)``, zeros at first (a buffer, saved by ``nn.save``).
        running_var: ``(C,)``, ones at first (a buffer, saved by ``nn.save``).
    """

    def __init__(self, num_features: int, *, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = positive_int("BatchNorm", "num_features", num_features)
        self.momentum = number("BatchNorm", "momentum", momentum, low_open=True, high=1.0)
        self.eps = number("BatchNorm", "eps", eps, low_open=True)
        self.dtype = np.dtype(dtype)
        c = self.num_features
        self.params = {"gamma": np.ones(c, self.dtype), "beta": np.zeros(c, self.dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {
            "running_mean": np.zeros(c, self.dtype),
            "running_var": np.ones(c, self.dtype),
        }

    def _check(self, x):
        if x.ndim not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.num_features}) or "
                f"(N, {self.num_features}, H, W), got {tuple(x.shape)}"
            )

    def _to_rows(self, a, layout):
        """``a`` as an ``(M, C)`` matrix, one row per sample and position, in ``layout``:
        ``"dense"`` (``(N, C)`` itself), ``"chwn"`` (a view of Conv2D's ``(C, H, W, N)`` memory
        layout, M ordered ``(h, w, n)``) or ``"nhwc"`` (a copy, M ordered ``(n, h, w)``)."""
        c = self.num_features
        if layout == "dense":
            return a
        if layout == "chwn":
            return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).reshape(c, -1).T
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, c)

    @staticmethod
    def _from_rows(rows, shape, layout):
        """Inverse of ``_to_rows``: the ``(N, C[, H, W])`` array (a view)."""
        if layout == "dense":
            return rows
        n, c, h, w = shape
        if layout == "chwn":
            return rows.T.reshape(c, h, w, n).transpose(3, 0, 1, 2)
        return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)

    def forward(self, x):
        self._check(x)
        if x.ndim == 2:
            layout = "dense"
        else:
            layout = "chwn" if x.transpose(1, 2, 3, 0).flags.c_contiguous else "nhwc"
        rows = self._to_rows(x, layout)  # (M, C)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not self.training:
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = beta - self.buffers["running_mean"] * scale
            # Kept for a backward pass through the affine (explanations: nn.explain).
            self.x_hat, self.rows, self.scale, self.layout = None, rows, scale, layout
            return self._from_rows(rows * scale + shift, x.shape, layout)
        m = len(rows)
        ones = np.full(m, 1 / m, rows.dtype)  # means as matmuls: far faster than .mean(0)
        mean = ones @ rows  # (C,)
        centered = rows - mean
        var = ones @ (centered * centered)  # (C,), biased
        inv_std = 1 / np.sqrt(var + self.eps)
        self.x_hat = centered
        self.x_hat *= inv_std  # (M, C)
        self.inv_std, self.layout = inv_std, layout
        run_m, run_v = self.buffers["running_mean"], self.buffers["running_var"]
        run_m *= 1 - self.momentum
        run_m += self.momentum * mean
        run_v *= 1 - self.momentum
        run_v += self.momentum * var * (m / max(m - 1, 1))
        return self._from_rows(self.x_hat * gamma + beta, x.shape, layout)

    def backward(self, grad_y):
        if self.x_hat is None:
            return self._backward_affine(grad_y)
        x_hat = self.x_hat  # (M, C)
        g = self._to_rows(grad_y, self.layout)  # (M, C), rows in x_hat's order
        ones = np.ones(len(g), g.dtype)
        np.matmul(ones, g, out=self.grads["beta"])
        np.matmul(ones, g * x_hat, out=self.grads["gamma"])
        if not self.input_grad:
            return None
        m = len(g)
        # dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))
        grad_x = g * g.dtype.type(m)
        grad_x -= self.grads["beta"]
        grad_x -= x_hat * self.grads["gamma"]
        grad_x *= self.params["gamma"] * self.inv_std / m
        return self._from_rows(grad_x, grad_y.shape, self.layout)

    def _backward_affine(self, grad_y):
        """Backward after an evaluation-mode forward, where the layer is the fixed affine
        ``y = x * scale + shift`` with ``scale = gamma / sqrt(running_var + eps)``: ``dx = dy *
        scale``, ``dbeta = sum(dy)``, ``dgamma = sum(dy * (x - running_mean) / sqrt(running_var
        + eps))``. The running statistics are constants here (no batch statistics)."""
        g = self._to_rows(grad_y, self.layout)  # (M, C)
        ones = np.ones(len(g), g.dtype)
        np.matmul(ones, g, out=self.grads["beta"])
        x_hat = (self.rows - self.buffers["running_mean"]) / np.sqrt(
            self.buffers["running_var"] + self.eps
        )
        np.matmul(ones, g * x_hat, out=self.grads["gamma"])
        if not self.input_grad:
            return None
        return self._from_rows(g * self.scale, grad_y.shape, self.layout)

    def config(self):
        return {
            "num_features": self.num_features,
            "momentum": self.momentum,
            "eps": self.eps,
            "dtype": self.dtype.name,
        }
