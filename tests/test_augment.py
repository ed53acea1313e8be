"""The warps, strokes and blur of ``nn.augment`` against naive per-image oracles written from their
docstrings' formulas; identity parameters give the input back; parameters out of range get one
line naming the argument; the same seed gives the same bytes."""

import math

import numpy as np
import pytest

from nn.augment import Compose, RandomBlur, RandomShift, RandomStroke, RandomWarp


def images(n=6, c=1, h=9, w=8, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def naive_bilinear(img, y, x):
    """One channel ``img`` (H, W) read at the float point ``(y, x)``, zeros outside."""
    h, w = img.shape

    def at(i, j):
        return float(img[i, j]) if 0 <= i < h and 0 <= j < w else 0.0

    y0, x0 = math.floor(y), math.floor(x)
    fy, fx = y - y0, x - x0
    return (
        (1 - fy) * (1 - fx) * at(y0, x0)
        + (1 - fy) * fx * at(y0, x0 + 1)
        + fy * (1 - fx) * at(y0 + 1, x0)
        + fy * fx * at(y0 + 1, x0 + 1)
    )


def naive_warp(img, theta, phi, zoom, dy=None, dx=None):
    """The docstring's ``q = c + M (p - c) [+ displacement]`` pixel by pixel, in float64."""
    h, w = img.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    m = rot @ np.array([[1.0, math.tan(phi)], [0.0, 1.0]]) / zoom  # acts on (column, row)
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            qx, qy = m @ np.array([j - cx, i - cy]) + np.array([cx, cy])
            if dy is not None:
                qy, qx = qy + dy[i, j], qx + dx[i, j]
            out[i, j] = naive_bilinear(img, qy, qx)
    return out


def test_the_affine_warp_matches_a_per_pixel_oracle():
    x = images(n=5, c=2)
    warp = RandomWarp(rotate=25, scale=0.2, shear=20, rng=3)
    got = warp(x)
    rng = np.random.default_rng(3)  # the draws, in the order the docstring's formula uses them
    theta = np.deg2rad(rng.uniform(-25, 25, 5))
    phi = np.deg2rad(rng.uniform(-20, 20, 5))
    zoom = rng.uniform(0.8, 1.2, 5)
    for n in range(5):
        for ch in range(2):
            want = naive_warp(x[n, ch], theta[n], phi[n], zoom[n])
            np.testing.assert_allclose(got[n, ch], want, atol=2e-5)
    assert got.dtype == x.dtype and got.shape == x.shape


def test_the_elastic_field_is_smoothed_noise_added_to_the_sampling_point():
    x = images(n=3, h=10, w=10)
    warp = RandomWarp(elastic=3.0, sigma=2.0, rng=4)
    got = warp(x)
    rng = np.random.default_rng(4)
    field = rng.random((2, 3, 10, 10), dtype=np.float32) * 2 - 1  # U(-1, 1)
    d = np.arange(10.0)
    g = np.exp(-((d[:, None] - d[None, :]) ** 2) / (2 * 2.0**2))
    g /= g.sum(axis=1, keepdims=True)
    for n in range(3):
        dy = 3.0 * g @ field[0, n] @ g.T
        dx = 3.0 * g @ field[1, n] @ g.T
        want = naive_warp(x[n, 0], 0.0, 0.0, 1.0, dy, dx)
        np.testing.assert_allclose(got[n, 0], want, atol=2e-5)


def test_identity_parameters_give_the_input_back():
    x = images()
    for t in (RandomWarp(), RandomBlur(0.0), RandomStroke(0.0)):
        np.testing.assert_array_equal(t(x), x)
    # the resampling itself is exact at whole pixels: a warp that draws the identity
    np.testing.assert_array_equal(RandomWarp(rotate=1e-30, rng=0)(x), x)


def naive_morph(img, op):
    h, w = img.shape
    out = img.copy()
    for i in range(h):
        for j in range(w):
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= i + di < h and 0 <= j + dj < w:
                    out[i, j] = op(out[i, j], img[i + di, j + dj])
    return out


def test_strokes_grow_or_thin_as_a_per_pixel_max_or_min_of_the_neighbours():
    x = images(n=40)
    got = RandomStroke(0.6, rng=5)(x)
    u = np.random.default_rng(5).random(40)
    kinds = set()
    for n in range(40):
        if u[n] < 0.3:
            want, kind = naive_morph(x[n, 0], max), "thicker"
        elif u[n] < 0.6:
            want, kind = naive_morph(x[n, 0], min), "thinner"
        else:
            want, kind = x[n, 0], "same"
        np.testing.assert_array_equal(got[n, 0], want)
        kinds.add(kind)
    assert kinds == {"thicker", "thinner", "same"}


def test_blur_is_a_normalised_gaussian_per_image():
    x = images(n=4, h=7, w=6)
    got = RandomBlur(1.5, rng=6)(x)
    sigma = np.random.default_rng(6).uniform(0, 1.5, 4)
    r = 5  # ceil(3 * 1.5)
    for n in range(4):
        k = {t: math.exp(-(t**2) / (2 * sigma[n] ** 2)) for t in range(-r, r + 1)}
        total = sum(k.values())
        want = np.zeros((7, 6))
        for i in range(7):
            for j in range(6):
                want[i, j] = sum(
                    k[a] * k[b] * x[n, 0, i + a, j + b]
                    for a in k
                    for b in k
                    if 0 <= i + a < 7 and 0 <= j + b < 6
                ) / (total * total)
        np.testing.assert_allclose(got[n, 0], want, atol=2e-6)


def test_the_same_seed_gives_the_same_bytes():
    x = images(n=16, h=28, w=28)

    def recipe(seed):
        rng = np.random.default_rng(seed).spawn(4)
        return Compose(
            [
                RandomWarp(15, 0.1, 20, 20, 4, rng=rng[0]),
                RandomStroke(0.5, rng=rng[1]),
                RandomBlur(1.0, rng=rng[2]),
                RandomShift(2, rng=rng[3]),
            ]
        )

    a, b = recipe(7)(x), recipe(7)(x)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != recipe(8)(x).tobytes()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RandomWarp(rotate=-1), r"RandomWarp: rotate must be in \[0.0, 180.0\], got -1.0"),
        (lambda: RandomWarp(scale=1.0), r"RandomWarp: scale must be in \[0.0, 1.0\)"),
        (lambda: RandomWarp(shear=90), r"RandomWarp: shear must be in \[0.0, 90.0\)"),
        (lambda: RandomWarp(elastic=float("nan")), r"RandomWarp: elastic must be in"),
        (lambda: RandomWarp(sigma=0), r"RandomWarp: sigma must be in \(0.0, inf\]"),
        (lambda: RandomStroke(1.5), r"RandomStroke: p must be in \[0.0, 1.0\]"),
        (lambda: RandomBlur("1"), r"RandomBlur: max_sigma must be a number"),
    ],
)
def test_parameters_out_of_range_are_refused_with_one_line(make, message):
    with pytest.raises(ValueError, match=message) as e:
        make()
    assert "\n" not in str(e.value)


