"""One converter from an ``nn.Sequential`` to PyTorch and one to Keras, weights and all.

Both walk the layers in order and copy every parameter (and BatchNorm's running statistics), so a
peer starts from exactly nn's initial weights. Layouts differ in two places:
- Dense: nn keeps ``weight (in, out)``; PyTorch ``(out, in)``; Keras ``(in, out)``.
- Images: nn and PyTorch are channels-first ``(C, H, W)``; Keras is channels-last ``(H, W, C)``,
  so Conv2D kernels are transposed and, after a Flatten of a ``(C, H, W)`` map, the next Dense
  layer's rows are permuted into ``(H, W, C)`` order. Feed the Keras model
  ``x.transpose(0, 2, 3, 1)``.
``tests/test_bench.py`` checks both against nn's forward pass.
"""

from __future__ import annotations

import numpy as np

import nn

ACTIVATIONS = ("ReLU", "Tanh", "Sigmoid")


def input_shapes(model: nn.Sequential, image_shape) -> list[tuple]:
    """The per-sample input shape of each layer (one blank image through ``model`` in eval mode)."""
    was_training = model.training
    model.eval()
    x, shapes = np.zeros((1, *image_shape), _dtype(model)), []
    try:
        for layer in model.layers:
            shapes.append(x.shape[1:])
            x = layer.forward(x)
    finally:
        model.train(was_training)
    return shapes


def _dtype(model: nn.Sequential) -> np.dtype:
    return next(iter(model.params.values())).dtype


CONVERTED = ("Dense", "Conv2D", "BatchNorm", "MaxPool2D", "Dropout", "Flatten", *ACTIVATIONS)


def check_convertible(model: nn.Sequential) -> None:
    """Raise ``ValueError`` naming the first layer neither converter handles."""
    for i, layer in enumerate(model.layers):
        if type(layer).__name__ not in CONVERTED:
            raise ValueError(f"layer {i} ({type(layer).__name__}) has no converter")


def to_torch(model: nn.Sequential, image_shape=(1, 28, 28)):
    """A ``torch.nn.Sequential`` computing what ``model`` computes, with its weights."""
    check_convertible(model)
    import torch

    T = torch.nn

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    out = []
    for layer, shape in zip(model.layers, input_shapes(model, image_shape)):
        kind = type(layer).__name__
        if kind == "Dense":
            m = T.Linear(layer.in_features, layer.out_features)
            state = {"weight": layer.params["weight"].T, "bias": layer.params["bias"]}
        elif kind == "Conv2D":
            m = T.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
            )
            state = {"weight": layer.params["weight"], "bias": layer.params["bias"]}
        elif kind == "BatchNorm":
            norm = T.BatchNorm2d if len(shape) == 3 else T.BatchNorm1d
            m = norm(layer.num_features, eps=layer.eps, momentum=layer.momentum)
            state = {
                "weight": layer.params["gamma"],
                "bias": layer.params["beta"],
                "running_mean": layer.buffers["running_mean"],
                "running_var": layer.buffers["running_var"],
            }
        elif kind == "MaxPool2D":
            m, state = T.MaxPool2d(layer.kernel_size), {}
        elif kind == "Dropout":
            m, state = T.Dropout(layer.p), {}
        elif kind == "Flatten":
            m, state = T.Flatten(), {}
        else:  # an activation
            m, state = getattr(T, kind)(), {}
        if state:
            m.load_state_dict({k: tensor(v) for k, v in state.items()}, strict=False)
        out.append(m)
    return T.Sequential(*out).to(getattr(torch, _dtype(model).name))


def to_keras(model: nn.Sequential, image_shape=(1, 28, 28)):
    """A ``keras.Sequential`` on channels-last input computing what ``model`` computes."""
    check_convertible(model)
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras = tf.keras
    L = keras.layers
    c, *hw = image_shape
    layers, weights = [keras.Input((*hw, c))], []
    flattened = None  # the (C, H, W) map the last Flatten flattened, until a Dense consumes it
    for layer, shape in zip(model.layers, input_shapes(model, image_shape)):
        kind = type(layer).__name__
        w = None
        if kind == "Dense":
            w = layer.params["weight"]
            if flattened is not None:  # rows in nn's (C, H, W) order -> Keras's (H, W, C)
                ch, h, wd = flattened
                w = w.reshape(ch, h, wd, -1).transpose(1, 2, 0, 3).reshape(w.shape[0], -1)
                flattened = None
            layers.append(L.Dense(layer.out_features))
            w = [w, layer.params["bias"]]
        elif kind == "Conv2D":
            if layer.padding:
                layers.append(L.ZeroPadding2D(layer.padding))
            layers.append(L.Conv2D(layer.out_channels, layer.kernel_size, strides=layer.stride))
            w = [layer.params["weight"].transpose(2, 3, 1, 0), layer.params["bias"]]
        elif kind == "BatchNorm":
            layers.append(L.BatchNormalization(momentum=1 - layer.momentum, epsilon=layer.eps))
            p, b = layer.params, layer.buffers
            w = [p["gamma"], p["beta"], b["running_mean"], b["running_var"]]
        elif kind == "MaxPool2D":
            layers.append(L.MaxPooling2D(layer.kernel_size))
        elif kind == "Dropout":
            layers.append(L.Dropout(layer.p))
        elif kind == "Flatten":
            layers.append(L.Flatten())
            flattened = shape if len(shape) == 3 else None
        else:  # an activation
            layers.append(L.Activation(kind.lower()))
        if w is not None:
            weights.append((len(layers) - 2, w))  # index among the model's layers (no Input)
    net = keras.Sequential(layers)
    for index, w in weights:
        net.layers[index].set_weights(w)
    return net
