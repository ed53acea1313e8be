"""``Convolutional(input_shape, kernel_size, depth)``: ``Y_i = B_i + sum_j X_j ⋆ K_ij`` (valid
cross-correlation) on one sample ``(input_depth, height, width)``.

Backward, as the tutorial derives it: ``dE/dK_ij = X_j ⋆ dE/dY_i`` (valid cross-correlation),
``dE/dB_i = dE/dY_i`` and ``dE/dX_j = sum_i dE/dY_i * K_ij`` (full convolution). ``nn.Conv2D``
(im2col) computes the first and the last; its per-channel bias is unused (zero), since the
tutorial's biases are one per output value.
"""

import numpy as np
from layer import Layer, column, descend

import nn


class Convolutional(Layer):
    """``kernels`` ``(depth, input_depth, kernel_size, kernel_size)``, then ``biases`` of the
    output's shape ``(depth, height - kernel_size + 1, width - kernel_size + 1)``, drawn with
    ``np.random.randn`` in that order. ``kernels`` is a view of the ``nn.Conv2D``'s weight."""

    def __init__(self, input_shape, kernel_size, depth):
        super().__init__()
        input_depth, input_height, input_width = input_shape
        self.depth = depth
        self.input_shape = tuple(input_shape)
        self.input_depth = input_depth
        self.output_shape = (depth, input_height - kernel_size + 1, input_width - kernel_size + 1)
        self.kernels_shape = (depth, input_depth, kernel_size, kernel_size)
        kernels = np.random.randn(*self.kernels_shape)
        self.biases = np.random.randn(*self.output_shape)
        self.layer = nn.Conv2D(input_depth, depth, kernel_size, dtype=np.float64)
        self.layer.params["weight"][...] = kernels
        self.layer.params["bias"][...] = 0.0
        self.name = f"Convolutional({self.input_shape}, {kernel_size}, {depth})"

    @property
    def input_grad(self):
        """Whether ``backward`` computes the input gradient (``train`` clears it on a network's
        first layer, whose input gradient nothing reads); ``nn.Conv2D``'s flag."""
        return self.layer.input_grad

    @input_grad.setter
    def input_grad(self, value):
        self.layer.input_grad = value

    @property
    def kernels(self):
        return self.layer.params["weight"]

    @kernels.setter
    def kernels(self, value):
        self.layer.params["weight"][...] = value

    def forward(self, input):
        self.input = column(self.name, input, self.input_shape)
        return self.layer.forward(self.input[None])[0] + self.biases

    def backward(self, output_gradient, learning_rate):
        g = column(self.name, output_gradient, self.output_shape, "output_gradient")
        input_gradient = self.layer.backward(g[None])
        self.layer.grads["bias"][...] = 0.0  # the tutorial's biases are these, not nn's
        descend(self.layer, learning_rate)
        self.biases -= learning_rate * g
        return None if input_gradient is None else input_gradient[0]
