"""A numerics fingerprint: the SHA-256 of a fixed float32 computation through training's kernels.

Two processes that compute the same fingerprint round every operation of training alike (the same
BLAS kernel, thread split and SIMD loops), so they train the same bits; where the fingerprints
differ, results will too. It is cheap (tens of milliseconds) and depends on nothing but the
libraries as loaded: no data, no files, no clock.
"""

from __future__ import annotations

import hashlib

import numpy as np

from nn import losses
from nn.conv import Conv2D, MaxPool2D
from nn.layers import Dense, Flatten, ReLU, Sigmoid, Tanh
from nn.optim import Adam
from nn.sequential import Sequential

__all__ = ["fingerprint", "fingerprint_arrays"]


def fingerprint_arrays(matmul_shapes, seed: int = 0) -> list[np.ndarray]:
    """The arrays :func:`fingerprint` hashes: float32 matmuls of the caller's ``(m, k, n)`` shapes
    (the ones its training runs: BLAS splits each shape's sums its own way), then one forward,
    backward and Adam step of a LeNet-like conv net on 28x28 images (conv, ReLU, max-pool, dense,
    cross-entropy), and Tanh/Sigmoid on its logits."""
    rng = np.random.default_rng(seed)
    out = []
    for m, k, n in matmul_shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out.append(a @ b)
    model = Sequential(
        [
            Conv2D(1, 16, 5, rng=rng),
            ReLU(),
            MaxPool2D(2),
            Conv2D(16, 32, 5, rng=rng),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(512, 128, rng=rng),
            ReLU(),
            Dense(128, 10, rng=rng),
        ]
    )
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
    logits = model.forward(x)
    out += [logits, np.float32(losses.cross_entropy(y, logits)).reshape(1)]
    model.backward(losses.cross_entropy_prime(y, logits))
    out += [model.grads[k] for k in sorted(model.grads)]
    Adam(1e-3).step(model)
    out += [model.params[k] for k in sorted(model.params)]
    out += [Tanh().forward(logits), Sigmoid().forward(logits)]
    return out


def fingerprint(matmul_shapes, seed: int = 0) -> str:
    """Hex SHA-256 of :func:`fingerprint_arrays` (little-endian float32 bytes, with shapes)."""
    h = hashlib.sha256()
    for a in fingerprint_arrays(matmul_shapes, seed):
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return h.hexdigest()
