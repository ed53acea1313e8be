"""Float64 centered finite-difference checks of every layer's and loss's gradients."""

import numpy as np
import pytest

import nn
from nn import losses
from nn.gradcheck import layer_gradients, numerical_gradient, relative_error

F64 = np.float64
TOL = 1e-6


def _x(shape, seed=1, low=None):
    x = np.random.default_rng(seed).normal(size=shape)
    if low is not None:  # keep ReLU / max-pool inputs away from their kinks
        x = np.where(np.abs(x) < low, np.sign(x + 1e-12) * low, x)
    return x


class SameMaskDropout(nn.Dropout):
    """Dropout that draws the same mask at every forward, so finite differences see one function."""

    def forward(self, x):
        self.rng = np.random.default_rng(7)
        return super().forward(x)


def _evaluating_batchnorm(c):
    """A BatchNorm in evaluation mode with running statistics that are not the identity's."""
    bn = nn.BatchNorm(c, dtype=F64)
    rng = np.random.default_rng(11)
    bn.params["gamma"][:] = rng.uniform(0.5, 2.0, c)
    bn.params["beta"][:] = rng.normal(size=c)
    bn.buffers["running_mean"][:] = rng.normal(size=c)
    bn.buffers["running_var"][:] = rng.uniform(0.3, 3.0, c)
    return bn.eval()


LAYERS = [
    ("dense", lambda: nn.Dense(5, 3, rng=0, dtype=F64), _x((4, 5))),
    ("dense_he", lambda: nn.Dense(5, 3, rng=0, dtype=F64, init="he_normal"), _x((4, 5))),
    ("dropout", lambda: SameMaskDropout(0.4), _x((4, 6))),
    ("batchnorm_dense", lambda: nn.BatchNorm(3, dtype=F64), _x((5, 3))),
    ("batchnorm_conv", lambda: nn.BatchNorm(2, dtype=F64), _x((3, 2, 4, 3))),
    ("conv", lambda: nn.Conv2D(2, 3, 3, rng=0, dtype=F64), _x((2, 2, 6, 5))),
    ("conv_rect", lambda: nn.Conv2D(1, 2, (2, 3), rng=0, dtype=F64), _x((2, 1, 4, 5))),
    (
        "conv_stride_pad",
        lambda: nn.Conv2D(2, 2, 3, stride=2, padding=1, rng=0, dtype=F64),
        _x((2, 2, 5, 6)),
    ),
    ("batchnorm_eval_dense", lambda: _evaluating_batchnorm(3), _x((5, 3))),
    ("batchnorm_eval_conv", lambda: _evaluating_batchnorm(2), _x((3, 2, 4, 3))),
    ("maxpool", lambda: nn.MaxPool2D(2), _x((2, 3, 4, 5))),
    ("maxpool_eval", lambda: nn.MaxPool2D(2).eval(), _x((2, 3, 4, 5))),
    ("maxpool3", lambda: nn.MaxPool2D(3), _x((2, 1, 6, 7))),
    ("flatten", lambda: nn.Flatten(), _x((3, 2, 2, 2))),
    ("reshape", lambda: nn.Reshape((2, 4)), _x((3, 8))),
    ("sigmoid", lambda: nn.Sigmoid(), _x((4, 6))),
    ("tanh", lambda: nn.Tanh(), _x((4, 6))),
    ("relu", lambda: nn.ReLU(), _x((4, 6), low=0.01)),
    ("softmax", lambda: nn.Softmax(), _x((4, 6))),
    (
        "sequential",
        lambda: nn.Sequential(
            [
                nn.Conv2D(1, 2, 3, rng=0, dtype=F64),
                nn.ReLU(),  # before BatchNorm: a bias right before it has zero gradient
                nn.BatchNorm(2, dtype=F64),
                nn.MaxPool2D(2),
                nn.Flatten(),
                nn.Dense(8, 4, rng=1, dtype=F64),
                nn.Tanh(),
                nn.BatchNorm(4, dtype=F64),
                nn.Dense(4, 2, rng=2, dtype=F64),
                nn.Sigmoid(),
            ]
        ),
        _x((3, 1, 6, 6)),
    ),
]


@pytest.mark.parametrize("make, x", [(m, x) for _, m, x in LAYERS], ids=[n for n, *_ in LAYERS])
def test_layer_gradients(make, x):
    layer = make()
    grads = layer_gradients(layer, x)
    assert set(grads) == {"x", *layer.params}
    for name, (analytic, numeric) in grads.items():
        assert analytic.shape == numeric.shape, name
        assert relative_error(analytic, numeric) < TOL, name


def test_gradient_check_catches_a_wrong_backward():
    class Wrong(nn.Tanh):
        def backward(self, grad_y):
            return grad_y * (1.0 - self.y)  # forgot the square

    ((analytic, numeric),) = [v for k, v in layer_gradients(Wrong(), _x((3, 4))).items()]
    assert relative_error(analytic, numeric) > 1e-2


def _targets(kind, shape, seed=3):
    rng = np.random.default_rng(seed)
    if kind == "onehot":
        return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(F64)
    return rng.normal(size=shape)


LOSS_CASES = [
    ("mse", "real", lambda s: _x(s, 4)),
    ("binary_cross_entropy", "binary", lambda s: np.random.default_rng(4).uniform(0.05, 0.95, s)),
    ("cross_entropy", "onehot", lambda s: _x(s, 4) * 3),
]


@pytest.mark.parametrize("name, target, make_pred", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_gradients(name, target, make_pred):
    fn, prime = losses.get(name)
    y_pred = make_pred((5, 4))
    y_true = _targets(target, (5, 4))
    numeric = numerical_gradient(lambda: fn(y_true, y_pred), y_pred)
    assert relative_error(prime(y_true, y_pred), numeric) < TOL


def test_cross_entropy_soft_targets_gradient():
    y_true = np.random.default_rng(0).dirichlet(np.ones(4), size=3) * 0.7  # rows not summing to 1
    z = _x((3, 4), 5)
    numeric = numerical_gradient(lambda: losses.cross_entropy(y_true, z), z)
    assert relative_error(losses.cross_entropy_prime(y_true, z), numeric) < TOL


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0]])
    y = np.array([[0.0, 1.0, 0.0]])
    assert losses.cross_entropy(y, z) == pytest.approx(1000.0)
    assert np.all(np.isfinite(losses.cross_entropy_prime(y, z)))
