"""Image augmentation for ``fit``: a random transform of each training batch, vectorized over it."""

from __future__ import annotations

import numpy as np

from nn.checks import number, positive_int
from nn.layers import as_generator

__all__ = ["Compose", "RandomBlur", "RandomFlip", "RandomShift", "RandomStroke", "RandomWarp"]


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
        n, c, h, w = _images(self, x)
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
        _images(self, x)
        flip = self.rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self):
        return f"RandomFlip(p={self.p})"


def _images(owner, x: np.ndarray) -> tuple[int, int, int, int]:
    if x.ndim != 4:
        raise ValueError(f"{owner!r}: expected images (N, C, H, W), got shape {x.shape}")
    return x.shape


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)`` float32: row ``i`` holds the Gaussian weights ``exp(-(i - j)**2 /
    (2 sigma**2))`` over the ``size`` positions ``j``, normalised to sum 1 (a row near the edge
    spreads its weight over the positions there are). ``G @ f`` smooths ``f`` along its first
    axis."""
    d = np.arange(size, dtype=np.float64)
    g = np.exp(-((d[:, None] - d[None, :]) ** 2) / (2 * sigma * sigma))
    return (g / g.sum(axis=1, keepdims=True)).astype(np.float32)


def smooth_fields(fields: np.ndarray, sigma: float) -> np.ndarray:
    """``G_h f G_w^T`` for every ``(H, W)`` field of ``fields`` ``(..., H, W)``: two matrix
    products over the whole stack (one with all the fields side by side, one with all their rows
    stacked), not one small product per field."""
    *lead, h, w = fields.shape
    k = int(np.prod(lead))
    side_by_side = fields.reshape(k, h, w).transpose(1, 0, 2).reshape(h, k * w)
    rows = (gaussian_matrix(h, sigma) @ side_by_side).reshape(h * k, w)
    out = (rows @ gaussian_matrix(w, sigma).T).reshape(h, k, w).transpose(1, 0, 2)
    return out.reshape(fields.shape)


def bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample images ``x`` ``(N, C, H, W)`` at the points ``(ys, xs)`` ``(N, H', W')`` (rows and
    columns, float32) by bilinear interpolation; pixels outside the image are 0.

    ``out[n, c, i, j] = sum over the 4 pixels (y, x) around (ys, xs)[n, i, j] of
    (1 - |ys - y|) (1 - |xs - x|) x[n, c, y, x]``: one gather per corner over a copy of the batch
    padded with two rows and columns of zeros (points further out are clipped onto the padding),
    the corners read through views of it shifted by 1, W and W + 1 elements. ``ys`` and ``xs``
    are overwritten."""
    n, c, h, w = x.shape
    p = 2
    hp, wp = h + 2 * p, w + 2 * p
    padded = np.zeros((n, c, hp, wp), x.dtype)
    padded[:, :, p : p + h, p : p + w] = x
    np.clip(ys, -1, h, out=ys)
    np.clip(xs, -1, w, out=xs)
    y0, x0 = np.floor(ys), np.floor(xs)
    ys -= y0  # the fractions
    xs -= x0
    # The flat index of corner (y0, x0) of image n, channel 0, computed exactly in float32 (every
    # index of a batch this size is below 2**24), then converted once.
    y0 += p
    y0 *= wp
    y0 += x0
    y0 += (np.arange(n, dtype=np.float32) * (c * hp * wp) + p)[:, None, None]
    corner = y0.astype(np.intp)[:, None]  # (N, 1, H', W')
    if c > 1:
        corner = corner + (np.arange(c) * (hp * wp))[None, :, None, None]
    flat = padded.ravel()
    a, b = np.take(flat, corner), np.take(flat[1:], corner)
    top = np.subtract(b, a, out=b)
    top *= xs[:, None]
    top += a
    a, b = np.take(flat[wp:], corner), np.take(flat[wp + 1 :], corner)
    bottom = np.subtract(b, a, out=b)
    bottom *= xs[:, None]
    bottom += a
    bottom -= top
    bottom *= ys[:, None]
    bottom += top
    return bottom


