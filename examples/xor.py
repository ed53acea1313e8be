"""The tutorial's XOR: Dense(2, 3) Tanh Dense(3, 1) Tanh, MSE, SGD lr 0.1, batch size 1."""

import numpy as np

import nn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)


def run(epochs=10_000, lr=0.1, seed=0):
    """Train and return ``(model, predictions)``."""
    model = nn.Sequential(
        [nn.Dense(2, 3, rng=seed), nn.Tanh(), nn.Dense(3, 1, rng=seed + 1), nn.Tanh()]
    )
    nn.fit(model, X, Y, loss="mse", optimizer=nn.SGD(lr), epochs=epochs, batch_size=1, rng=seed)
    return model, nn.predict(model, X)


if __name__ == "__main__":
    _, pred = run()
    for x, p in zip(X, pred):
        print(f"{x.astype(int).tolist()} -> {p[0]:.3f}")
