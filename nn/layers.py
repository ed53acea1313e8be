"""Layers: the base class, Dense, shape layers and activations.

Every layer maps a batch ``x`` (batch on axis 0) to ``y = forward(x)`` and back:
``backward(grad_y)`` returns ``grad_x = dL/dx`` and fills ``self.grads`` with ``dL/dparam`` for
every entry of ``self.params``. ``backward`` never changes a parameter; optimizers do
(see ``nn.optim``).
"""

from __future__ import annotations

import math

import numpy as np

from nn.checks import positive_int
from nn.init import check_init, init_params
from nn.losses import softmax

__all__ = [
    "Layer",
    "Dense",
    "Flatten",
    "Reshape",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "Softmax",
    "as_generator",
    "layer_from_config",
]

_REGISTRY: dict[str, type[Layer]] = {}


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """``rng`` if it is a Generator, else a new one seeded with it (``None``: fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


class Layer:
    """Base class. Subclasses set ``params``/``grads`` (same keys and shapes) and implement
    ``forward`` and ``backward``.

    Attributes:
        params: dict of parameter arrays, updated in place by optimizers.
        grads: dict of gradient arrays with the same keys and shapes, filled by ``backward``.
        buffers: dict of arrays that are state but not trained (BatchNorm's running statistics);
            saved by ``nn.save`` beside the params.
        input_grad: when False, ``backward`` may skip computing ``grad_x`` and return None. Training
            sets it on a model's first layer, whose input gradient nothing uses.
        training: the mode, set by ``train()`` / ``eval()``; only layers that behave differently
            in training (Dropout, BatchNorm) read it.
    """

    input_grad = True
    training = True

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}

    def train(self, mode: bool = True) -> Layer:
        """Set training mode (``mode=False``: evaluation mode); returns ``self``."""
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        """Set evaluation mode; returns ``self``."""
        return self.train(False)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def config(self) -> dict:
        """Constructor arguments that rebuild this layer (saved as JSON by ``nn.save``)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def layer_from_config(spec: dict) -> Layer:
    """Rebuild a layer from ``{"type": name, "config": {...}}`` as written by ``nn.save``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"layer spec must be a dict with a 'type' key, got {spec!r}")
    cls = _REGISTRY.get(spec["type"])
    if cls is None:
        raise ValueError(f"unknown layer type {spec['type']!r}")
    return cls.from_config(spec.get("config", {}))


def check_input(layer: Layer, x: np.ndarray, expected: tuple) -> None:
    """Raise ValueError unless ``x.shape`` matches ``expected`` (None matches any size)."""
    ok = x.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
    if not ok:
        want = (
            "("
            + ", ".join(
                "N" if i == 0 else "*" if e is None else str(e) for i, e in enumerate(expected)
            )
            + ")"
        )
        raise ValueError(f"{layer!r}: expected input of shape {want}, got {tuple(x.shape)}")


class Dense(Layer):
    """Fully connected layer: ``y = x @ weight + bias``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        rng: Generator or int seed for the initial weights.
        dtype: parameter dtype; inputs are computed in it.

    Shape:
        x: ``(N, in_features)`` -> y: ``(N, out_features)``.

    Attributes:
        weight: ``(in_features, out_features)``, and bias ``(out_features,)``, both drawn from
            ``U(-k, k)`` with ``k = 1 / sqrt(in_features)`` (PyTorch's default, a fan-in scale),
            or as ``init`` names (``nn.init``: He or Glorot, uniform or normal; bias zero).

    Example:
        >>> import numpy as np, nn
        >>> layer = nn.Dense(3, 2, rng=0)
        >>> layer.params["weight"].shape, layer.params["bias"].shape
        ((3, 2), (2,))
        >>> x = np.ones((4, 3), np.float32)
        >>> np.allclose(layer.forward(x), x @ layer.params["weight"] + layer.params["bias"])
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rng=None,
        dtype=np.float32,
        init: str = "default",
    ):
        super().__init__()
        self.in_features = positive_int("Dense", "in_features", in_features)
        self.out_features = positive_int("Dense", "out_features", out_features)
        self.dtype = np.dtype(dtype)
        self.init = check_init("Dense", init)
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None) -> None:
        shape = (self.in_features, self.out_features)
        self.params = init_params(
            self.init,
            as_generator(rng),
            shape,
            self.out_features,
            self.in_features,
            self.out_features,
            self.dtype,
        )
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            check_input(self, x, (None, self.in_features))
        self.x = x = x if x.dtype == self.dtype else x.astype(self.dtype)
        # np.dot: BLAS's gemm, as @ calls it (the same bits), with less overhead per call. The
        # bias is added in place through a row view: NumPy broadcasts arrays of equal rank with
        # less set-up (one sample: 0.4 against 0.8 us), and the sums are the same.
        y = np.dot(x, self.params["weight"])
        y += self.params["bias"][None]
        return y

    def backward(self, grad_y):
        w, gw = self.params["weight"], self.grads["weight"]
        if grad_y.dtype != self.dtype:  # np.dot writes into `out` only in its own dtype
            return self._backward_cast(grad_y)
        # np.dot calls BLAS's gemm for every batch size (np.matmul does not for a batch of one,
        # which took 5x longer) and gives the same bits. A gradient kept transposed (tutorial/
        # keeps the weights as (out, in) memory) gets the same products in that order.
        if gw.flags.c_contiguous:
            np.dot(self.x.T, grad_y, out=gw)
        else:
            np.dot(grad_y.T, self.x, out=gw.T)
        # A ones-vector product sums the batch far faster than grad_y.sum(0) on narrow arrays;
        # the vector is kept for the next batch of the same size. One sample: its own row.
        if len(grad_y) == 1:
            self.grads["bias"][...] = grad_y[0]
        else:
            ones = self.__dict__.get("_ones")
            if ones is None or len(ones) != len(grad_y):
                ones = self._ones = np.ones(len(grad_y), dtype=self.dtype)
            np.matmul(ones, grad_y, out=self.grads["bias"])
        if not self.input_grad:
            return None
        if self.x.flags.f_contiguous and not self.x.flags.c_contiguous:
            # x is a transposed view: Flatten of a conv layer's (C, H, W, N) memory. The gradient
            # is computed as (W @ grad_y.T).T, in that same memory, so Flatten hands it back
            # without a layout copy (the same sums, rounded as that product rounds them).
            return np.dot(w, grad_y.T).T  # (N, in) over (in, N) memory
        return np.dot(grad_y, w.T)

    def _backward_cast(self, grad_y):
        """A gradient of another dtype (float64 from a float64 loss, say): as np.matmul computes
        it, in the wider type, each result cast to the parameters' dtype."""
        w = self.params["weight"]
        np.matmul(self.x.T, grad_y, out=self.grads["weight"], casting="same_kind")
        np.matmul(np.ones(len(grad_y)), grad_y, out=self.grads["bias"], casting="same_kind")
        return grad_y @ w.T if self.input_grad else None

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "dtype": self.dtype.name,
            "init": self.init,
        }


