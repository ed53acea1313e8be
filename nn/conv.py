"""Convolution and pooling on images ``(N, C, H, W)``, vectorized with im2col.

Neither layer loops over samples or output pixels: im2col is one copy of a strided view, col2im
and pooling loop over kernel offsets only. ``nn.reference`` keeps the obvious loop versions as
readable oracles for the tests.

Internally Conv2D keeps activations as ``(C, H, W, N)`` in memory: channels outermost so that
its im2col matrix, the matmul and the col2im scatter are contiguous, and the batch innermost so
that every window copy moves runs of ``W * N`` values instead of ``W``. What it returns is a
transposed view with the documented ``(N, C, H, W)`` shape; element-wise layers after it keep that
memory layout (NumPy's ``order="K"``), and NumPy handles the strides transparently. Flatten's
``(N, C*H*W)`` is a view of that memory too, and Dense hands its input gradient back in it, so the
backward pass makes no layout copy between the dense head and the conv layers.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nn.checks import ArgumentError, positive_int
from nn.init import check_init, init_params
from nn.layers import Layer, as_generator

__all__ = ["Conv2D", "MaxPool2D", "conv_output_size"]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """``floor((size + 2 * padding - kernel) / stride) + 1``, as in PyTorch's Conv2d docs.

    >>> conv_output_size(28, 3), conv_output_size(28, 5, stride=2, padding=2)
    (26, 14)
    """
    return (size + 2 * padding - kernel) // stride + 1


class Conv2D(Layer):
    """2-D cross-correlation: ``y[n, o] = bias[o] + sum_c correlate(x[n, c], weight[o, c])``.

    Args:
        in_channels: channels C of the input.
        out_channels: channels O of the output (number of filters).
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: step between windows (default 1).
        padding: zeros added on every side of H and W (default 0, a "valid" correlation).
        rng: Generator or int seed for the initial weights.
        dtype: parameter dtype; inputs are computed in it.

    Shape:
        x: ``(N, C, H, W)`` -> y: ``(N, O, Ho, Wo)`` with
        ``Ho = floor((H + 2 * padding - kh) / stride) + 1`` and likewise ``Wo``.

    Attributes:
        weight: ``(out_channels, in_channels, kh, kw)`` and bias ``(out_channels,)``, drawn from
            ``U(-k, k)`` with ``k = 1 / sqrt(in_channels * kh * kw)`` (PyTorch's default), or as
            ``init`` names (``nn.init``: He or Glorot, uniform or normal; bias zero).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        *,
        stride: int = 1,
        padding: int = 0,
        rng=None,
        dtype=np.float32,
        init: str = "default",
    ):
        super().__init__()
        self.init = check_init("Conv2D", init)
        self.in_channels = positive_int("Conv2D", "in_channels", in_channels)
        self.out_channels = positive_int("Conv2D", "out_channels", out_channels)
        ks = (kernel_size, kernel_size) if np.isscalar(kernel_size) else tuple(kernel_size)
        if len(ks) != 2:
            raise ArgumentError(
                "Conv2D", "kernel_size", f"must be an int or a pair, got {kernel_size!r}"
            )
        self.kernel_size = tuple(positive_int("Conv2D", "kernel_size", k) for k in ks)
        self.stride = positive_int("Conv2D", "stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
            raise ArgumentError(
                "Conv2D", "padding", f"must be a non-negative integer, got {padding!r}"
            )
        self.padding = int(padding)
        self.dtype = np.dtype(dtype)
        self._cols = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None) -> None:
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels, kh, kw)
        self.params = init_params(
            self.init,
            as_generator(rng),
            shape,
            self.out_channels,
            self.in_channels * kh * kw,
            self.out_channels * kh * kw,
            self.dtype,
        )
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def _check(self, x):
        kh, kw = self.kernel_size
        p = self.padding
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r}: expected input of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[2] + 2 * p < kh or x.shape[3] + 2 * p < kw:
            raise ValueError(
                f"{self!r}: kernel {kh}x{kw} is larger than the padded input "
                f"{x.shape[2] + 2 * p}x{x.shape[3] + 2 * p} (input shape "
                f"{tuple(x.shape)})"
            )

    def _windows(self, a, i, j, ho, wo):
        """The ``(C, ho, wo, N)`` view of a ``(C, H, W, N)`` array seen by kernel offset (i, j)."""
        s = self.stride
        return a[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s]

    def forward(self, x):
        self._check(x)
        kh, kw = self.kernel_size
        p = self.padding
        # (C, H, W, N): the batch innermost, so every window copy below moves long contiguous runs.
        xt = np.ascontiguousarray(x.astype(self.dtype, copy=False).transpose(1, 2, 3, 0))
        if p:
            xt = np.pad(xt, ((0, 0), (p, p), (p, p), (0, 0)))
        c, h, w, n = xt.shape
        ho, wo = conv_output_size(h, kh, self.stride), conv_output_size(w, kw, self.stride)
        shape = (c, kh, kw, ho, wo, n)
        if self._cols is None or self._cols.shape != shape:
            self._cols = np.empty(shape, self.dtype)
        cols = self._cols
        # Every window at once: (C, Ho, Wo, N, kh, kw) seen as (C, kh, kw, Ho, Wo, N), copied in
        # one call (runs of Wo * N values at stride 1).
        s = self.stride
        windows = sliding_window_view(xt, (kh, kw), axis=(1, 2))[:, ::s, ::s]
        np.copyto(cols, windows.transpose(0, 4, 5, 1, 2, 3))
        self.in_shape = xt.shape
        w2 = self.params["weight"].reshape(self.out_channels, -1)  # (O, C*kh*kw)
        y = w2 @ cols.reshape(c * kh * kw, -1)  # (O, Ho*Wo*N)
        y += self.params["bias"][:, None]
        return y.reshape(self.out_channels, ho, wo, n).transpose(3, 0, 1, 2)  # (N, O, Ho, Wo)

    def backward(self, grad_y):
        kh, kw = self.kernel_size
        c, h, w, n = self.in_shape
        ho, wo = grad_y.shape[2:]
        g = grad_y.astype(self.dtype, copy=False).transpose(1, 2, 3, 0)  # (O, Ho, Wo, N)
        g = g.reshape(self.out_channels, -1)  # (O, Ho*Wo*N); free when already in that layout
        cols = self._cols.reshape(c * kh * kw, -1)  # (C*kh*kw, Ho*Wo*N)
        np.matmul(g, cols.T, out=self.grads["weight"].reshape(self.out_channels, -1))
        np.matmul(g, np.ones(g.shape[1], self.dtype), out=self.grads["bias"])
        if not self.input_grad:
            return None
        w2 = self.params["weight"].reshape(self.out_channels, -1)
        dcols = (w2.T @ g).reshape(c, kh, kw, ho, wo, n)
        gx = np.zeros((c, h, w, n), self.dtype)
        for i in range(kh):
            for j in range(kw):
                self._windows(gx, i, j, ho, wo)[...] += dcols[:, i, j]
        p = self.padding
        if p:
            gx = gx[:, p : h - p, p : w - p]
        return gx.transpose(3, 0, 1, 2)  # (N, C, H, W)

    def config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": self.stride,
            "padding": self.padding,
            "dtype": self.dtype.name,
            "init": self.init,
        }