def gaussian_blur(x: np.ndarray, sigma: np.ndarray, r: int) -> np.ndarray:
    """Images ``x`` ``(N, C, H, W)`` each blurred by a Gaussian of its own ``sigma[n]`` pixels,
    along each axis ``y[i] = sum_t k[t] x[i + t]`` for ``t`` in ``[-r, r]``, ``k[t]`` proportional
    to ``exp(-t**2 / (2 sigma**2))`` and summing to 1 (``sigma`` 0: the identity); pixels outside
    the image are 0. The taps are summed in order over the whole batch, in ``x``'s dtype."""
    t = np.arange(-r, r + 1)
    sigma = np.asarray(sigma, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma 0: the identity's taps
        k = np.exp(-(t**2) / (2 * sigma[:, None] ** 2))
    k[sigma == 0] = t == 0
    k = (k / k.sum(axis=1, keepdims=True)).astype(x.dtype)  # (N, 2r + 1)
    for axis in (2, 3):
        size = x.shape[axis]
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        padded = np.pad(x, pad)
        out = np.zeros_like(x)
        for i in range(2 * r + 1):
            window = padded[:, :, i : i + size] if axis == 2 else padded[..., i : i + size]
            out += k[:, i, None, None, None] * window
        x = out
    return x


class RandomWarp:
    """A random affine warp and an elastic distortion of each image, in one bilinear resampling.

    Output pixel ``p = (row, col)`` of image ``n`` reads the input at

        ``q = c + M_n (p - c) + alpha * (G_sigma * U_n)(p)``

    where ``c`` is the image's centre, ``M_n = R(theta) Sh(phi) / s`` with ``theta`` drawn from
    ``U(-rotate, rotate)`` degrees, the shear ``phi`` from ``U(-shear, shear)`` degrees (a slant:
    ``Sh`` moves each row sideways by ``tan(phi)`` times its height above the centre) and the
    zoom ``s`` from ``U(1 - scale, 1 + scale)``; ``U_n`` is a field of two displacements per pixel
    drawn from ``U(-1, 1)`` and ``G_sigma *`` smooths it with a Gaussian of ``sigma`` pixels
    (Simard, Steinkraus & Platt, 2003: ``alpha`` 34 and ``sigma`` 4 for MNIST). Pixels read from
    outside the image are 0. Translation is ``RandomShift``'s (exact, whole pixels).

    Args:
        rotate: the largest rotation, in degrees (0: none).
        scale: the largest relative zoom in or out, in [0, 1) (0: none).
        shear: the largest slant, in degrees, in [0, 90) (0: none).
        elastic: ``alpha``, the elastic displacement's strength in pixels (0: none).
        sigma: the smoothness of the elastic field, in pixels (> 0).
        rng: Generator or int seed for the draws.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype. All parameters 0: ``x`` itself.
    """

    def __init__(self, rotate=0.0, scale=0.0, shear=0.0, elastic=0.0, sigma=4.0, *, rng=None):
        owner = "RandomWarp"
        self.rotate = number(owner, "rotate", rotate, high=180.0)
        self.scale = number(owner, "scale", scale, high=1.0, high_open=True)
        self.shear = number(owner, "shear", shear, high=90.0, high_open=True)
        self.elastic = number(owner, "elastic", elastic)
        self.sigma = number(owner, "sigma", sigma, low_open=True)
        self.rng = as_generator(0 if rng is None else rng)

    def sample_points(self, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Where each output pixel of ``n`` images reads its input: ``(ys, xs)``, ``(n, h, w)``."""
        rng = self.rng
        none = np.zeros(n)  # a part that is off draws nothing: the others' draws stay the same
        theta = np.deg2rad(rng.uniform(-self.rotate, self.rotate, n)) if self.rotate else none
        phi = np.deg2rad(rng.uniform(-self.shear, self.shear, n)) if self.shear else none
        zoom = rng.uniform(1 - self.scale, 1 + self.scale, n) if self.scale else none + 1
        cos, sin, tan = np.cos(theta) / zoom, np.sin(theta) / zoom, np.tan(phi)
        m = np.stack([cos, -sin + cos * tan, sin, cos + sin * tan], -1).astype(np.float32)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        v = (np.arange(h, dtype=np.float32) - np.float32(cy))[None, :, None]  # rows, from centre
        u = (np.arange(w, dtype=np.float32) - np.float32(cx))[None, None, :]  # columns
        m = m.reshape(n, 4, 1, 1)
        xs = m[:, 0] * u + m[:, 1] * v + np.float32(cx)
        ys = m[:, 2] * u + m[:, 3] * v + np.float32(cy)
        if self.elastic:
            field = rng.random((2, n, h, w), dtype=np.float32)  # U(-1, 1), drawn in float32
            field *= 2
            field -= 1
            smooth = smooth_fields(field, self.sigma)
            ys = ys + np.float32(self.elastic) * smooth[0]
            xs = xs + np.float32(self.elastic) * smooth[1]
        return ys, xs

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = _images(self, x)
        if not (self.rotate or self.scale or self.shear or self.elastic):
            return x
        ys, xs = self.sample_points(n, h, w)
        return bilinear(x, ys, xs)

    def __repr__(self):
        return (
            f"RandomWarp(rotate={self.rotate}, scale={self.scale}, shear={self.shear}, "
            f"elastic={self.elastic}, sigma={self.sigma})"
        )


class RandomStroke:
    """Thicker or thinner strokes: with probability ``p`` an image is dilated (grey-level, each
    pixel the max of itself and its 4 neighbours) or, as often, eroded (the min), once; ink is
    bright on a dark background as in MNIST.

    Args:
        p: the probability that an image's strokes change, in [0, 1].
        rng: Generator or int seed for the choices.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype.
    """

    def __init__(self, p: float = 0.5, *, rng=None):
        self.p = number("RandomStroke", "p", p, high=1.0)
        self.rng = as_generator(0 if rng is None else rng)

    @staticmethod
    def morph(x: np.ndarray, op) -> np.ndarray:
        """``op`` (np.maximum or np.minimum) of each pixel and its 4 neighbours (edges: the pixel
        itself stands in for a missing neighbour)."""
        out = x.copy()
        op(out[..., 1:, :], x[..., :-1, :], out=out[..., 1:, :])
        op(out[..., :-1, :], x[..., 1:, :], out=out[..., :-1, :])
        op(out[..., :, 1:], x[..., :, :-1], out=out[..., :, 1:])
        op(out[..., :, :-1], x[..., :, 1:], out=out[..., :, :-1])
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        _images(self, x)
        u = self.rng.random(len(x))
        thicker, thinner = u < self.p / 2, (u >= self.p / 2) & (u < self.p)
        out = x.copy()
        if thicker.any():
            out[thicker] = self.morph(x[thicker], np.maximum)
        if thinner.any():
            out[thinner] = self.morph(x[thinner], np.minimum)
        return out

    def __repr__(self):
        return f"RandomStroke(p={self.p})"


class RandomBlur:
    """Blur each image with a Gaussian of its own ``sigma``, drawn from ``U(0, max_sigma)``
    pixels (a camera out of focus, a soft pen): :func:`gaussian_blur` with ``r = ceil(3
    max_sigma)`` taps either side, over the whole batch at once, each image with its own weights.

    Args:
        max_sigma: the largest blur, in pixels (0: none).
        rng: Generator or int seed for the draws.

    Shape:
        x: ``(N, C, H, W)`` -> the same shape and dtype.
    """

    def __init__(self, max_sigma: float, *, rng=None):
        self.max_sigma = number("RandomBlur", "max_sigma", max_sigma)
        self.rng = as_generator(0 if rng is None else rng)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = _images(self, x)
        if not self.max_sigma:
            return x
        sigma = self.rng.uniform(0, self.max_sigma, n)
        return gaussian_blur(x, sigma, int(np.ceil(3 * self.max_sigma)))

    def __repr__(self):
        return f"RandomBlur(max_sigma={self.max_sigma})"


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
