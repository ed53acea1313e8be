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
# # 6. Looking inside the network
#
# A trained network is not a black box when you own its backward pass. `nn.explain` keeps
# every layer's output for an image and asks the layers' own `backward` *which pixels raise a
# class's score*. The page (`make serve`, then "Look inside") and `nn-mnist explain` show the
# same numbers for the pipeline's models; here we compute them for a small conv net and check
# each one.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nn
from nn import explain
from nn.gradcheck import relative_error
from pipeline.idx import load_mnist_split, local_mnist_folder

images, labels = load_mnist_split(local_mnist_folder(), "train")
x = images[:10000, None].astype(np.float32) / 255
y = np.eye(10, dtype=np.float32)[labels[:10000]]
model = nn.Sequential([
    nn.Conv2D(1, 8, 5, rng=0), nn.MaxPool2D(2), nn.ReLU(),
    nn.Conv2D(8, 16, 5, rng=1), nn.MaxPool2D(2), nn.ReLU(),
    nn.Flatten(), nn.Dense(256, 10, rng=2),
])  # fmt: skip
nn.fit(model, x, y, loss="cross_entropy", optimizer=nn.Adam(3e-3), epochs=2, batch_size=64, rng=0)
model.eval()
test_images, test_labels = load_mnist_split(local_mnist_folder(), "test")
digit = test_images[:1, None].astype(np.float32) / 255  # a 7
print("label", test_labels[0], "predicted", int(nn.predict(model, digit).argmax()))

# %% [markdown]
# ## Every layer's output
#
# The first conv layer's eight maps are the image seen through eight filters; pooling halves
# them; the second layer combines them into sixteen; the last layer's ten outputs are the
# logits. `layer_outputs` is the forward pass, kept.

# %%
outputs = explain.layer_outputs(model, digit)
for layer, out in zip(model.layers, outputs, strict=True):
    print(f"{type(layer).__name__:10s} -> {out.shape[1:]}")
np.testing.assert_array_equal(outputs[-1], nn.predict(model, digit))

# %% [markdown]
# ## Saliency: the gradient of a logit with respect to the pixels
#
# Start the backward pass with 1 at class 7's logit and 0 elsewhere: what comes out at the
# bottom is $\partial\, \mathrm{logit}_7 / \partial\, \mathrm{pixel}$ for every pixel. Check it
# the way lesson 1 did, by central differences (in float64). One caution: on a blank background
# every conv output is equal, so max-pooling compares equal values, and a nudge to a background
# pixel flips which one wins: there the logit has no derivative. A dither far below one grey
# level breaks those ties.

# %%
target = 7
model64 = nn.Sequential.from_config(
    {"layers": [{**s, "config": {**s["config"], "dtype": "float64"}} if "dtype" in s["config"]
                else s for s in model.config()["layers"]]}
)  # fmt: skip
for key, value in model.params.items():
    model64.params[key][...] = value
model64.eval()
x64 = digit.astype(np.float64) + np.random.default_rng(0).uniform(0, 1e-3, digit.shape)
saliency = explain.saliency(model64, x64, target)
pixels = np.random.default_rng(1).choice(784, 40, replace=False)
numeric = []
for p in pixels:
    plus, minus = x64.copy(), x64.copy()
    plus.reshape(-1)[p] += 1e-6
    minus.reshape(-1)[p] -= 1e-6
    numeric.append(
        (nn.predict(model64, plus)[0, target] - nn.predict(model64, minus)[0, target]) / 2e-6
    )
err = relative_error(saliency.reshape(-1)[pixels], np.array(numeric))
print(f"saliency against central differences on 40 pixels: relative error {err:.1e}")
assert err < 1e-6

# %% [markdown]
# ## Integrated gradients: attributions that add up
#
# Saliency is local. Integrated gradients average the gradient along the straight path from a
# black image to the digit and multiply by the pixel: the attributions then sum to
# $\mathrm{logit}(\text{digit}) - \mathrm{logit}(\text{black})$ (completeness), up to the
# error of the integration rule (64 midpoint steps, one batch).

# %%
attributions, completeness = explain.integrated_gradients(model, digit, target, steps=64)
print(f"sum {completeness.sum:.4f}, logit difference {completeness.expected:.4f}, "
      f"gap {100 * completeness.relative_gap:.2f}%")  # fmt: skip
assert completeness.relative_gap < 0.01

# %% [markdown]
# ## One unit's arithmetic
#
# Any unit is a weighted sum plus a bias, then an activation. `explain.unit` lists the largest
# weight x input terms of one unit of the last layer, with the forward pass's real numbers.

# %%
unit = explain.unit(model, digit, 7, target, top=5)
for term in unit["terms"]:
    print(f"input {term['input']}: {term['weight']:+.3f} x {term['input_value']:.3f} = "
          f"{term['product']:+.3f}")  # fmt: skip
print(f"+ {unit['count'] - 5} other terms {unit['rest']:+.3f} + bias {unit['bias']:+.3f} "
      f"= {unit['pre_activation']:.4f} (the layer's output: {unit['output']:.4f})")  # fmt: skip
total = sum(t["product"] for t in unit["terms"]) + unit["rest"] + unit["bias"]
assert abs(total - unit["pre_activation"]) < 1e-9
assert abs(unit["pre_activation"] - outputs[-1][0, target]) < 1e-4

# %% [markdown]
# ## Is the explanation about *this* network?
#
# An explanation that would look the same for random weights explains nothing (Adebayo et al.,
# 2018). Re-draw the weights and compare the saliency maps' rankings of the pixels over 100
# digits: for a trained network they should barely correlate.

# %%
from scipy.stats import spearmanr  # noqa: E402

random = nn.Sequential.from_config(model.config())
rng = np.random.default_rng(123)
for layer in random.layers:
    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters(rng)
random.eval()
batch = test_images[:100, None].astype(np.float32) / 255
targets = nn.predict(model, batch).argmax(axis=1)
ours, theirs = explain.saliency(model, batch, targets), explain.saliency(random, batch, targets)
rho = np.median([spearmanr(a.ravel(), b.ravel()).statistic for a, b in zip(ours, theirs)])
print(f"median Spearman correlation, trained against re-drawn weights: {rho:.3f}")
assert rho < 0.5

# %%
fig = plt.figure(figsize=(9, 2.4), layout="constrained")
axes = fig.subplots(1, 4)
cam = explain.grad_cam(model, digit, target)[0]
panels = [
    (digit[0, 0], "gray", "the digit"),
    (saliency[0, 0], "bwr", "saliency"),
    (attributions[0, 0], "bwr", "integrated gradients"),
    (cam, "inferno", "Grad-CAM"),
]
for ax, (img, cmap, title) in zip(axes, panels, strict=True):
    lim = np.abs(img).max()
    ax.imshow(img, cmap=cmap, **({"vmin": -lim, "vmax": lim} if cmap == "bwr" else {}))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()  # in a notebook, the figure; run as a script, a window (none without a display)
