"""``tutorial/``: the video's API on ``nn``. Scripts written as the video writes them run unchanged
on it and print what the tutorial's own code prints; each layer's gradients are ``nn``'s; bad
shapes are one line naming the layer and both shapes.

The oracle is the tutorial's code itself, written out below as its flat modules (``ORACLE``):
the same scripts run on it and on ``tutorial/``, seeded alike, and their outputs are compared."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT

TUTORIAL = ROOT / "tutorial"

ORACLE = {  # the tutorial's modules, formula for formula
    "layer.py": """
        class Layer:
            def __init__(self):
                self.input = None
                self.output = None
        """,
    "dense.py": """
        import numpy as np
        from layer import Layer

        class Dense(Layer):
            def __init__(self, input_size, output_size):
                self.weights = np.random.randn(output_size, input_size)
                self.bias = np.random.randn(output_size, 1)

            def forward(self, input):
                self.input = input
                return np.dot(self.weights, self.input) + self.bias

            def backward(self, output_gradient, learning_rate):
                weights_gradient = np.dot(output_gradient, self.input.T)
                input_gradient = np.dot(self.weights.T, output_gradient)
                self.weights -= learning_rate * weights_gradient
                self.bias -= learning_rate * output_gradient
                return input_gradient
        """,
    "activation.py": """
        import numpy as np
        from layer import Layer

        class Activation(Layer):
            def __init__(self, activation, activation_prime):
                self.activation = activation
                self.activation_prime = activation_prime

            def forward(self, input):
                self.input = input
                return self.activation(self.input)

            def backward(self, output_gradient, learning_rate):
                return np.multiply(output_gradient, self.activation_prime(self.input))
        """,
    "activations.py": """
        import numpy as np
        from layer import Layer
        from activation import Activation

        class Tanh(Activation):
            def __init__(self):
                tanh = lambda x: np.tanh(x)
                tanh_prime = lambda x: 1 - np.tanh(x) ** 2
                super().__init__(tanh, tanh_prime)

        class Sigmoid(Activation):
            def __init__(self):
                def sigmoid(x):
                    return 1 / (1 + np.exp(-x))

                def sigmoid_prime(x):
                    s = sigmoid(x)
                    return s * (1 - s)

                super().__init__(sigmoid, sigmoid_prime)

        class Softmax(Layer):
            def forward(self, input):
                tmp = np.exp(input)
                self.output = tmp / np.sum(tmp)
                return self.output

            def backward(self, output_gradient, learning_rate):
                n = np.size(self.output)
                return np.dot((np.identity(n) - self.output.T) * self.output, output_gradient)
        """,
    "convolutional.py": """
        import numpy as np
        from scipy import signal
        from layer import Layer

        class Convolutional(Layer):
            def __init__(self, input_shape, kernel_size, depth):
                input_depth, input_height, input_width = input_shape
                self.depth = depth
                self.input_shape = input_shape
                self.input_depth = input_depth
                self.output_shape = (depth, input_height - kernel_size + 1, input_width - kernel_size + 1)
                self.kernels_shape = (depth, input_depth, kernel_size, kernel_size)
                self.kernels = np.random.randn(*self.kernels_shape)
                self.biases = np.random.randn(*self.output_shape)

            def forward(self, input):
                self.input = input
                self.output = np.copy(self.biases)
                for i in range(self.depth):
                    for j in range(self.input_depth):
                        self.output[i] += signal.correlate2d(self.input[j], self.kernels[i, j], "valid")
                return self.output

            def backward(self, output_gradient, learning_rate):
                kernels_gradient = np.zeros(self.kernels_shape)
                input_gradient = np.zeros(self.input_shape)
                for i in range(self.depth):
                    for j in range(self.input_depth):
                        kernels_gradient[i, j] = signal.correlate2d(self.input[j], output_gradient[i], "valid")
                        input_gradient[j] += signal.convolve2d(output_gradient[i], self.kernels[i, j], "full")
                self.kernels -= learning_rate * kernels_gradient
                self.biases -= learning_rate * output_gradient
                return input_gradient
        """,
    "reshape.py": """
        import numpy as np
        from layer import Layer

        class Reshape(Layer):
            def __init__(self, input_shape, output_shape):
                self.input_shape = input_shape
                self.output_shape = output_shape

            def forward(self, input):
                return np.reshape(input, self.output_shape)

            def backward(self, output_gradient, learning_rate):
                return np.reshape(output_gradient, self.input_shape)
        """,
    "losses.py": """
        import numpy as np

        def mse(y_true, y_pred):
            return np.mean(np.power(y_true - y_pred, 2))

        def mse_prime(y_true, y_pred):
            return 2 * (y_pred - y_true) / np.size(y_true)

        def binary_cross_entropy(y_true, y_pred):
            return np.mean(-y_true * np.log(y_pred) - (1 - y_true) * np.log(1 - y_pred))

        def binary_cross_entropy_prime(y_true, y_pred):
            return ((1 - y_true) / (1 - y_pred) - y_true / y_pred) / np.size(y_true)
        """,
    "network.py": """
        def predict(network, input):
            output = input
            for layer in network:
                output = layer.forward(output)
            return output

        def train(network, loss, loss_prime, x_train, y_train, epochs = 1000, learning_rate = 0.01, verbose = True):
            for e in range(epochs):
                error = 0
                for x, y in zip(x_train, y_train):
                    output = predict(network, x)
                    error += loss(y, output)
                    grad = loss_prime(y, output)
                    for layer in reversed(network):
                        grad = layer.backward(grad, learning_rate)
                error /= len(x_train)
                if verbose:
                    print(f"{e + 1}/{epochs}, error={error}")
        """,
}

# A learner's MNIST loader (the video uses keras.datasets.mnist; no network here): the IDX files.
LOAD = """
import gzip, os
import numpy as np

