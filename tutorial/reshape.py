"""``Reshape(input_shape, output_shape)``: one sample's shape, and back for the gradient."""

import math

import numpy as np
from layer import Layer

import nn


class Reshape(Layer):
    def __init__(self, input_shape, output_shape):
        super().__init__()
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)
        if math.prod(self.input_shape) != math.prod(self.output_shape):
            raise ValueError(
                f"Reshape: {self.input_shape} and {self.output_shape} hold different numbers "
                "of values"
            )
        self.layer = nn.Reshape(self.output_shape)

    def forward(self, input):
        input = np.asarray(input)
        if input.shape != self.input_shape:
            raise ValueError(
                f"Reshape{self.input_shape, self.output_shape}: expected input of shape "
                f"{self.input_shape}, got {input.shape}"
            )
        return self.layer.forward(input[None])[0]  # nn's batch of one

    def backward(self, output_gradient, learning_rate):
        return self.layer.backward(np.asarray(output_gradient)[None])[0]
