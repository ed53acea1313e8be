"""Look inside a trained model: every layer's output, and the gradients of a class's output with
respect to the input, computed by the layers' own ``backward``.

For a model ``f`` (an ``nn.Sequential``), an input ``x`` and a class ``t``:

- **saliency**: ``S = d f_t / d x``, the gradient the backward pass returns for an output gradient
  that is 1 at class ``t`` and 0 elsewhere (Simonyan et al., 2013);
- **gradient x input**: ``S * x``;
- **integrated gradients** from a baseline ``b`` (a black image by default; Sundararajan et al.,
  2017): ``IG = (x - b) * integral_0^1 d f_t(b + a (x - b)) / d x da``, the integral taken by the
  midpoint rule over ``steps`` points, all in one batch. Completeness says ``sum(IG) = f_t(x) -
  f_t(b)``; the gap between the two measures the rule's error;
- **Grad-CAM** (Selvaraju et al., 2017) on a conv layer's output ``A`` ``(K, h, w)``:
  ``relu(sum_k w_k A_k)`` with ``w_k`` the mean over positions of ``d f_t / d A_k``, resized to the
  input's size;
- **a unit's arithmetic**: the weight x input terms, the bias and what follows (BatchNorm's affine,
  the activation) for one output of a Dense or Conv2D layer, with the forward pass's own numbers.

Everything runs in evaluation mode (Dropout off, BatchNorm as its affine) and explaining never
changes a model: its parameters and running statistics are not written, and its ``grads``,
modes and ``input_grad`` flags are restored byte for byte (:func:`inspecting`).
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from nn.conv import Conv2D, MaxPool2D
from nn.layers import Dense, Flatten, Layer, ReLU, Sigmoid, Softmax, Tanh
from nn.norm import BatchNorm, Dropout

__all__ = [
    "inspecting",
    "layer_outputs",
    "gradients",
    "saliency",
    "gradient_x_input",
    "integrated_gradients",
    "Completeness",
    "grad_cam",
    "grad_cam_layer",
    "unit",
]

ACTIVATIONS = (ReLU, Sigmoid, Tanh, Softmax)


def _layers(model: Layer) -> list[Layer]:
    return list(model.layers) if hasattr(model, "layers") else [model]


@contextlib.contextmanager
def inspecting(model: Layer):
    """Inside the block the model is in evaluation mode with every input gradient on; after it,
    each layer's mode, ``input_grad`` flag and ``grads`` arrays are as they were (the arrays
    themselves, refilled with their old bytes). Parameters and buffers are never written by an
    evaluation-mode forward and backward."""
    layers = _layers(model)
    missing = object()
    saved = [
        (
            layer,
            layer.training,
            layer.__dict__.get("input_grad", missing),
            {k: g.copy() for k, g in layer.grads.items()},
        )
        for layer in layers
    ]
    mode = model.training
    try:
        model.training = False
        for layer in layers:
            layer.training = False
            layer.input_grad = True
        yield layers
    finally:
        model.training = mode
        for layer, training, input_grad, grads in saved:
            layer.training = training
            if input_grad is missing:
                layer.__dict__.pop("input_grad", None)
            else:
                layer.input_grad = input_grad
            for k, g in grads.items():
                np.copyto(layer.grads[k], g)


def _forward(layers, x) -> list[np.ndarray]:
    outputs = []
    for layer in layers:
        x = layer.forward(x)
        outputs.append(x)
    return outputs


def layer_outputs(model: Layer, x: np.ndarray) -> list[np.ndarray]:
    """Each layer's output for ``x`` in evaluation mode, in order (the last is the model's output,
    as ``nn.predict`` gives it).

    Shape:
        x: ``(N, ...)`` -> a list with one ``(N, ...)`` array per layer.
    """
    with inspecting(model) as layers:
        return [np.ascontiguousarray(y) for y in _forward(layers, x)]


def _targets(target, n: int, k: int) -> np.ndarray:
    t = np.broadcast_to(np.asarray(target), (n,))
    if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= k:
        raise ValueError(f"target must be class indices in [0, {k}), got {target!r}")
    return t


def gradients(model: Layer, x: np.ndarray, target) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(outputs, grads)`` for the output of class ``target`` (an int, one per sample, or None:
    each sample's largest output, its predicted class):
    ``outputs[i]`` is layer i's output and ``grads[i + 1]`` the gradient of ``f_target`` with
    respect to it; ``grads[0]`` is the gradient with respect to ``x`` (the saliency). Each sample's
    gradients are its own (layers act on samples independently in evaluation mode).

    Shape:
        x: ``(N, ...)``; ``target``: int, ``(N,)`` or None.
    """
    with inspecting(model) as layers:
        outputs = _forward(layers, x)
        y = outputs[-1]
        if y.ndim != 2:
            raise ValueError(f"the model's output must be (N, classes), got {tuple(y.shape)}")
        if target is None:
            target = y.argmax(axis=1)
        g = np.zeros_like(y)
        g[np.arange(len(y)), _targets(target, len(y), y.shape[1])] = 1  # d f_t / d y
        grads = [g]
        for layer in reversed(layers):
            g = layer.backward(g)
            grads.append(g)
        grads.reverse()
        return [np.ascontiguousarray(o) for o in outputs], [np.ascontiguousarray(g) for g in grads]