def read(name):
    path = os.path.join(os.environ["MNIST_MIRROR"], name)
    if os.path.exists(path + ".gz"):
        with gzip.open(path + ".gz") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()

def load(kind):
    prefix = "train" if kind == "train" else "t10k"
    x = np.frombuffer(read(f"{prefix}-images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(read(f"{prefix}-labels-idx1-ubyte"), np.uint8, offset=8)
    return x, y

def to_categorical(y, n=None):
    n = n or int(y.max()) + 1
    return np.eye(n)[y]
"""

SCRIPTS = {  # the video's three scripts, as written along it (data loading aside)
    "xor.py": """
        import numpy as np
        from dense import Dense
        from activations import Tanh
        from losses import mse, mse_prime
        from network import train, predict

        np.random.seed(0)
        X = np.reshape([[0, 0], [0, 1], [1, 0], [1, 1]], (4, 2, 1))
        Y = np.reshape([[0], [1], [1], [0]], (4, 1, 1))
        network = [Dense(2, 3), Tanh(), Dense(3, 1), Tanh()]
        train(network, mse, mse_prime, X, Y, epochs=10000, learning_rate=0.1, verbose=False)
        for x in X:
            print("pred:", predict(network, x)[0, 0])
        for x in np.linspace(0, 1, 5):
            for y in np.linspace(0, 1, 5):
                print("boundary:", x, y, predict(network, [[x], [y]])[0, 0])
        """,
    "mnist.py": """
        import numpy as np
        from dense import Dense
        from activations import Tanh
        from losses import mse, mse_prime
        from network import train, predict
        from load import load, to_categorical

        def preprocess_data(x, y, limit):
            x = x.reshape(x.shape[0], 28 * 28, 1)
            x = x.astype("float32") / 255
            y = to_categorical(y)
            y = y.reshape(y.shape[0], 10, 1)
            return x[:limit], y[:limit]

        np.random.seed(0)
        x_train, y_train = preprocess_data(*load("train"), 1000)
        x_test, y_test = preprocess_data(*load("test"), 20)
        network = [Dense(28 * 28, 40), Tanh(), Dense(40, 10), Tanh()]
        train(network, mse, mse_prime, x_train, y_train, epochs=10, learning_rate=0.1)
        for x, y in zip(x_test, y_test):
            output = predict(network, x)
            print("pred:", np.argmax(output), "\\ttrue:", np.argmax(y))
        """,
    "mnist_conv.py": """
        import numpy as np
        from dense import Dense
        from convolutional import Convolutional
        from reshape import Reshape
        from activations import Sigmoid
        from losses import binary_cross_entropy, binary_cross_entropy_prime
        from network import train, predict
        from load import load, to_categorical

        def preprocess_data(x, y, limit):
            zero_index = np.where(y == 0)[0][:limit]
            one_index = np.where(y == 1)[0][:limit]
            all_indices = np.hstack((zero_index, one_index))
            all_indices = np.random.permutation(all_indices)
            x, y = x[all_indices], y[all_indices]
            x = x.reshape(len(x), 1, 28, 28)
            x = x.astype("float32") / 255
            y = to_categorical(y)
            y = y.reshape(len(y), 2, 1)
            return x, y

        np.random.seed(0)
        x_train, y_train = preprocess_data(*load("train"), 100)
        x_test, y_test = preprocess_data(*load("test"), 100)
        network = [
            Convolutional((1, 28, 28), 3, 5),
            Sigmoid(),
            Reshape((5, 26, 26), (5 * 26 * 26, 1)),
            Dense(5 * 26 * 26, 100),
            Sigmoid(),
            Dense(100, 2),
            Sigmoid(),
        ]
        train(network, binary_cross_entropy, binary_cross_entropy_prime, x_train, y_train, epochs=20, learning_rate=0.1)
        right = 0
        for x, y in zip(x_test, y_test):
            output = predict(network, x)
            print(f"pred: {np.argmax(output)}, true: {np.argmax(y)}")
            right += np.argmax(output) == np.argmax(y)
        print("accuracy:", right / len(x_test))
        """,
}


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def run_script(script, library, folder, mnist_folder) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(library), str(folder)]),
        "MNIST_MIRROR": str(mnist_folder),
    }
    done = subprocess.run(
        [sys.executable, folder / script], capture_output=True, text=True, timeout=300, env=env,
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


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
    ref.backward(g.T)
    np.testing.assert_allclose(grad_x, np.dot(w.T, g), rtol=1e-15)
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
        match=r"^Convolutional\(\(1, 28, 28\), 3, 5\): expected input of shape \(1, 28, 28\), got \(28, 28\)$",
    ):
        convolutional.Convolutional((1, 28, 28), 3, 5).forward(np.zeros((28, 28)))
    with pytest.raises(ValueError, match=r"Reshape: \(5, 26, 26\) and \(3380, 2\) hold different"):
        reshape.Reshape((5, 26, 26), (3380, 2))
