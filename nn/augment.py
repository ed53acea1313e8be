"""Image augmentation for ``fit``: a random transform of each training batch, vectorized over it."""

from __future__ import annotations

import numpy as np

from nn.layers import _positive_int, as_generator

__all__ = ["RandomShift"]


class RandomShift:
    """Translate every image by its own ``(dy, dx)``, each drawn uniformly from
    ``{-max_shift, ..., max_shift}``; pixels shifted in are 0 (the background of MNIST).

    One gather over a zero-padded copy of the batch does it for all images at once: output pixel
    ``(i, j)`` of image ``n`` is padded pixel ``(i + k - dy[n], j + k - dx[n])``.

    Args:
        max_shift: the largest shift k in pixels, along each axis.
        rng: Generator or int seed for the shifts.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype.
    """

    def __init__(self, max_shift: int, *, rng=None):
        self.max_shift = _positive_int("RandomShift", "max_shift", max_shift)
        self.rng = as_generator(0 if rng is None else rng)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected images (N, C, H, W), got shape {x.shape}")
        n, c, h, w = x.shape
        k = self.max_shift
        dy, dx = self.rng.integers(-k, k + 1, size=(2, n))
        padded = np.zeros((n, c, h + 2 * k, w + 2 * k), x.dtype)
        padded[:, :, k : k + h, k : k + w] = x
        rows = np.arange(h) + k - dy[:, None]  # (N, H)
        cols = np.arange(w) + k - dx[:, None]  # (N, W)
        return padded[
            np.arange(n)[:, None, None, None],
            np.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift})"
