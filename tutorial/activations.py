"""``Tanh()``, ``Sigmoid()`` and ``Softmax()`` as the tutorial has them. Tanh and Softmax run
``nn``'s layers (``Activation``'s ``activation`` and ``activation_prime`` stay, for scripts that
call them); Sigmoid keeps the tutorial's formula (see its docstring)."""

import numpy as np
from activation import Activation
from layer import Layer

import nn


class _NnActivation(Activation):
    """An element-wise activation whose forward and backward are an ``nn`` layer's."""

    def forward(self, input):
        self.input = np.asarray(input, dtype=np.float64)
        return self.layer.forward(self.input)

    def backward(self, output_gradient, learning_rate):
        return self.layer.backward(np.asarray(output_gradient, dtype=np.float64))


class Tanh(_NnActivation):
    def __init__(self):
        def tanh(x):
            return np.tanh(x)

        def tanh_prime(x):
            return 1 - np.tanh(x) ** 2

        super().__init__(tanh, tanh_prime)
        self.layer = nn.Tanh()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_prime(x):
    s = sigmoid(x)
    return s * (1 - s)


class Sigmoid(Activation):
    """The tutorial's formula, ``1 / (1 + e^-x)``, kept as it is: ``nn.Sigmoid`` computes
    ``0.5 tanh(x / 2) + 0.5`` (the same function, no overflow for large negative x), which rounds
    differently in the last bit, and the tutorial's conv example amplifies such bits."""

    def __init__(self):
        super().__init__(sigmoid, sigmoid_prime)


class Softmax(Layer):
    """``y = e^x / sum(e^x)`` over a column; ``dE/dX = (I - Y^T) * Y @ dE/dY`` in the tutorial's
    form, computed as ``nn.Softmax``'s Jacobian-vector product ``y * (g - sum(g * y))``."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Softmax()

    def forward(self, input):
        self.input = np.asarray(input, dtype=np.float64)
        self.output = self.layer.forward(self.input.T).T  # over the column's entries
        return self.output

    def backward(self, output_gradient, learning_rate):
        return self.layer.backward(np.asarray(output_gradient, dtype=np.float64).T).T
