"""The robustness set: traced digits built the same way on every machine, framed as MNIST's, and
scored per model by the evaluate stage."""

import hashlib

import numpy as np
import pytest

import nn
from pipeline.errors import PipelineError
from pipeline.handwriting import SKELETONS, draw, robustness_accuracy, robustness_set
from pipeline.params import RobustnessParams, parse_section

# sha256 of robustness_set(3, 0)'s image and label bytes: any change to how the set is drawn
# (skeletons, pens, framing, the libraries under it) shows here first.
SET_SHA256 = "5b2423f292de5d9587b78c3dfc7bbeb6cce5e80f7cbe7f4253f36d7f5c0c7e39"


def test_the_set_is_the_same_bytes_on_every_machine():
    images, labels = robustness_set(3, 0)
    assert hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest() == SET_SHA256
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == list(range(10)) * 3


def test_each_digit_is_framed_as_mnist_frames_its_digits():
    images, _ = robustness_set(5, 1)
    for img in images.astype(float):
        rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # the ink's box: 20 px
        total = img.sum()
        cy = (img.sum(1) * np.arange(28)).sum() / total
        cx = (img.sum(0) * np.arange(28)).sum() / total
        assert abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5  # centred by mass
        assert img.max() > 100 and img[0].max() == 0  # white ink on black


def test_a_pen_stroke_is_ink_within_half_its_width():
    ink = draw([np.array([[10.0, 32.25], [50.0, 32.25]])], width=6.0)  # pixel centres: i + 0.5
    assert ink[32, 30] == 1.0 and ink[34, 30] == 1.0  # 2.25 px from the line: inside
    assert ink[38, 30] == 0.0 and ink[32, 5] == 0.0  # 6 px off, and beyond the end
    assert ink[35, 30] == pytest.approx(0.25) and ink[29, 30] == pytest.approx(0.75)  # edges


def ink_everywhere(strokes, width, size=64):
    """The oracle: every pixel's distance to every segment, the whole canvas measured."""
    a = np.concatenate([s[:-1] for s in strokes])
    b = np.concatenate([s[1:] for s in strokes])
    gx, gy = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    gx, gy = gx.reshape(-1, 1), gy.reshape(-1, 1)
    ax, ay, abx, aby = a[:, 0], a[:, 1], b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    length2 = np.maximum(abx * abx + aby * aby, 1e-12)
    t = np.clip(((gx - ax) * abx + (gy - ay) * aby) / length2, 0, 1)
    dx, dy = ax + t * abx - gx, ay + t * aby - gy
    dist = np.sqrt((dx * dx + dy * dy).min(axis=1))
    return np.clip(width / 2 + 0.5 - dist, 0, 1).reshape(size, size)


def test_drawing_only_near_the_strokes_gives_the_whole_canvas_values():
    rng = np.random.default_rng(0)
    cases = [
        ([rng.uniform(-20, 84, (rng.integers(2, 30), 2)) for _ in range(3)], rng.uniform(1, 12))
        for _ in range(40)
    ]  # many partly off the canvas
    cases += [
        ([np.array([[-40.0, -40.0], [-30.0, -20.0]])], 5.0),  # off the canvas: no ink
        ([np.array([[32.0, 32.0], [32.0, 32.0]])], 3.0),  # a dot
        ([np.array([[-5.0, 10.0], [70.0, 10.0]])], 9.0),  # across the whole width
    ]
    for strokes, width in cases:
        assert np.array_equal(draw(strokes, width), ink_everywhere(strokes, width))


def test_every_class_has_several_ways_of_writing_it():
    assert sorted(SKELETONS) == list(range(10))
    assert all(len(ways) >= 2 for ways in SKELETONS.values())


def test_the_score_counts_the_models_classes_only():
    images, labels = robustness_set(2, 0)
    handwriting = {"images": images, "labels": labels}

    class Oracle(nn.Layer):  # answers the true label of each image, by its index
        def forward(self, x):
            out = np.zeros((len(x), 3), np.float32)
            index = {img.tobytes(): i for i, img in enumerate(images)}
            for n, img in enumerate(np.round(x[:, 0] * 255).astype(np.uint8)):
                out[n, [0, 1, 7].index(labels[index[img.tobytes()]])] = 1
            return out

    data = {"classes": np.array([0, 1, 7]), "dataset": np.array("mnist")}
    assert robustness_accuracy(Oracle(), data, handwriting) == 1.0


def test_bad_params_are_one_line():
    with pytest.raises(PipelineError, match=r"^robustness.per_class: must be in \[1, 10000\]"):
        parse_section(RobustnessParams, {"per_class": 0}, "robustness")