def test_a_batch_that_is_not_images_is_refused():
    for t in (RandomWarp(5), RandomStroke(), RandomBlur(1)):
        with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\), got shape \(3, 4\)"):
            t(np.zeros((3, 4), np.float32))


def test_batches_prepared_ahead_on_a_thread_are_the_plain_loops_bits():
    from nn.train import _prepared

    x = images(n=50, h=28, w=28)
    y = np.arange(50)
    batches = [np.arange(i, min(i + 8, 50)) for i in range(0, 50, 8)]

    def recipe():
        return Compose([RandomWarp(10, 0.1, 15, 12, 4, rng=1), RandomBlur(0.5, rng=2)])

    plain, ahead = recipe(), recipe()
    got = list(_prepared(x, y, batches, ahead))
    assert len(got) == len(batches)
    for (xb, yb), idx in zip(got, batches):
        assert xb.tobytes() == plain(x[idx]).tobytes()
        np.testing.assert_array_equal(yb, y[idx])
    assert [b[1].tolist() for b in _prepared(x, y, batches, None)] == [b.tolist() for b in batches]


def test_an_augmentation_that_fails_on_its_thread_fails_the_loop():
    from nn.train import _prepared

    with pytest.raises(ValueError, match="expected images"):
        list(
            _prepared(np.zeros((4, 3)), np.zeros(4), [np.arange(2), np.arange(2, 4)], RandomBlur(1))
        )
