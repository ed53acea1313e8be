"""``Dense(input_size, output_size)``: ``Y = W X + B`` on a column ``X`` ``(input_size, 1)``."""

import numpy as np
from layer import Layer, column, descend

import nn


class Dense(Layer):
    """``weights`` ``(output_size, input_size)`` and ``bias`` ``(output_size, 1)``, drawn with
    ``np.random.randn`` in that order, as the tutorial draws them. The ``nn.Dense`` that does the
    arithmetic holds views of them as its ``weight`` (``weights.T``) and ``bias``: the same memory
    in the same order as the tutorial's, so its products round as the tutorial's do."""

    def __init__(self, input_size, output_size):
        super().__init__()
        self.weights = np.random.randn(output_size, input_size)
        self.bias = np.random.randn(output_size, 1)
        self.layer = nn.Dense(input_size, output_size, dtype=np.float64)
        self.layer.params["weight"] = self.weights.T  # (input_size, output_size), a view
        self.layer.params["bias"] = self.bias[:, 0]  # (output_size,), a view
        # The weight's gradient in the same memory order, so the update runs over both in step.
        self.layer.grads["weight"] = np.zeros_like(self.weights).T
        self.name = f"Dense({input_size}, {output_size})"

    def forward(self, input):
        self.input = column(self.name, input, (self.layer.in_features, 1))
        return self.layer.forward(self.input.T).T  # nn's rows: (1, in) -> (1, out)

    def backward(self, output_gradient, learning_rate):
        g = column(self.name, output_gradient, (self.layer.out_features, 1), "output_gradient")
        input_gradient = self.layer.backward(g.T).T  # dE/dW = dE/dY X^T, dE/dX = W^T dE/dY
        descend(self.layer, learning_rate)
        return input_gradient
