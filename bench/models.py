"""The benchmark networks, each defined once (issue 5's four models on MNIST).

  A  784-40-10 Tanh (hidden and output), MSE
  B  784-128-10 ReLU, softmax cross-entropy
  C  Conv2D(1->5, 3x3) Sigmoid, Dense(3380, 100) Sigmoid, Dense(100, classes) Sigmoid, binary CE
  D  Conv2D(1->8, 3x3) ReLU, MaxPool2D(2), Dense(1352, 10), softmax cross-entropy

A and C are the original tutorial's nets; B and D are the small modern ones. ``bench_nn`` times
B and D against bare NumPy and A and C against the tutorial's per-sample code; ``bench_peers``
times all four against PyTorch and Keras.
"""

from __future__ import annotations

import numpy as np

import nn

NAMES = "ABCD"
LOSSES = {"A": "mse", "B": "cross_entropy", "C": "binary_cross_entropy", "D": "cross_entropy"}


def build(name: str, *, seed: int = 0, classes: int = 10, dtype=np.float32) -> nn.Sequential:
    """Model ``name`` (one of ``NAMES``); its weighted layers draw from seeds ``seed``,
    ``seed + 1``, ... in order. ``classes`` sets the output width (the tutorial's C has 2)."""
    seeds = iter(range(seed, seed + 3))

    def dense(n_in, n_out):
        return nn.Dense(n_in, n_out, rng=next(seeds), dtype=dtype)

    def conv(c_out):
        return nn.Conv2D(1, c_out, 3, rng=next(seeds), dtype=dtype)

    layers = {
        "A": lambda: [nn.Flatten(), dense(784, 40), nn.Tanh(), dense(40, classes), nn.Tanh()],
        "B": lambda: [nn.Flatten(), dense(784, 128), nn.ReLU(), dense(128, classes)],
        "C": lambda: [
            conv(5),
            nn.Sigmoid(),
            nn.Flatten(),
            dense(3380, 100),
            nn.Sigmoid(),
            dense(100, classes),
            nn.Sigmoid(),
        ],
        "D": lambda: [conv(8), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), dense(1352, classes)],
    }
    if name not in layers:
        raise ValueError(f"benchmark model must be one of {', '.join(NAMES)}, got {name!r}")
    return nn.Sequential(layers[name]())


def train_flops_per_sample(name: str) -> int:
    """Matmul FLOPs of one training step per sample of model ``name``."""
    from bench.common import matmul_macs, training_flops

    return training_flops(matmul_macs(build(name), (1, 28, 28)))