class Flatten(Layer):
    """Flatten every axis but the batch: ``(N, *dims) -> (N, prod(dims))``, in C order."""

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"{self!r}: expected input of shape (N, ...), got {tuple(x.shape)}")
        self.x = x
        return x.reshape(len(x), -1)

    def backward(self, grad_y):
        grad_x = grad_y.reshape(self.x.shape)
        if self.x.flags.c_contiguous or grad_x.strides == self.x.strides:
            return grad_x
        # x came from Conv2D in its (C, H, W, N) memory layout: hand the gradient back in that
        # layout, so the element-wise backward passes below run contiguous and Conv2D's reshape
        # of it is free. Dense already gives it in that layout (a free reshape above).
        out = np.empty_like(self.x)
        out[...] = grad_x
        return out


class Reshape(Layer):
    """Reshape each sample: ``(N, *in_dims) -> (N, *shape)``, in C order.

    Args:
        shape: the output shape without the batch axis; its size must equal the input's.
    """

    def __init__(self, shape):
        super().__init__()
        shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        if not shape:
            raise ValueError("Reshape: shape must have at least one dimension")
        for n in shape:
            positive_int("Reshape", "every dimension of shape", n)
        self.shape = tuple(int(n) for n in shape)

    def forward(self, x):
        if x.ndim < 1 or math.prod(x.shape[1:]) != math.prod(self.shape):
            raise ValueError(
                f"{self!r}: expected input of shape (N, ...) with "
                f"{math.prod(self.shape)} values per sample, got {tuple(x.shape)}"
            )
        self.in_shape = x.shape
        return x.reshape(len(x), *self.shape)

    def backward(self, grad_y):
        return grad_y.reshape(self.in_shape)

    def config(self):
        return {"shape": list(self.shape)}


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``, computed as ``0.5 * tanh(0.5 * x) + 0.5`` (no overflow)."""

    def forward(self, x):
        y = np.multiply(x, 0.5)
        np.tanh(y, out=y)
        y *= 0.5
        y += 0.5
        self.y = y
        return y

    def backward(self, grad_y):
        grad_x = 1.0 - self.y  # dy/dx = y (1 - y)
        grad_x *= self.y
        grad_x *= grad_y
        return grad_x


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad_y):
        grad_x = self.y * self.y  # dy/dx = 1 - y**2
        np.subtract(1.0, grad_x, out=grad_x)
        grad_x *= grad_y
        return grad_x


class ReLU(Layer):
    """``y = max(x, 0)``; the gradient is 1 where ``x > 0`` and 0 elsewhere."""

    def forward(self, x):
        self.y = np.maximum(x, 0)
        return self.y

    def backward(self, grad_y):
        return grad_y * (self.y > 0)


class Softmax(Layer):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` over the last axis (``nn.losses.softmax``).

    For classification train on logits with ``nn.losses.cross_entropy`` instead: it fuses softmax
    and the log for a stable value and a simpler gradient.
    """

    def forward(self, x):
        self.y = softmax(x)
        return self.y

    def backward(self, grad_y):
        y = self.y
        # Jacobian-vector product: dx_i = y_i (g_i - sum_j g_j y_j)
        return y * (grad_y - (grad_y * y).sum(axis=-1, keepdims=True))
