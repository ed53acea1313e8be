"""nn: a small, fast, gradient-checked neural-network library in NumPy.

Arrays are batched on axis 0; images are ``(N, C, H, W)``. Every layer has ``forward(x) -> y`` and
``backward(grad_y) -> grad_x``; ``backward`` fills ``layer.grads`` (same keys and shapes as
``layer.params``) and never changes parameters: optimizers in ``nn.optim`` do.
"""

from nn import augment, checks, explain, init, losses, optim, parallel, processes, schedules
from nn.conv import Conv2D, MaxPool2D, conv_output_size
from nn.keep_best import KeepBest
from nn.layers import Dense, Flatten, Layer, ReLU, Reshape, Sigmoid, Softmax, Tanh
from nn.norm import BatchNorm, Dropout
from nn.optim import SGD, Adam
from nn.sequential import Sequential
from nn.serialize import ModelFileError, load, save
from nn.train import PerBatch, TrainingDiverged, accuracy, evaluate, fit, predict

__all__ = [
    "Layer",
    "Dense",
    "Conv2D",
    "MaxPool2D",
    "Flatten",
    "Reshape",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "Softmax",
    "Dropout",
    "BatchNorm",
    "Sequential",
    "conv_output_size",
    "augment",
    "checks",
    "explain",
    "init",
    "schedules",
    "KeepBest",
    "losses",
    "optim",
    "parallel",
    "processes",
    "SGD",
    "Adam",
    "fit",
    "PerBatch",
    "predict",
    "evaluate",
    "accuracy",
    "TrainingDiverged",
    "save",
    "load",
    "ModelFileError",
]
