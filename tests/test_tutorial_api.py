"""``tutorial/``: the video's API on ``nn``. Scripts written as the video writes them run unchanged
on it and print what the tutorial's own code prints; each layer's gradients are ``nn``'s; bad
shapes are one line naming the layer and both shapes.

The oracle is the tutorial's code itself, written out as its flat modules (``ORACLE``, in
``bench/video_tutorial.py``):
the same scripts run on it and on ``tutorial/``, seeded alike, and their outputs are compared."""

import re

import numpy as np
import pytest
from conftest import ROOT

from bench.video_tutorial import LOAD, ORACLE, SCRIPTS, run_script, write

TUTORIAL = ROOT / "tutorial"


def same_output(ours: list[str], theirs: list[str]) -> None:
    """Line for line: numbers to 1e-6 relative, everything else (predictions) identical."""
    assert len(ours) == len(theirs)
    number = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")
    for a, b in zip(ours, theirs, strict=True):
        assert number.sub("#", a) == number.sub("#", b), (a, b)
        for x, y in zip(number.findall(a), number.findall(b), strict=True):
            assert float(x) == pytest.approx(float(y), rel=1e-6), (a, b)


@pytest.mark.parametrize("script", ["xor.py", "mnist.py", "mnist_conv.py"])
def test_the_videos_scripts_run_unchanged_and_print_what_the_tutorial_prints(
    script, tmp_path, mnist_folder
):
    scripts = write(tmp_path / "scripts", SCRIPTS | {"load.py": LOAD})
    oracle = write(tmp_path / "oracle", ORACLE)
    ours = run_script(script, TUTORIAL, scripts, mnist_folder)
    theirs = run_script(script, oracle, scripts, mnist_folder)
    same_output(ours, theirs)
    if script == "mnist_conv.py":
        assert float(ours[-1].split()[-1]) >= 0.95  # the video's result: it tells 0s from 1s


# --- each layer against nn and the tutorial's formulas ------------------------------------------


@pytest.fixture
def tutorial_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(TUTORIAL))
    import activations
    import convolutional
    import dense
    import reshape

    return dense, activations, convolutional, reshape