def saliency(model: Layer, x: np.ndarray, target) -> np.ndarray:
    """``d f_target / d x`` for each sample of ``x`` (same shape as ``x``).

    For one Dense layer, ``f(x) = x @ weight + bias``, class ``t``'s saliency is ``weight[:, t]``:

    >>> import numpy as np, nn
    >>> model = nn.Sequential([nn.Dense(3, 2, rng=0)])
    >>> s = saliency(model, np.ones((1, 3), np.float32), target=1)
    >>> np.array_equal(s[0], model.layers[0].params["weight"][:, 1])
    True
    """
    return gradients(model, x, target)[1][0]


def gradient_x_input(model: Layer, x: np.ndarray, target) -> np.ndarray:
    """``x * d f_target / d x``: for a model without hidden layers (``f = x @ W + b``) it sums,
    per sample, to ``f_target(x) - b_target``."""
    return saliency(model, x, target) * x


@dataclasses.dataclass(frozen=True)
class Completeness:
    """How well integrated gradients add up: ``sum`` of the attributions against ``expected`` =
    ``f_t(x) - f_t(baseline)``; ``gap = sum - expected``, ``relative_gap = |gap| / |expected|``."""

    sum: float
    expected: float
    gap: float
    relative_gap: float


def integrated_gradients(
    model: Layer, x: np.ndarray, target: int, *, steps: int = 32, baseline=None
) -> tuple[np.ndarray, Completeness]:
    """Integrated gradients of class ``target`` for one sample, from ``baseline`` (zeros: a black
    image) to ``x``, by the midpoint rule: ``IG = (x - b) * mean_k grad(b + a_k (x - b))`` with
    ``a_k = (k + 0.5) / steps``; the ``steps`` points go through the model as one batch.

    Shape:
        x: ``(1, ...)`` -> attributions ``(1, ...)``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if len(x) != 1:
        raise ValueError(f"integrated_gradients explains one sample, got x of shape {x.shape}")
    b = np.zeros_like(x) if baseline is None else np.broadcast_to(baseline, x.shape).astype(x.dtype)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(x.dtype).reshape(-1, *[1] * (x.ndim - 1))
    path = b + alphas * (x - b)  # (steps, ...)
    grads = saliency(model, path, target)
    attributions = (x - b) * grads.mean(axis=0, keepdims=True, dtype=np.float64)
    ends = layer_outputs(model, np.concatenate([x, b]))[-1].astype(np.float64)
    expected = float(ends[0, target] - ends[1, target])
    total = float(attributions.sum())
    gap = total - expected
    relative = abs(gap) / max(abs(expected), 1e-12)
    return attributions, Completeness(total, expected, gap, relative)


def grad_cam_layer(model: Layer) -> int:
    """The index of the layer whose output Grad-CAM reads: the last layer with an ``(N, C, H, W)``
    output before the model flattens it (the last conv block's output)."""
    layers = _layers(model)
    last = None
    for i, layer in enumerate(layers):
        if isinstance(layer, Conv2D):
            last = i
        elif isinstance(layer, Flatten):
            break
        elif last is not None and isinstance(layer, (BatchNorm, MaxPool2D, Dropout, *ACTIVATIONS)):
            last = i  # still the same block
    if last is None:
        raise ValueError("Grad-CAM needs a model with a Conv2D layer")
    return last


def _resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` linear interpolation between pixel centres (edges clamped)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - (pos - lo))
    np.add.at(m, (np.arange(n_out), hi), pos - lo)
    return m


def grad_cam(model: Layer, x: np.ndarray, target, layer: int | None = None) -> np.ndarray:
    """Grad-CAM of class ``target`` on the output ``A`` of ``layer`` (default
    :func:`grad_cam_layer`): ``relu(sum_k w_k A_k)``, ``w_k = mean_ij d f_t / d A_kij``, resized
    bilinearly to the input's height and width.

    Shape:
        x: ``(N, C, H, W)`` -> ``(N, H, W)``.
    """
    layer = grad_cam_layer(model) if layer is None else layer
    outputs, grads = gradients(model, x, target)
    a, g = outputs[layer], grads[layer + 1]  # (N, K, h, w) each
    if a.ndim != 4:
        raise ValueError(f"layer {layer} has output {a.shape}, not (N, C, H, W)")
    weights = g.mean(axis=(2, 3))  # (N, K)
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, a), 0)  # (N, h, w)
    rows, cols = _resize_matrix(x.shape[2], cam.shape[1]), _resize_matrix(x.shape[3], cam.shape[2])
    return np.einsum("ih,nhw,jw->nij", rows, cam, cols)


def _check_index(name: str, value, size: int, where: str) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and 0 <= value < size
    if not ok:
        raise ValueError(f"unit: {name} must be in [0, {size}){where}, got {value!r}")


def _follows(layers, index):
    """The element-wise layers after layer ``index`` up to the next layer with weights."""
    for layer in layers[index + 1 :]:
        if isinstance(layer, Dense | Conv2D | Flatten):
            return
        yield layer


def unit(model: Layer, x: np.ndarray, layer: int, index: int, *, top: int = 8) -> dict:
    """The arithmetic of one unit for one sample, with the forward pass's numbers: output
    ``index`` of the Dense or Conv2D layer ``layer`` (for Conv2D a flat index into its ``(O, Ho,
    Wo)`` output) is ``pre = sum_i w_i x_i + bias``; ``terms`` lists the ``top`` largest ``w_i x_i``
    (input index, weight, input value, product) and ``rest`` the sum of the others, so that
    ``sum(products) + rest + bias = pre`` (float64). Then, where they follow the layer:
    BatchNorm's ``scale`` and ``shift`` (its evaluation affine, ``value = pre * scale + shift``),
    the max-pool window this unit falls in, and the activation ``f(value)``. ``output`` is the
    layer's own output for the unit (its dtype's rounding of ``pre``).

    Shape:
        x: ``(1, ...)``.
    """
    layers = _layers(model)
    _check_index("layer", layer, len(layers), "")
    target = layers[layer]
    if not isinstance(target, Dense | Conv2D):
        raise ValueError(
            f"unit: layer {layer} is {type(target).__name__}; units are outputs of Dense or "
            "Conv2D layers"
        )
    if len(x) != 1:
        raise ValueError(f"unit explains one sample: x must be (1, ...), got {x.shape}")
    outputs = layer_outputs(model, x)
    inputs = (x if layer == 0 else outputs[layer - 1])[0].astype(np.float64)
    out = outputs[layer][0]
    _check_index("index", index, out.size, f" for layer {layer}")
    weight = target.params["weight"].astype(np.float64)
    if isinstance(target, Dense):
        channel, position = index, ()
        flat_in = inputs.reshape(-1)
        w, values = weight[:, index], flat_in
        where = [[int(i)] for i in range(len(flat_in))]
    else:
        channel, i, j = np.unravel_index(index, out.shape)
        position = (int(i), int(j))
        kh, kw = target.kernel_size
        s, p = target.stride, target.padding
        rows, cols = i * s - p + np.arange(kh), j * s - p + np.arange(kw)
        inside_r = (rows >= 0) & (rows < inputs.shape[1])
        inside_c = (cols >= 0) & (cols < inputs.shape[2])
        c_idx, r_idx, k_idx = np.meshgrid(
            np.arange(inputs.shape[0]), np.flatnonzero(inside_r), np.flatnonzero(inside_c),
            indexing="ij",
        )  # fmt: skip
        c_idx, r_idx, k_idx = c_idx.ravel(), r_idx.ravel(), k_idx.ravel()
        w = weight[channel][c_idx, r_idx, k_idx]
        values = inputs[c_idx, rows[r_idx], cols[k_idx]]
        where = [[int(c), int(r), int(q)] for c, r, q in zip(c_idx, rows[r_idx], cols[k_idx])]
    products = w * values
    order = np.argsort(-np.abs(products), kind="stable")
    shown = order[:top]
    bias = float(target.params["bias"][channel])
    pre = float(products.sum() + bias)
    answer = {
        "layer": int(layer),
        "type": type(target).__name__,
        "index": int(index),
        "channel": int(channel),
        "position": list(position),
        "terms": [
            {
                "input": where[k],
                "weight": float(w[k]),
                "input_value": float(values[k]),
                "product": float(products[k]),
            }
            for k in shown
        ],
        "rest": float(products[order[top:]].sum()),
        "count": int(len(products)),
        "bias": bias,
        "pre_activation": pre,
        "output": float(out.reshape(-1)[index]),
    }
    value = pre
    for k, nxt in enumerate(_follows(layers, layer), start=layer + 1):
        if isinstance(nxt, BatchNorm):
            var = nxt.buffers["running_var"].astype(np.float64)[channel]
            scale = float(nxt.params["gamma"][channel]) / np.sqrt(var + nxt.eps)
            mean = float(nxt.buffers["running_mean"][channel])
            shift = float(nxt.params["beta"][channel]) - mean * scale
            value = value * scale + shift
            answer["batch_norm"] = {
                "layer": k,
                "scale": float(scale),
                "shift": float(shift),
                "value": float(value),
                "output": float(outputs[k][0].reshape(-1)[index]),
            }
        elif isinstance(nxt, MaxPool2D):
            q = nxt.kernel_size
            i, j = position
            pooled = (i // q, j // q)
            before = outputs[k - 1][0, channel]
            window = before[pooled[0] * q : pooled[0] * q + q, pooled[1] * q : pooled[1] * q + q]
            answer["pool"] = {
                "layer": k,
                "window": window.astype(np.float64).tolist() if window.size else [],
                "position": list(pooled) if window.size else None,
                "is_max": bool(window.size and window.max() == before[i, j]),
            }
        elif isinstance(nxt, ACTIVATIONS) and "activation" not in answer:
            f = {
                ReLU: lambda v: max(v, 0.0),
                Sigmoid: lambda v: 1 / (1 + np.exp(-v)),
                Tanh: np.tanh,
            }.get(type(nxt))
            if f is not None:  # Softmax mixes units: no per-unit activation to show
                answer["activation"] = {
                    "layer": k,
                    "type": type(nxt).__name__,
                    "value": float(f(value)),
                }
    return answer
