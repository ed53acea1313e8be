"""The tutorial's three examples run on the new library at batch size 1 and match or beat it."""

import numpy as np
import pytest


def test_xor():
    import xor

    _, pred = xor.run(epochs=2000)
    np.testing.assert_array_equal(pred[:, 0] > 0.5, [False, True, True, False])


def test_mnist_dense_beats_tutorial(mnist_folder, monkeypatch):
    import mnist_dense

    monkeypatch.setenv("MNIST_MIRROR", str(mnist_folder))
    _, acc = mnist_dense.run(epochs=10)  # the tutorial trains 100 epochs to reach 0.58
    assert acc >= 0.80


@pytest.mark.slow
def test_mnist_conv_matches_tutorial(mnist_folder, monkeypatch):
    import mnist_conv

    monkeypatch.setenv("MNIST_MIRROR", str(mnist_folder))
    _, acc = mnist_conv.run()
    assert acc >= 0.997
