"""The reference implementations the benchmarks compare ``nn`` against, on the same math.

- ``bare_*``: hand-written NumPy training steps, written for speed with no abstraction (the tricks
  in shared/PERF-NOTES.md): the yardstick for what NumPy can do on each model.
- ``tutorial_*``: the original tutorial's per-sample style: column vectors, one sample at a time,
  the learning rate inside ``backward``, convolution through ``scipy.signal.correlate2d``.

All take initial weights in ``nn``'s layouts so every implementation starts from the same point.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def _softmax_ce_grad(z, y):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    e -= y
    e /= len(z)
    return e


class BareMLP:
    """784-H-10, ReLU or Tanh hidden, cross-entropy (on logits) or MSE (Tanh output), plain SGD."""

    def __init__(self, w1, b1, w2, b2, *, lr, hidden="relu", loss="cross_entropy"):
        self.w1, self.b1, self.w2, self.b2 = (a.copy() for a in (w1, b1, w2, b2))
        self.lr, self.hidden, self.loss = lr, hidden, loss

    def step(self, x, y):
        x = x.reshape(len(x), -1)
        ones = np.ones(len(x), x.dtype)
        h = x @ self.w1 + self.b1
        h = np.maximum(h, 0, out=h) if self.hidden == "relu" else np.tanh(h, out=h)
        z = h @ self.w2 + self.b2
        if self.loss == "cross_entropy":
            dz = _softmax_ce_grad(z, y)
        else:  # Tanh output, MSE
            out = np.tanh(z)
            dz = (2.0 / out.size) * (out - y) * (1 - out * out)
        dh = dz @ self.w2.T
        dh *= (h > 0) if self.hidden == "relu" else (1 - h * h)
        gw2, gb2 = h.T @ dz, ones @ dz
        gw1, gb1 = x.T @ dh, ones @ dh
        for p, g in ((self.w1, gw1), (self.b1, gb1), (self.w2, gw2), (self.b2, gb2)):
            p -= self.lr * g


class BareConvPool:
    """Conv2D(1->C, 3x3) ReLU MaxPool2D(2) Flatten Dense(C*13*13, 10), cross-entropy, plain SGD."""

    def __init__(self, wc, bc, wd, bd, *, lr):
        self.wc, self.bc, self.wd, self.bd = (a.copy() for a in (wc, bc, wd, bd))
        self.lr = lr
        self.cols = None

    def step(self, x, y):
        n = len(x)
        c_out = len(self.bc)
        if self.cols is None or self.cols.shape[0] != n:
            self.cols = np.empty((n, 26, 26, 9), x.dtype)
        cols = self.cols
        img = x[:, 0]
        for i in range(3):
            for j in range(3):
                cols[:, :, :, 3 * i + j] = img[:, i : i + 26, j : j + 26]
        cols2 = cols.reshape(-1, 9)
        a = cols2 @ self.wc.reshape(c_out, 9).T + self.bc  # (N*676, C)
        np.maximum(a, 0, out=a)
        a4 = a.reshape(n, 26, 26, c_out)
        v = [a4[:, i::2, j::2] for i in (0, 1) for j in (0, 1)]
        p = np.maximum(np.maximum(v[0], v[1]), np.maximum(v[2], v[3]))  # (N, 13, 13, C)
        flat = p.transpose(0, 3, 1, 2).reshape(n, -1)  # (C, H, W) order, as nn's Flatten
        z = flat @ self.wd + self.bd
        dz = _softmax_ce_grad(z, y)
        ones = np.ones(n, x.dtype)
        gwd, gbd = flat.T @ dz, ones @ dz
        dp = (dz @ self.wd.T).reshape(n, c_out, 13, 13).transpose(0, 2, 3, 1)
        da = np.zeros_like(a4)
        taken = np.zeros(p.shape, bool)
        for k, (i, j) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            m = (v[k] == p) & ~taken
            taken |= m
            da[:, i::2, j::2] = dp * m
        da *= a4 > 0
        da2 = da.reshape(-1, c_out)
        gwc = (da2.T @ cols2).reshape(self.wc.shape)
        gbc = np.ones(len(da2), x.dtype) @ da2
        for q, g in ((self.wc, gwc), (self.bc, gbc), (self.wd, gwd), (self.bd, gbd)):
            q -= self.lr * g


class TutorialMLP:
    """The tutorial's Dense/Tanh/MSE network, one sample (a column vector) at a time."""

    def __init__(self, weights, biases, *, lr):
        # nn keeps weight (in, out); the tutorial keeps (out, in) and column biases.
        self.ws = [w.T.copy() for w in weights]
        self.bs = [b[:, None].copy() for b in biases]
        self.lr = lr

    def train_sample(self, x, y):
        acts = [x.reshape(-1, 1)]
        for w, b in zip(self.ws, self.bs):
            acts.append(np.tanh(np.dot(w, acts[-1]) + b))
        grad = 2 * (acts[-1] - y.reshape(-1, 1)) / y.size
        for k in reversed(range(len(self.ws))):
            grad = grad * (1 - acts[k + 1] ** 2)
            w_grad = np.dot(grad, acts[k].T)
            in_grad = np.dot(self.ws[k].T, grad)
            self.ws[k] -= self.lr * w_grad
            self.bs[k] -= self.lr * grad
            grad = in_grad


class TutorialConv:
    """The tutorial's Convolutional(1->C, 3x3) Sigmoid Reshape Dense Sigmoid Dense Sigmoid, BCE."""

    def __init__(self, kernels, kbias, dense_w, dense_b, *, lr):
        self.k = kernels.copy()  # (C, 1, 3, 3)
        self.kb = kbias[:, None, None] * np.ones((1, 26, 26), kernels.dtype)  # tutorial: per pixel
        self.ws = [w.T.copy() for w in dense_w]
        self.bs = [b[:, None].copy() for b in dense_b]
        self.lr = lr

    @staticmethod
    def _sigmoid(z):
        return 1 / (1 + np.exp(-z))

    def train_sample(self, x, y):
        img = x[0]
        c = len(self.k)
        out = np.copy(self.kb)
        for i in range(c):
            out[i] += signal.correlate2d(img, self.k[i, 0], "valid")
        a = self._sigmoid(out)
        acts = [a.reshape(-1, 1)]
        for w, b in zip(self.ws, self.bs):
            acts.append(self._sigmoid(np.dot(w, acts[-1]) + b))
        p = acts[-1]
        yy = y.reshape(-1, 1)
        grad = ((1 - yy) / (1 - p) - yy / p) / yy.size
        for k in reversed(range(len(self.ws))):
            grad = grad * acts[k + 1] * (1 - acts[k + 1])
            w_grad = np.dot(grad, acts[k].T)
            in_grad = np.dot(self.ws[k].T, grad)
            self.ws[k] -= self.lr * w_grad
            self.bs[k] -= self.lr * grad
            grad = in_grad
        grad = grad.reshape(a.shape) * a * (1 - a)
        for i in range(c):
            self.k[i, 0] -= self.lr * signal.correlate2d(img, grad[i], "valid")
        self.kb -= self.lr * grad