class MaxPool2D(Layer):
    """Max over non-overlapping ``k x k`` windows (stride ``k``); leftover rows/columns are dropped.

    Args:
        kernel_size: window size k.

    Shape:
        x: ``(N, C, H, W)`` -> y: ``(N, C, H // k, W // k)``.

    The gradient flows to one maximum per window (the first in row-major order on ties), as in
    PyTorch. In training the forward pass records which window offset that is (one byte per
    output), so the backward pass is one masked multiply per offset.
    """

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = positive_int("MaxPool2D", "kernel_size", kernel_size)
        self.x = self.argmax = None

    def _views(self, a, ho, wo):
        k = self.kernel_size
        for i in range(k):
            for j in range(k):
                yield a[:, :, i : i + k * ho : k, j : j + k * wo : k]

    def forward(self, x):
        k = self.kernel_size
        if x.ndim != 4 or x.shape[2] < k or x.shape[3] < k:
            raise ValueError(
                f"{self!r}: expected input of shape (N, C, H, W) with H, W >= {k}, "
                f"got {tuple(x.shape)}"
            )
        if not self.training:
            # No window choices recorded; backward finds them from x when asked (nn.explain).
            self.x, self.argmax = x, None
            return self._pool(x, record=False)[0]
        y, self.argmax = self._pool(x, record=True)
        self.x = x
        return y

    def _pool(self, x, record: bool):
        """``(y, argmax)``: the window maxima and, with ``record``, each window's offset of its
        first maximum (``argmax`` None otherwise)."""
        k = self.kernel_size
        ho, wo = x.shape[2] // k, x.shape[3] // k
        views = self._views(x, ho, wo)
        y = next(views).copy(order="K")  # order="K" keeps the input's memory layout
        if not record:
            for v in views:
                np.maximum(y, v, out=y)
            return y, None
        # argmax[w] = the offset of window w's first maximum: the last offset whose value beat
        # every earlier one (strictly, so a tie keeps the earlier offset).
        argmax = np.zeros_like(y, dtype=np.uint8 if k * k <= 256 else np.intp)
        beats = np.empty_like(y, dtype=bool)
        for offset, v in enumerate(views, start=1):
            np.greater(v, y, out=beats)
            np.maximum(y, v, out=y)
            np.maximum(argmax, beats * argmax.dtype.type(offset), out=argmax)
        return y, argmax

    def backward(self, grad_y):
        if self.x is None:
            raise RuntimeError(f"{self!r}: backward needs a forward pass first")
        if self.argmax is None:  # after an evaluation-mode forward
            self.argmax = self._pool(self.x, record=True)[1]
        ho, wo = grad_y.shape[2:]
        k = self.kernel_size
        h, w = self.x.shape[2:]
        whole = h == k * ho and w == k * wo  # every input element is in a window and is written
        gx = (np.empty_like if whole else np.zeros_like)(self.x, dtype=grad_y.dtype)
        for offset, gv in enumerate(self._views(gx, ho, wo)):
            np.multiply(grad_y, self.argmax == offset, out=gv)
        return gx

    def config(self):
        return {"kernel_size": self.kernel_size}
