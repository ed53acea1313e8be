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
# # 4. Convolution: forward, backward, and how it is made fast
#
# A conv layer slides a small kernel $K$ over the image $X$ and takes a weighted sum at every
# position: the **cross-correlation**
#
# $$Y[i, j] = b + \sum_{a, c} X[i + a, j + c]\, K[a, c].$$
#
# Deep-learning libraries call it "convolution"; the mathematical convolution flips the kernel
# first ($X * K = X \star \mathrm{rot180}(K)$). The flip matters in the backward pass, where both
# appear. This lesson writes each step plainly, checks it against SciPy, then shows `nn`'s fast
# version (im2col) computing the same numbers.

# %%
import numpy as np
from scipy import signal

import nn
from nn.gradcheck import numerical_gradient, relative_error
from nn.reference import conv2d_naive

rng = np.random.default_rng(0)
X = rng.normal(size=(6, 7))
K = rng.normal(size=(3, 3))

# %% [markdown]
# ## Cross-correlation and convolution

# %%
Y = np.array([[np.sum(X[i : i + 3, j : j + 3] * K) for j in range(5)] for i in range(4)])
np.testing.assert_allclose(Y, signal.correlate2d(X, K, mode="valid"), rtol=1e-12)
np.testing.assert_allclose(Y, signal.convolve2d(X, K[::-1, ::-1], mode="valid"), rtol=1e-12)
print("valid cross-correlation: output", Y.shape, "= (6 - 3 + 1, 7 - 3 + 1)")

# %% [markdown]
# ## The backward pass
#
# Given $G = \partial E / \partial Y$, each kernel weight $K[a, c]$ touched every output
# through $X[i + a, j + c]$, and each input pixel touched the outputs whose window covers it:
#
# $$\frac{\partial E}{\partial K} = X \star G \;(\text{valid}), \qquad
#   \frac{\partial E}{\partial X} = G * K \;(\text{full convolution}), \qquad
#   \frac{\partial E}{\partial b} = \sum G .$$

# %%
G = rng.normal(size=Y.shape)
dK = signal.correlate2d(X, G, mode="valid")
dX = signal.convolve2d(G, K, mode="full")


def loss():  # E = sum(Y * G): its gradient with respect to Y is G
    return float(np.sum(signal.correlate2d(X, K, mode="valid") * G))


assert relative_error(dK, numerical_gradient(loss, K)) < 1e-8
assert relative_error(dX, numerical_gradient(loss, X)) < 1e-8
print("dE/dK and dE/dX agree with central differences")

# %% [markdown]
# ## `nn.Conv2D`: many images, many channels, one matrix product
#
# Loops over positions are slow in Python. **im2col** copies every window into a column of a
# matrix, `(C * kh * kw, positions)`; then all outputs of all filters are one product with the
# filters laid out as rows, `(out_channels, C * kh * kw)`. For our single-channel example:

# %%
cols = np.stack([X[i : i + 3, j : j + 3].ravel() for i in range(4) for j in range(5)], axis=1)
print("im2col matrix:", cols.shape, "= (1 * 3 * 3, 4 * 5 positions)")
np.testing.assert_allclose((K.ravel() @ cols).reshape(4, 5), Y, rtol=1e-12)

# %% [markdown]
# `nn.Conv2D` does exactly this for a batch `(N, C, H, W)` (with every window copied in one call;
# see `nn/conv.py`), and `nn.reference.conv2d_naive` keeps the plain loops as the test oracle.
# Its backward uses the same matrix: `dK = G @ cols.T`, and `dX` scatters `K.T @ G` back.

# %%
layer = nn.Conv2D(2, 3, 3, rng=0, dtype=np.float64)
x = rng.normal(size=(4, 2, 8, 8))
y = layer.forward(x)
w, b = layer.params["weight"], layer.params["bias"]
np.testing.assert_allclose(y, conv2d_naive(x, w, b), rtol=1e-12)
g = rng.normal(size=y.shape)
gx = layer.backward(g)
for o in range(3):
    for c in range(2):
        expected = sum(signal.correlate2d(x[n, c], g[n, o], mode="valid") for n in range(4))
        np.testing.assert_allclose(layer.grads["weight"][o, c], expected, rtol=1e-11)
for n in range(4):
    for c in range(2):
        expected = sum(signal.convolve2d(g[n, o], w[o, c], mode="full") for o in range(3))
        np.testing.assert_allclose(gx[n, c], expected, rtol=1e-11)
np.testing.assert_allclose(layer.grads["bias"], g.sum(axis=(0, 2, 3)), rtol=1e-12)
print("nn.Conv2D: forward, weight, bias and input gradients equal SciPy's, channel by channel")

# %% [markdown]
# ## What a conv net learns
#
# A small conv net on 10,000 real digits, three epochs: the first layer's eight filters become
# stroke detectors, edges at several angles.

# %%
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.idx import load_mnist_split, local_mnist_folder  # noqa: E402

images, labels = load_mnist_split(local_mnist_folder(), "train")
test_images, test_labels = load_mnist_split(local_mnist_folder(), "test")
xs = images[:10000, None].astype(np.float32) / 255
ys = np.eye(10, dtype=np.float32)[labels[:10000]]
net = nn.Sequential([
    nn.Conv2D(1, 8, 5, rng=0), nn.MaxPool2D(2), nn.ReLU(),
    nn.Flatten(), nn.Dense(8 * 12 * 12, 10, rng=1),
])  # fmt: skip
nn.fit(net, xs, ys, loss="cross_entropy", optimizer=nn.Adam(3e-3), epochs=3, batch_size=64, rng=0)
xt = test_images[:2000, None].astype(np.float32) / 255
accuracy = float(np.mean(nn.predict(net, xt).argmax(axis=1) == test_labels[:2000]))
print(f"test accuracy on 2,000 digits: {accuracy:.3f}")
assert accuracy > 0.92

fig = plt.figure(figsize=(8, 1.3), layout="constrained")
filters = net.layers[0].params["weight"][:, 0]
for ax, f in zip(fig.subplots(1, 8), filters, strict=True):
    lim = np.abs(f).max()
    ax.imshow(f, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.axis("off")
plt.show()  # in a notebook, the figure; run as a script, a window (none without a display)
