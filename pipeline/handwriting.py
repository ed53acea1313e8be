"""Digits that MNIST's writers did not write: strokes traced by a program, as a robustness set.

Each digit is drawn from one of a few stroke skeletons per class (an open and a closed 4, a 1 with
and without its flag, a 7 with and without its bar, ...), as a person draws it: every point of the
skeleton moved a little (a smooth wobble), the whole slanted, rotated and squeezed, a pen from
thin to thick, sometimes blurred as by a camera and speckled with sensor noise, dark ink on light
paper. Each image is then framed as MNIST framed its digits by the same function that prepares a
user's photo for the models (``pipeline.images.prepare_pixels``: the ink's box 20 pixels, centred
by mass in 28x28). The models see a set like what ``nn-mnist predict`` and the page meet.

Everything is drawn from one seeded ``np.random.Generator`` and rendered with NumPy and Pillow
(pinned): the same seed gives the same bytes on every machine (its SHA-256 is in the tests).
"""

from __future__ import annotations

import numpy as np

import nn
from nn.augment import gaussian_blur
from pipeline.data import one_hot, scale
from pipeline.images import prepare_pixels

CANVAS = 64  # pixels of the page each digit is drawn on, before framing


def _arc(cx, cy, rx, ry, start, stop, n=24):
    """Points on an ellipse from angle ``start`` to ``stop`` (degrees; 0 is right, 90 is down)."""
    a = np.deg2rad(np.linspace(start, stop, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _line(*points):
    return np.asarray(points, float)


# Stroke skeletons in a unit box (x right, y down): a list of strokes, each a polyline.
SKELETONS: dict[int, list[list[np.ndarray]]] = {
    0: [
        [_arc(0.5, 0.5, 0.32, 0.48, -90, 275, 40)],
        [_arc(0.5, 0.5, 0.22, 0.48, -100, 265, 40)],
    ],
    1: [
        [_line((0.5, 0.0), (0.5, 1.0))],
        [_line((0.25, 0.22), (0.55, 0.0), (0.55, 1.0))],
        [_line((0.3, 0.2), (0.55, 0.0), (0.55, 1.0)), _line((0.3, 1.0), (0.8, 1.0))],
    ],
    2: [
        [np.vstack([_arc(0.5, 0.3, 0.32, 0.3, 190, 380), _line((0.15, 1.0), (0.9, 1.0))])],
        [
            np.vstack(
                [_arc(0.45, 0.28, 0.3, 0.28, 180, 370), _arc(0.3, 0.9, 0.12, 0.1, -60, 250, 12)]
            ),
            _line((0.25, 1.0), (0.9, 0.95)),
        ],
    ],
    3: [
        [
            np.vstack(
                [_arc(0.45, 0.25, 0.3, 0.25, 200, 450), _arc(0.45, 0.73, 0.35, 0.27, -90, 150)]
            )
        ],
        [_line((0.15, 0.0), (0.8, 0.0), (0.4, 0.42)), _arc(0.45, 0.7, 0.35, 0.3, -90, 150)],
    ],
    4: [
        [_line((0.6, 0.0), (0.05, 0.68), (0.9, 0.68)), _line((0.65, 0.3), (0.65, 1.0))],
        [_line((0.15, 0.0), (0.12, 0.55), (0.85, 0.55)), _line((0.7, 0.0), (0.7, 1.0))],
    ],
    5: [
        [
            _line((0.85, 0.0), (0.25, 0.0), (0.2, 0.42)),
            _arc(0.45, 0.68, 0.35, 0.32, -120, 160),
        ],
        [
            _line((0.22, 0.0), (0.2, 0.45)),
            _arc(0.45, 0.7, 0.33, 0.3, -130, 160),
            _line((0.22, 0.0), (0.85, 0.02)),
        ],
    ],
    6: [
        [
            np.vstack(
                [_arc(0.9, 0.62, 0.7, 0.62, 250, 180, 16), _arc(0.5, 0.72, 0.3, 0.28, 180, 540)]
            )
        ],
        [np.vstack([_line((0.7, 0.0)), _arc(0.5, 0.7, 0.32, 0.3, 200, 560)])],
    ],
    7: [
        [_line((0.1, 0.0), (0.9, 0.0), (0.4, 1.0))],
        [_line((0.1, 0.0), (0.9, 0.0), (0.45, 1.0)), _line((0.35, 0.5), (0.85, 0.5))],
        [_line((0.1, 0.15), (0.15, 0.0), (0.9, 0.0), (0.6, 0.5), (0.55, 1.0))],
    ],
    8: [
        [_arc(0.5, 0.25, 0.25, 0.25, 90, 450), _arc(0.5, 0.74, 0.32, 0.26, -90, 270)],
        [np.vstack([_arc(0.5, 0.26, 0.27, 0.26, 45, 315), _arc(0.5, 0.74, 0.3, 0.26, -90, 270)])],
    ],
    9: [
        [_arc(0.5, 0.3, 0.3, 0.3, 0, 360), _line((0.8, 0.3), (0.75, 1.0))],
        [np.vstack([_arc(0.5, 0.3, 0.3, 0.3, -10, 350), _arc(0.2, 0.3, 0.6, 0.7, 0, 100, 16)])],
    ],
}


def _segments(strokes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.concatenate([s[:-1] for s in strokes if len(s) > 1])
    ends = np.concatenate([s[1:] for s in strokes if len(s) > 1])
    return starts, ends


def draw(strokes: list[np.ndarray], width: float, size: int = CANVAS) -> np.ndarray:
    """Ink coverage ``(size, size)`` in [0, 1] of ``strokes`` (canvas pixels) drawn with a round
    pen ``width`` pixels wide, anti-aliased: ``clip(width / 2 + 0.5 - distance, 0, 1)``.

    Only the pixels within ``width / 2 + 0.5`` of the strokes' bounding box are measured: every
    other pixel is farther than that from every segment, so its ink is 0 in any case (the same
    values as measuring the whole canvas, in under half the time)."""
    a, b = _segments(strokes)
    reach = width / 2 + 0.5
    ends = np.concatenate([a, b])
    lo = np.maximum(np.floor(ends.min(axis=0) - reach).astype(int), 0)  # (x, y)
    hi = np.minimum(np.ceil(ends.max(axis=0) + reach).astype(int) + 1, size)
    ink = np.zeros((size, size))
    if (hi <= lo).any():  # the strokes are off the canvas
        return ink
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0]) + 0.5, np.arange(lo[1], hi[1]) + 0.5)
    box = gx.shape
    gx, gy = gx.reshape(-1, 1), gy.reshape(-1, 1)  # (pixels, 1) against (segments,)
    ax, ay, abx, aby = a[:, 0], a[:, 1], b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    length2 = np.maximum(abx * abx + aby * aby, 1e-12)
    t = np.clip(((gx - ax) * abx + (gy - ay) * aby) / length2, 0, 1)  # nearest point's place
    dx, dy = ax + t * abx - gx, ay + t * aby - gy
    dist = np.sqrt((dx * dx + dy * dy).min(axis=1))
    ink[lo[1] : hi[1], lo[0] : hi[0]] = np.clip(reach - dist, 0, 1).reshape(box)
    return ink


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return gaussian_blur(img[None, None], np.array([sigma]), int(np.ceil(3 * sigma)))[0, 0]


