"""A chain of layers that is itself a layer."""

from __future__ import annotations

from nn.conv import MaxPool2D
from nn.layers import Layer, ReLU, layer_from_config

__all__ = ["Sequential"]


class Sequential(Layer):
    """Apply ``layers`` in order: ``y = layers[-1](... layers[0](x))``.

    ``params`` and ``grads`` gather the layers' entries under ``"<index>.<name>"`` keys
    (``"0.weight"``, ``"0.bias"``, ...). They are fresh dicts over the same arrays, so an optimizer
    that updates ``model.params[key]`` in place updates the layer.

    A ``ReLU`` followed by a ``MaxPool2D`` runs as the pooling first and the ReLU on its output,
    a quarter of the values for 2x2 windows (both passes, forward and backward):
    ``max(relu(a), relu(b)) = relu(max(a, b))`` exactly, and the gradients are the same too (a
    window whose maximum is not positive passes none either way). The ReLU's ``y`` is then the
    pooled shape.

    Example:
        >>> import numpy as np, nn
        >>> model = nn.Sequential([nn.Dense(784, 128, rng=0), nn.ReLU(), nn.Dense(128, 10, rng=1)])
        >>> x, y = np.zeros((2, 784), np.float32), np.eye(10, dtype=np.float32)[[3, 7]]
        >>> logits = model.forward(x)
        >>> logits.shape
        (2, 10)
        >>> model.backward(nn.losses.cross_entropy_prime(y, logits)).shape
        (2, 784)
        >>> sorted(model.grads)
        ['0.bias', '0.weight', '2.bias', '2.weight']
    """

    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not an nn.Layer")
        self._swapped: frozenset[int] = frozenset()  # ReLUs the last forward ran after their pool

    def _pooled_relus(self) -> frozenset[int]:
        """The indices of the ReLUs directly followed by a MaxPool2D."""
        layers = self.layers
        return frozenset(
            i
            for i in range(len(layers) - 1)
            if type(layers[i]) is ReLU and type(layers[i + 1]) is MaxPool2D
        )

    @property
    def params(self):
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()
        }

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("Sequential.params is derived from its layers")

    @property
    def grads(self):
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()
        }

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("Sequential.grads is derived from its layers")

    @property
    def buffers(self):
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.buffers.items()
        }

    @buffers.setter
    def buffers(self, value):
        if value:
            raise AttributeError("Sequential.buffers is derived from its layers")

    def train(self, mode: bool = True):
        """Set the mode of this chain and every layer in it; returns ``self``."""
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def _first_with_params(self):
        return next((layer for layer in self.layers if layer.params), None)

    @property
    def input_grad(self):
        first = self._first_with_params()
        return True if first is None else first.input_grad

    @input_grad.setter
    def input_grad(self, value):
        # Layers before the first parameter hold nothing to train: skipping the input gradient
        # of the first layer with parameters skips them too (backward stops at its None).
        first = self._first_with_params()
        if first is not None:
            first.input_grad = value

    def forward(self, x):
        layers, self._swapped = self.layers, self._pooled_relus()
        i = 0
        while i < len(layers):
            if i in self._swapped:  # ReLU, MaxPool2D: pool first, then the ReLU on fewer values
                x = layers[i].forward(layers[i + 1].forward(x))
                i += 2
            else:
                x = layers[i].forward(x)
                i += 1
        return x

    def backward(self, grad_y):
        layers, i = self.layers, len(self.layers) - 1
        while i >= 0:
            if i - 1 in self._swapped:  # the pool ran first: its ReLU's backward comes first
                grad_y = layers[i].backward(layers[i - 1].backward(grad_y))
                i -= 2
            else:
                grad_y = layers[i].backward(grad_y)
                i -= 1
            if grad_y is None:  # input_grad is off: nothing below needs a gradient
                return None
        return grad_y

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def config(self):
        return {
            "layers": [
                {"type": type(layer).__name__, "config": layer.config()} for layer in self.layers
            ]
        }

    @classmethod
    def from_config(cls, config):
        return cls([layer_from_config(spec) for spec in config.get("layers", [])])

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
