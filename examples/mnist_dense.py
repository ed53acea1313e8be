"""The tutorial's dense MNIST example: 784-40-10 Tanh, MSE, SGD lr 0.1, batch size 1, trained on
the first 1,000 training images; accuracy on the full 10,000-image test set.

Run from the repository root: ``python examples/mnist_dense.py`` (reads MNIST as
``pipeline.idx.local_mnist_folder`` says).
"""

import nn
from pipeline.data import one_hot, scale
from pipeline.idx import load_mnist_split, local_mnist_folder


def load(n_train=1000):
    folder = local_mnist_folder()
    x, y = load_mnist_split(folder, "train")
    xt, yt = load_mnist_split(folder, "test")
    digits = list(range(10))
    return (scale(x[:n_train]), one_hot(y[:n_train], digits)), (scale(xt), one_hot(yt, digits))


def run(epochs=100, lr=0.1, seed=0, n_train=1000):
    """Train and return ``(model, test accuracy)``."""
    (x, y), (xt, yt) = load(n_train)
    model = nn.Sequential(
        [
            nn.Flatten(),
            nn.Dense(784, 40, rng=seed),
            nn.Tanh(),
            nn.Dense(40, 10, rng=seed + 1),
            nn.Tanh(),
        ]
    )
    nn.fit(model, x, y, loss="mse", optimizer=nn.SGD(lr), epochs=epochs, batch_size=1, rng=seed)
    return model, nn.evaluate(model, xt, yt, loss="mse")["accuracy"]


if __name__ == "__main__":
    _, acc = run()
    print(f"test accuracy: {acc:.4f}")