def handwritten_digit(label: int, rng: np.random.Generator) -> np.ndarray:
    """One digit ``label`` as a person might write and photograph it: grey ``(CANVAS, CANVAS)``
    in [0, 1], dark ink on light paper."""
    skeletons = SKELETONS[label]
    strokes = skeletons[int(rng.integers(len(skeletons)))]
    slant = rng.uniform(-0.45, 0.35)  # x moves by slant * (height above the middle)
    angle = np.deg2rad(rng.uniform(-12, 12))
    squeeze = rng.uniform(0.6, 1.15)  # width relative to height
    height = rng.uniform(0.55, 0.8) * CANVAS
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = []
    for s in strokes:
        p = s - 0.5
        n = len(p)
        wobble = np.cumsum(rng.normal(0, 0.012, (n, 2)), axis=0)  # a hand's drift along a stroke
        wobble -= np.linspace(0, 1, n)[:, None] * wobble[-1]  # ...that ends where it meant to
        p = p + wobble + rng.normal(0, 0.01, 2)
        p = np.stack([p[:, 0] * squeeze - slant * p[:, 1], p[:, 1]], 1) @ rot.T
        placed.append(p * height + CANVAS / 2)
    width = rng.uniform(1.5, 9.0)  # a fine pen to a marker, on a 64-pixel page
    ink = draw(placed, width)
    ink = _blur(ink, rng.uniform(0, 1.6) if rng.random() < 0.6 else 0.0)
    paper, pen = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.35)
    grey = paper + (pen - paper) * ink
    grey = grey + rng.normal(0, rng.uniform(0, 0.04), grey.shape)
    return np.clip(grey, 0, 1)


def robustness_set(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` digits of each class 0-9, prepared as MNIST's: ``(images, labels)``, uint8
    ``(10 * per_class, 28, 28)`` white on black and uint8 labels, classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
    images = np.empty((len(labels), 28, 28), np.uint8)
    for i, label in enumerate(labels):
        framed = prepare_pixels(handwritten_digit(int(label), rng), "mnist")
        images[i] = np.round(framed * 255).astype(np.uint8)
    return images, labels


def robustness_accuracy(model, data: dict, handwriting: dict) -> float:
    """The fraction of the robustness set's digits of the model's classes (``data``: its
    processed MNIST file) that ``model`` reads right."""
    classes = [int(c) for c in data["classes"]]
    keep = np.isin(handwriting["labels"], classes)
    x = scale(handwriting["images"][keep])
    y = one_hot(handwriting["labels"][keep].astype(np.intp), classes)
    return nn.accuracy(y, nn.predict(model, x, threads=nn.parallel.available_cores()))
