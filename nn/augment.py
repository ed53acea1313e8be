"""Image augmentation for ``fit``: a random transform of each training batch, vectorized over it."""

from __future__ import annotations

import numpy as np

from nn.checks import number, positive_int
from nn.layers import as_generator

__all__ = ["Compose", "RandomFlip", "RandomShift"]


class RandomShift:
    """Translate every image by its own ``(dy, dx)``, each drawn uniformly from
    ``{-max_shift, ..., max_shift}``; pixels shifted in are 0 (the background of MNIST).

    One gather over a zero-padded copy of the batch does it for all images at once: output pixel
    ``(i, j)`` of image ``n`` is padded pixel ``(i + k - dy[n], j + k - dx[n])``, read with
    ``np.take`` at flat offsets (three times faster than indexing with four index arrays).

    Args:
        max_shift: the largest shift k in pixels, along each axis.
        rng: Generator or int seed for the shifts.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype.

    Example: this seed moves the image one pixel down; zeros come in at the top.

        >>> import numpy as np
        >>> x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
        >>> RandomShift(1, rng=0)(x)[0, 0]
        array([[0., 0., 0.],
               [1., 2., 3.],
               [4., 5., 6.]])
    """

    def __init__(self, max_shift: int, *, rng=None):
        self.max_shift = positive_int("RandomShift", "max_shift", max_shift)
        self.rng = as_generator(0 if rng is None else rng)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected images (N, C, H, W), got shape {x.shape}")
        n, c, h, w = x.shape
        k = self.max_shift
        dy, dx = self.rng.integers(-k, k + 1, size=(2, n))
        hp, wp = h + 2 * k, w + 2 * k
        padded = np.zeros((n, c, hp, wp), x.dtype)
        padded[:, :, k : k + h, k : k + w] = x
        # flat offset of padded pixel (n, ch, i + k - dy[n], j + k - dx[n]): a per-image start
        # plus the same (ch, i, j) offsets for every image
        start = np.arange(n) * (c * hp * wp) + (k - dy) * wp + (k - dx)  # (N,)
        offsets = np.arange(c)[:, None, None] * (hp * wp) + np.arange(h)[:, None] * wp
        offsets = (offsets + np.arange(w)).ravel()  # (C * H * W,)
        return np.take(padded.ravel(), start[:, None] + offsets).reshape(x.shape)

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift})"


class RandomFlip:
    """Mirror each image left-right with probability ``p`` (clothes and shoes look the same either
    way round; digits do not: keep it off for MNIST).

    Args:
        p: the probability that an image is mirrored.
        rng: Generator or int seed for the choices.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype.
    """

    def __init__(self, p: float = 0.5, *, rng=None):
        self.p = number("RandomFlip", "p", p, high=1.0)
        self.rng = as_generator(0 if rng is None else rng)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"{self!r}: expected images (N, C, H, W), got shape {x.shape}")
        flip = self.rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self):
        return f"RandomFlip(p={self.p})"


class Compose:
    """Apply ``transforms`` in order (each a callable on a batch of images)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return f"Compose({self.transforms!r})"
