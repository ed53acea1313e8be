"""``Dense(input_size, output_size)``: ``Y = W X + B`` on a column ``X`` ``(input_size, 1)``."""

import numpy as np
from layer import Layer, column

import nn


class Dense(Layer):
    """``weights`` ``(output_size, input_size)`` and ``bias`` ``(output_size, 1)``, drawn with
    ``np.random.randn`` in that order, as the tutorial draws them. They are the parameters of an
    ``nn.Dense`` (``layer``): its ``weight`` is ``weights.T`` and its ``bias`` is ``bias[:, 0]``,
    views of the same memory in the same order, so ``layer.forward`` on a batch of rows gives
    these columns' products bit for bit.

    One sample at a time, the per-sample step computes ``nn.Dense``'s products on that memory in
    the column layout (``W X + B``; ``dE/dW = dE/dY X^T``, written into ``layer.grads``;
    ``dE/dX = W^T dE/dY``) and ``nn.SGD``'s update ``p -= learning_rate * grad``, without the
    batch machinery around them: for layers of a few units, calling ``nn.Dense.forward`` and
    ``backward`` on a one-row batch cost more than the arithmetic (1.8 and 4.3 us against 1.0 and
    3.0 us). ``tests/test_tutorial_api.py`` checks both against ``nn.Dense`` for the same weights.
    """

    def __init__(self, input_size, output_size):
        super().__init__()
        self.weights = np.random.randn(output_size, input_size)
        self.bias = np.random.randn(output_size, 1)
        self.layer = nn.Dense(input_size, output_size, dtype=np.float64)
        self.layer.params["weight"] = self.weights.T  # (input_size, output_size), a view
        self.layer.params["bias"] = self.bias[:, 0]  # (output_size,), a view
        # dE/dW in the weights' memory order: (output_size, input_size), seen by nn transposed.
        self.weights_gradient = np.zeros_like(self.weights)
        self.layer.grads["weight"] = self.weights_gradient.T
        self.name = f"Dense({input_size}, {output_size})"
        self.shapes = (input_size, 1), (output_size, 1)
        # train() clears this on a network's first layer, as nn.fit does: nothing reads its
        # input gradient, and backward then returns None.
        self.input_grad = True

    def forward(self, input):
        self.input = column(self.name, input, self.shapes[0])
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient, learning_rate):
        g = column(self.name, output_gradient, self.shapes[1], "output_gradient")
        np.dot(g, self.input.T, out=self.weights_gradient)
        input_gradient = np.dot(self.weights.T, g) if self.input_grad else None
        self.weights_gradient *= learning_rate  # in place: no temporary the size of the weights
        self.weights -= self.weights_gradient
        self.bias -= learning_rate * g
        return input_gradient