def test_each_layer_is_nns_arithmetic_and_the_tutorials_formulas(tutorial_modules):
    import nn

    dense, activations, convolutional, reshape = tutorial_modules
    rng = np.random.default_rng(0)
    np.random.seed(1)
    d = dense.Dense(5, 3)
    w, b = d.weights.copy(), d.bias.copy()
    x, g = rng.normal(size=(5, 1)), rng.normal(size=(3, 1))
    ref = nn.Dense(5, 3, dtype=np.float64)
    ref.params["weight"][...], ref.params["bias"][...] = w.T, b[:, 0]
    np.testing.assert_array_equal(d.forward(x), ref.forward(x.T).T)
    np.testing.assert_array_equal(d.forward(x), np.dot(w, x) + b)  # the tutorial's formula
    grad_x = d.backward(g, 0.5)
    ref_grad_x = ref.backward(g.T)
    # nn.Dense's W^T dE/dY, summed in the column layout's order, as the video sums it
    np.testing.assert_allclose(grad_x, ref_grad_x.T, rtol=1e-15)
    np.testing.assert_array_equal(grad_x, np.dot(w.T, g))
    # dE/dW as nn.Dense's grads hold it (the weights' own memory), before the step scaled it
    np.testing.assert_array_equal(d.layer.grads["weight"], 0.5 * ref.grads["weight"])
    np.testing.assert_allclose(d.weights, w - 0.5 * ref.grads["weight"].T, rtol=1e-15)
    np.testing.assert_array_equal(d.weights, w - 0.5 * np.dot(g, x.T))
    np.testing.assert_array_equal(d.bias, b - 0.5 * g)

    np.random.seed(2)
    c = convolutional.Convolutional((2, 6, 5), 3, 4)
    k, biases = c.kernels.copy(), c.biases.copy()
    x, g = rng.normal(size=(2, 6, 5)), rng.normal(size=(4, 4, 3))
    conv = nn.Conv2D(2, 4, 3, dtype=np.float64)
    conv.params["weight"][...], conv.params["bias"][...] = k, 0.0
    from scipy import signal

    expected = biases + np.array(
        [sum(signal.correlate2d(x[j], k[i, j], "valid") for j in range(2)) for i in range(4)]
    )
    np.testing.assert_allclose(c.forward(x), expected, rtol=1e-13)
    np.testing.assert_allclose(c.forward(x), conv.forward(x[None])[0] + biases, rtol=1e-15)
    grad_x = c.backward(g, 0.1)
    conv.backward(g[None])
    full = [sum(signal.convolve2d(g[i], k[i, j], "full") for i in range(4)) for j in range(2)]
    np.testing.assert_allclose(grad_x, np.array(full), rtol=1e-12)
    kgrad = np.array(
        [[signal.correlate2d(x[j], g[i], "valid") for j in range(2)] for i in range(4)]
    )
    np.testing.assert_allclose(conv.grads["weight"], kgrad, rtol=1e-12)
    np.testing.assert_allclose(c.kernels, k - 0.1 * kgrad, rtol=1e-13)
    np.testing.assert_array_equal(c.biases, biases - 0.1 * g)

    for name, f, fprime in [
        ("Tanh", np.tanh, lambda v: 1 - np.tanh(v) ** 2),
        ("Sigmoid", lambda v: 1 / (1 + np.exp(-v)), lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
    ]:
        a = getattr(activations, name)()
        x, g = rng.normal(size=(4, 1)), rng.normal(size=(4, 1))
        np.testing.assert_allclose(a.forward(x), f(x), rtol=1e-15)
        np.testing.assert_allclose(a.backward(g, 0.1), g * fprime(x), rtol=1e-14)
    s = activations.Softmax()
    x, g = rng.normal(size=(4, 1)), rng.normal(size=(4, 1))
    y = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(s.forward(x), y, rtol=1e-15)
    np.testing.assert_allclose(s.backward(g, 0.1), ((np.identity(4) - y.T) * y) @ g, rtol=1e-13)
    r = reshape.Reshape((5, 2, 2), (20, 1))
    x = rng.normal(size=(5, 2, 2))
    np.testing.assert_array_equal(r.forward(x), x.reshape(20, 1))
    np.testing.assert_array_equal(r.backward(r.forward(x), 0.1), x)


def test_train_skips_the_first_layers_input_gradient_as_nn_fit_does(tutorial_modules, monkeypatch):
    dense, activations, convolutional, reshape = tutorial_modules
    import network

    np.random.seed(0)
    first = convolutional.Convolutional((1, 4, 4), 3, 2)
    net = [first, reshape.Reshape((2, 2, 2), (8, 1)), dense.Dense(8, 1), activations.Tanh()]
    returned = []
    backward = type(first).backward

    def spy(self, *args):
        returned.append(backward(self, *args))
        return returned[-1]

    monkeypatch.setattr(type(first), "backward", spy)
    x, y = np.random.rand(3, 1, 4, 4), np.random.rand(3, 1, 1)
    from losses import mse, mse_prime

    network.train(net, mse, mse_prime, x, y, epochs=2, verbose=False)
    assert returned == [None] * 6  # nothing reads it, so it is not computed
    assert first.input_grad and first.layer.input_grad  # and the layer is as it was
    assert first.backward(np.ones((2, 2, 2)), 0.1).shape == (1, 4, 4)
    d = dense.Dense(2, 1)
    network.train([d], mse, mse_prime, np.ones((1, 2, 1)), np.ones((1, 1, 1)), 1, verbose=False)
    assert d.input_grad and d.backward(np.ones((1, 1)), 0.1).shape == (2, 1)


def test_bad_shapes_are_one_line_naming_the_layer(tutorial_modules):
    dense, _, convolutional, reshape = tutorial_modules
    with pytest.raises(
        ValueError, match=r"^Dense\(784, 40\): expected input of shape \(784, 1\), got \(1, 784\)$"
    ):
        dense.Dense(784, 40).forward(np.zeros((1, 784)))
    with pytest.raises(
        ValueError, match=r"expected output_gradient of shape \(40, 1\), got \(10, 1\)"
    ):
        d = dense.Dense(784, 40)
        d.forward(np.zeros((784, 1)))
        d.backward(np.zeros((10, 1)), 0.1)
    with pytest.raises(
        ValueError,
        match=r"^Convolutional\(\(1, 28, 28\), 3, 5\): expected input of shape "
        r"\(1, 28, 28\), got \(28, 28\)$",
    ):
        convolutional.Convolutional((1, 28, 28), 3, 5).forward(np.zeros((28, 28)))
    with pytest.raises(ValueError, match=r"Reshape: \(5, 26, 26\) and \(3380, 2\) hold different"):
        reshape.Reshape((5, 26, 26), (3380, 2))
