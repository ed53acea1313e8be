# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. One neuron, the chain rule, and XOR by hand
#
# A neuron takes inputs $x_1, \dots, x_n$, weighs them, adds a bias and squashes the sum:
#
# $$z = w \cdot x + b, \qquad y = \tanh(z).$$
#
# Training asks one question over and over: *if I nudge a weight, how does the error change?*
# That is a derivative, and the chain rule computes it one step at a time, backwards:
#
# $$\frac{\partial E}{\partial w_i} = \frac{\partial E}{\partial y}\,
#   \frac{\partial y}{\partial z}\, \frac{\partial z}{\partial w_i}
#   = \frac{\partial E}{\partial y}\,(1 - y^2)\, x_i .$$
#
# We write that by hand, check it against the definition of a derivative (a finite
# difference), then build the network the video builds for XOR, by hand, and then with `nn`.
# Run this file as `python docs/tutorials/01_one_neuron.py`, or open it as a notebook.

# %%
import numpy as np

import nn
from nn.gradcheck import numerical_gradient, relative_error

rng = np.random.default_rng(0)

# %% [markdown]
# ## One neuron, forward and backward
#
# With the squared error $E = (y - t)^2$ against a target $t$, $\partial E / \partial y =
# 2 (y - t)$. Each factor of the chain rule is one line:

# %%
x = np.array([0.5, -1.0, 2.0])
t = 0.3
w = rng.normal(size=3)
b = 0.1


def error(w, b):
    y = np.tanh(w @ x + b)
    return (y - t) ** 2


z = w @ x + b
y = np.tanh(z)
dE_dy = 2 * (y - t)
dy_dz = 1 - y**2  # tanh' = 1 - tanh^2
dE_dz = dE_dy * dy_dz
dE_dw = dE_dz * x  # dz/dw_i = x_i
dE_db = dE_dz  # dz/db = 1
print("dE/dw by the chain rule:", dE_dw, " dE/db:", dE_db)

# %% [markdown]
# ## Checked by the definition of a derivative
#
# $\frac{\partial E}{\partial w_i} \approx \frac{E(w + h e_i) - E(w - h e_i)}{2h}$ for a small
# $h$: the central difference, accurate to $O(h^2)$. `nn.gradcheck.numerical_gradient` nudges
# every element of an array in turn.

# %%
numeric_w = numerical_gradient(lambda: error(w, b), w)
numeric_b = (error(w, b + 1e-6) - error(w, b - 1e-6)) / 2e-6
print("by finite differences:   ", numeric_w, " dE/db:", numeric_b)
assert relative_error(dE_dw, numeric_w) < 1e-8
assert abs(dE_db - numeric_b) < 1e-8

# %% [markdown]
# ## XOR: why one neuron is not enough, and two layers are
#
# XOR is 1 when exactly one input is 1. No single line separates $(0,1), (1,0)$ from
# $(0,0), (1,1)$, so one neuron cannot do it; a hidden layer of three neurons can. The
# video's network: `Dense(2, 3), Tanh, Dense(3, 1), Tanh`, mean squared error, plain gradient
# descent with a learning rate of 0.1, one sample at a time. Layer by layer, with a batch of
# rows `X` (4, 2) as `nn` lays data out:
#
# - forward: $H = \tanh(X W_1 + b_1)$, $Y = \tanh(H W_2 + b_2)$;
# - backward, from $G_Y = \partial E / \partial Y$: $G_{Z_2} = G_Y (1 - Y^2)$,
#   $\partial E / \partial W_2 = H^T G_{Z_2}$, $\partial E / \partial b_2 = \sum_{rows} G_{Z_2}$,
#   $G_H = G_{Z_2} W_2^T$, and the same again for the first layer.

# %%
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
T = np.array([[0], [1], [1], [0]], dtype=np.float64)


def forward(params, X):
    W1, b1, W2, b2 = params
    H = np.tanh(X @ W1 + b1)
    Y = np.tanh(H @ W2 + b2)
    return H, Y


def backward(params, X, T):
    """The gradients of E = mean((Y - T)^2), by the chain rule, layer by layer."""
    W1, b1, W2, b2 = params
    H, Y = forward(params, X)
    G_Y = 2 * (Y - T) / Y.size  # d mean((Y - T)^2) / dY
    G_Z2 = G_Y * (1 - Y**2)
    G_W2, G_b2 = H.T @ G_Z2, G_Z2.sum(axis=0)
    G_H = G_Z2 @ W2.T
    G_Z1 = G_H * (1 - H**2)
    G_W1, G_b1 = X.T @ G_Z1, G_Z1.sum(axis=0)
    return [G_W1, G_b1, G_W2, G_b2]


params = [rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=(3, 1)), rng.normal(size=1)]

# %% [markdown]
# Before training on it, check the backward against finite differences of the same error,
# for every weight and bias:

# %%
grads = backward(params, X, T)
for name, p, g in zip(["W1", "b1", "W2", "b2"], params, grads, strict=True):
    numeric = numerical_gradient(lambda: float(np.mean((forward(params, X)[1] - T) ** 2)), p)
    print(f"{name}: relative error {relative_error(g, numeric):.1e}")
    assert relative_error(g, numeric) < 1e-7

# %% [markdown]
# Now train: one sample at a time, as the video does (`p -= lr * grad` after each sample).

# %%
for _epoch in range(3000):
    for i in range(4):
        for p, g in zip(params, backward(params, X[i : i + 1], T[i : i + 1]), strict=True):
            p -= 0.1 * g
_, Y = forward(params, X)
print("XOR learned by hand:", Y.ravel().round(3))
assert np.array_equal(Y.ravel() > 0.5, [False, True, True, False])

# %% [markdown]
# ## The same network in `nn`
#
# `nn` has these layers, each with the `forward` and `backward` written above (`nn.Dense`:
# `x @ weight + bias`, `nn.Tanh`). The layers only *compute* gradients; an optimizer uses
# them. Given our weights, `nn`'s backward gives exactly our gradients:

# %%
model = nn.Sequential([nn.Dense(2, 3, dtype=np.float64), nn.Tanh(),
                       nn.Dense(3, 1, dtype=np.float64), nn.Tanh()])  # fmt: skip
params = [rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=(3, 1)), rng.normal(size=1)]
for key, p in zip(["0.weight", "0.bias", "2.weight", "2.bias"], params, strict=True):
    model.params[key][...] = p
Y = model.forward(X)
model.backward(nn.losses.mse_prime(T, Y))
ours = backward(params, X, T)
for key, g in zip(["0.weight", "0.bias", "2.weight", "2.bias"], ours, strict=True):
    np.testing.assert_allclose(model.grads[key], g, rtol=1e-12, atol=1e-15)
print("nn's gradients equal the hand-derived ones")

# %% [markdown]
# And `nn.fit` runs the loop: shuffle, forward, loss, backward, optimizer step.

# %%
model = nn.Sequential([nn.Dense(2, 3, rng=1), nn.Tanh(), nn.Dense(3, 1, rng=2), nn.Tanh()])
nn.fit(model, X.astype(np.float32), T.astype(np.float32), loss="mse", optimizer=nn.SGD(0.1),
       epochs=3000, batch_size=1, rng=0)  # fmt: skip
Y = nn.predict(model, X.astype(np.float32))
print("XOR learned by nn.fit:", Y.ravel().round(3))
assert np.array_equal(Y.ravel() > 0.5, [False, True, True, False])
