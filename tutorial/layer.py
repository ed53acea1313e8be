"""The tutorial's ``Layer`` ("Neural Network from Scratch"), on top of ``nn``.

This folder keeps the tutorial's own contract so that scripts written along the video run
unchanged (``from dense import Dense``): one sample at a time as column vectors, and
``backward(output_gradient, learning_rate)`` that returns the input gradient *and updates the
layer's own parameters* by plain gradient descent, with weights drawn from NumPy's global
``np.random.randn``. Those are the two places where it bends ``nn``'s rules on purpose (in ``nn``,
``backward`` only fills ``grads`` and an optimizer updates; randomness comes from explicit
Generators). The arithmetic is ``nn``'s: each layer here holds an ``nn`` layer in float64 and
calls its ``forward`` and ``backward`` (``Dense`` computes ``nn.Dense``'s products on that layer's
own parameters, in the column layout: see its docstring); the update is ``nn.SGD``'s.
docs/tutorial-api.md maps one onto the other.
"""

import numpy as np

import nn


class Layer:
    """A layer of the tutorial: ``forward(input)`` returns the output; ``backward(output_gradient,
    learning_rate)`` returns the input gradient and updates the layer's parameters."""

    def __init__(self):
        self.input = None
        self.output = None

    def forward(self, input):
        raise NotImplementedError

    def backward(self, output_gradient, learning_rate):
        raise NotImplementedError


def column(layer, value, shape, what="input"):
    """``value`` as a float64 array of ``shape``; a one-line error naming the layer and both
    shapes otherwise."""
    if type(value) is np.ndarray and value.dtype == np.float64 and value.shape == shape:
        return value  # the usual case, one sample after another: no copy, no conversion
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{layer}: expected {what} of shape {shape}, got {a.shape}")
    return a


def descend(layer: nn.Layer, learning_rate) -> None:
    """Plain gradient descent on an ``nn`` layer's parameters: ``p -= learning_rate * grad``,
    the step computed in the gradient's own array (no temporary the size of the weights; the
    gradient is spent)."""
    for g, p in zip(layer.grads.values(), layer.params.values()):
        g *= learning_rate
        p -= g
