"""The tutorial's convolutional example: digits 0 and 1 only, Conv2D(1->5, 3x3) Sigmoid,
Reshape(3380), Dense(3380, 100) Sigmoid, Dense(100, 2) Sigmoid, binary cross-entropy, SGD lr 0.1,
batch size 1, 20 epochs on the first 100 zeros and 100 ones; accuracy on every test 0 and 1.

Run from the repository root: ``python examples/mnist_conv.py``.
"""

import numpy as np

import nn
from pipeline.data import one_hot, scale
from pipeline.idx import load_mnist_split, local_mnist_folder


def zeros_and_ones(images, labels, limit=None):
    idx = np.concatenate([np.flatnonzero(labels == d)[:limit] for d in (0, 1)])
    return scale(images[idx]), one_hot(labels[idx], [0, 1])


def run(epochs=20, lr=0.1, seed=0, per_class=100):
    """Train and return ``(model, test accuracy on all 0s and 1s)``."""
    folder = local_mnist_folder()
    x, y = zeros_and_ones(*load_mnist_split(folder, "train"), limit=per_class)
    xt, yt = zeros_and_ones(*load_mnist_split(folder, "test"))
    model = nn.Sequential(
        [
            nn.Conv2D(1, 5, 3, rng=seed),
            nn.Sigmoid(),
            nn.Reshape((5 * 26 * 26,)),
            nn.Dense(5 * 26 * 26, 100, rng=seed + 1),
            nn.Sigmoid(),
            nn.Dense(100, 2, rng=seed + 2),
            nn.Sigmoid(),
        ]
    )
    nn.fit(
        model,
        x,
        y,
        loss="binary_cross_entropy",
        optimizer=nn.SGD(lr),
        epochs=epochs,
        batch_size=1,
        rng=seed,
    )
    return model, nn.evaluate(model, xt, yt, loss="binary_cross_entropy")["accuracy"]


if __name__ == "__main__":
    _, acc = run()
    print(f"test accuracy on all 0s and 1s: {acc:.4f}")
