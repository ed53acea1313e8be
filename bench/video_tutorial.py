"""The video's own code ("Neural Network from Scratch"), as text: its flat modules (``ORACLE``,
formula for formula), its three scripts as a learner writes them along it (``SCRIPTS``: XOR, MNIST
with a dense net, the conv net that tells 0s from 1s), and a loader of the MNIST files for them
(``LOAD``; the video uses ``keras.datasets.mnist``, and there is no network here). Written into a
folder with ``write``, a script runs with ``run_script`` on either library: the video's modules or
``tutorial/``. ``tests/test_tutorial_api.py`` compares their outputs; ``bench.bench_tutorial_api``
times them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
    """Each ``name: text`` of ``files`` as a file in ``folder`` (made if missing); ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


# Runs a script with network.train timed: its seconds go to stderr's last line.
_TIMED = """
import runpy, sys, time, network
train = network.train
def timed(*args, **kwargs):
    start = time.perf_counter()
    train(*args, **kwargs)
    print(time.perf_counter() - start, file=sys.stderr)
network.train = timed
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def run_script(script, library, folder, mnist_folder, *, timed=False):
    """Runs ``folder/script`` with ``library`` (the video's modules or ``tutorial/``) first on its
    path; its stdout's lines, and with ``timed`` also the seconds its ``train`` call took."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(library), str(folder)]),
        "MNIST_MIRROR": str(mnist_folder),
    }
    command = [sys.executable, "-c", _TIMED] if timed else [sys.executable]
    done = subprocess.run(
        [*command, folder / script], capture_output=True, text=True, timeout=300, env=env,
        cwd=folder,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{script} on {library} failed:\n{done.stderr}")
    lines = done.stdout.splitlines()
    return (lines, float(done.stderr.split()[-1])) if timed else lines
