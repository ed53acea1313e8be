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
# # 2. From one sample at a time to batches
#
# The video trains one sample at a time: a column vector in, a column vector out, and each
# layer's `backward(output_gradient, learning_rate)` moves its own weights. That code runs here
# unchanged: `tutorial/` holds the video's modules on top of `nn` (see
# `docs/tutorial-api.md`). This lesson trains the video's MNIST network with it, then the same
# network the way `nn` trains, on batches, and measures what changes.
#
# Run it as `python docs/tutorials/02_samples_to_batches.py` from the repository root.

# %%
import sys
import time
from pathlib import Path

import numpy as np

# The repository: above this notebook's folder, or above the file when run as a script.
places = [Path.cwd(), *Path.cwd().parents]
if "__file__" in globals():
    places.append(Path(__file__).resolve().parents[2])
ROOT = next(p for p in places if (p / "tutorial" / "dense.py").is_file())
sys.path.insert(0, str(ROOT / "tutorial"))  # the video's flat modules: `from dense import Dense`

from activations import Tanh
from dense import Dense
from losses import mse, mse_prime
from network import predict, train

import nn
from pipeline.idx import load_mnist_split, local_mnist_folder

# %% [markdown]
# ## The data: real MNIST, 2,000 images to train on
#
# `local_mnist_folder` finds the files: `data/raw` once the pipeline has run, else the folder
# in `MNIST_MIRROR`, else `../shared/data/mnist`.

# %%
folder = local_mnist_folder(ROOT)
images, labels = load_mnist_split(folder, "train")
test_images, test_labels = load_mnist_split(folder, "test")
n = 2000
x = images[:n].reshape(n, 784).astype(np.float64) / 255  # rows: nn's layout
y = np.eye(10)[labels[:n]]
x_test = test_images[:2000].reshape(-1, 784).astype(np.float64) / 255
y_test = test_labels[:2000]

# %% [markdown]
# ## The video's way: one column at a time
#
# A sample is a column `(784, 1)`, so the data set is `(n, 784, 1)`: that reshape is the only
# change from rows. Three epochs, timed.

# %%
np.random.seed(0)
network = [Dense(784, 40), Tanh(), Dense(40, 10), Tanh()]
start = time.perf_counter()
train(network, mse, mse_prime, x[:, :, None], y[:, :, None], epochs=3, learning_rate=0.1)
per_sample = time.perf_counter() - start
predicted = [np.argmax(predict(network, column[:, None])) for column in x_test]
accuracy_per_sample = float(np.mean(np.array(predicted) == y_test))
print(f"one at a time: {per_sample:.2f} s, test accuracy {accuracy_per_sample:.3f}")

# %% [markdown]
# Not much learned in three epochs. Look at the first layer: the video draws its weights from a
# standard normal, and 784 inputs add up. Its pre-activations are large, `tanh` sits at
# $\pm 1$ where its slope $1 - \tanh^2$ is about 0, and almost no gradient gets through.
# `nn`'s default draws from $U(-k, k)$ with $k = 1/\sqrt{784}$ (PyTorch's), keeping them near 1:

# %%
np.random.seed(0)
video_first = Dense(784, 40)
z_video = x[:500] @ video_first.weights.T + video_first.bias[:, 0]
z_nn = nn.Dense(784, 40, rng=0, dtype=np.float64).forward(x[:500])
for name, z in [("video's N(0, 1)", z_video), ("nn's U(-1/28, 1/28)", z_nn)]:
    saturated = float(np.mean(np.abs(np.tanh(z)) > 0.99))
    print(f"{name:20s}: pre-activation std {z.std():5.2f}, tanh saturated {saturated:.0%}")
assert np.mean(np.abs(np.tanh(z_video)) > 0.99) > 5 * np.mean(np.abs(np.tanh(z_nn)) > 0.99)

# %% [markdown]
# ## The same network in `nn`, and the same arithmetic
#
# `nn` lays a sample out as a **row** and stacks many rows into a batch `(N, 784)`. A Dense
# layer computes `x @ weight + bias` with `weight` `(784, 40)`: the video's `W` transposed.
# `backward(grad_y)` only computes gradients; an **optimizer** moves the weights. With batch
# size 1 and plain SGD it is the video's algorithm exactly: start from the same weights and the
# two agree to rounding.

# %%
np.random.seed(0)
video = [Dense(784, 40), Tanh(), Dense(40, 10), Tanh()]
model = nn.Sequential([nn.Dense(784, 40, dtype=np.float64), nn.Tanh(),
                       nn.Dense(40, 10, dtype=np.float64), nn.Tanh()])  # fmt: skip
for i in (0, 2):  # the video's W (out, in) is nn's weight.T
    model.layers[i].params["weight"][...] = video[i].weights.T
    model.layers[i].params["bias"][...] = video[i].bias[:, 0]
train(video, mse, mse_prime, x[:100, :, None], y[:100, :, None], epochs=1, learning_rate=0.1,
      verbose=False)  # fmt: skip
optimizer = nn.SGD(0.1)
for i in range(100):  # the loop by hand: forward, loss gradient, backward, step
    out = model.forward(x[i : i + 1])
    model.backward(nn.losses.mse_prime(y[i : i + 1], out))
    optimizer.step(model)
gap = np.abs(model.layers[0].params["weight"] - video[0].weights.T).max()
print(f"after 100 samples, largest weight difference: {gap:.1e}")
assert gap < 1e-12

# %% [markdown]
# ## Batches
#
# A batch of $B$ rows goes through each layer in one matrix product, and the step uses the
# *mean* gradient over the batch (the loss is a mean over the batch). Fewer, larger steps: a
# larger learning rate compensates. `nn.fit` runs the whole loop: shuffle, slice batches,
# forward, loss, backward, step.

# %%
results = {}
for batch_size, lr in [(1, 0.1), (32, 1.0)]:
    model = nn.Sequential([nn.Dense(784, 40, rng=0), nn.Tanh(), nn.Dense(40, 10, rng=1), nn.Tanh()])
    start = time.perf_counter()
    nn.fit(model, x.astype(np.float32), y.astype(np.float32), loss="mse", optimizer=nn.SGD(lr),
           epochs=3, batch_size=batch_size, rng=0)  # fmt: skip
    seconds = time.perf_counter() - start
    acc = float(np.mean(nn.predict(model, x_test.astype(np.float32)).argmax(1) == y_test))
    results[batch_size] = (seconds, acc)
    print(f"nn.fit, batch {batch_size:2d}: {seconds:.2f} s, test accuracy {acc:.3f}")

# %% [markdown]
# What the numbers say (they are printed above, and checked below):
#
# - one sample at a time, `nn.fit` runs the video's algorithm at about its speed, and with
#   `nn`'s initialisation it learns in three epochs what the video's does not;
# - batches of 32 run the same three epochs many times faster, because one matrix product over
#   32 rows costs far less than 32 products over one row; with 32 times fewer steps they learn
#   a little less in three epochs.

# %%
speedup = per_sample / results[32][0]
print(f"batches of 32 are {speedup:.0f}x faster than one column at a time")
assert speedup > 5
assert results[1][1] > 0.8 and results[32][1] > 0.7 and accuracy_per_sample < results[1][1]
