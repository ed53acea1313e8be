"""Shape contract, oracles and bad input of every layer."""

import numpy as np
import pytest
from scipy import signal

import nn
from nn.reference import conv2d_naive, maxpool2d_naive

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "layer, x_shape, y_shape",
    [
        (nn.Dense(6, 4, rng=0), (3, 6), (3, 4)),
        (nn.Conv2D(2, 5, 3, rng=0), (3, 2, 9, 8), (3, 5, 7, 6)),
        (nn.Conv2D(2, 5, (3, 2), rng=0), (3, 2, 9, 8), (3, 5, 7, 7)),
        (nn.Conv2D(1, 2, 3, stride=2, padding=1, rng=0), (2, 1, 28, 28), (2, 2, 14, 14)),
        (nn.MaxPool2D(2), (3, 4, 9, 8), (3, 4, 4, 4)),
        (nn.MaxPool2D(3), (1, 1, 9, 9), (1, 1, 3, 3)),
        (nn.Flatten(), (3, 2, 4, 5), (3, 40)),
        (nn.Reshape((2, 5)), (3, 10), (3, 2, 5)),
        (nn.Reshape(12), (3, 3, 4), (3, 12)),
        (nn.Sigmoid(), (3, 7), (3, 7)),
        (nn.Tanh(), (3, 2, 5, 5), (3, 2, 5, 5)),
        (nn.ReLU(), (3, 7), (3, 7)),
        (nn.Softmax(), (3, 7), (3, 7)),
    ],
)
def test_shape_contract(layer, x_shape, y_shape):
    x = RNG.normal(size=x_shape).astype(np.float32)
    y = layer.forward(x)
    assert y.shape == y_shape
    assert y.dtype == np.float32
    g = layer.backward(np.ones_like(y))
    assert g.shape == x_shape
    assert set(layer.params) == set(layer.grads)
    for k in layer.params:
        assert layer.grads[k].shape == layer.params[k].shape
        assert layer.grads[k].dtype == layer.params[k].dtype


def test_dense_param_layout_and_init_scale():
    d = nn.Dense(784, 10, rng=0)
    assert d.params["weight"].shape == (784, 10) and d.params["bias"].shape == (10,)
    assert np.abs(d.params["weight"]).max() <= 1 / np.sqrt(784)
    assert d.params["weight"].dtype == np.float32
    assert nn.Dense(3, 2, dtype=np.float64).params["weight"].dtype == np.float64


def test_same_seed_same_weights_and_generator_accepted():
    a, b = nn.Conv2D(1, 4, 3, rng=7), nn.Conv2D(1, 4, 3, rng=7)
    assert np.array_equal(a.params["weight"], b.params["weight"])
    assert not np.array_equal(a.params["weight"], nn.Conv2D(1, 4, 3, rng=8).params["weight"])
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(
        nn.Dense(4, 4, rng=g1).params["weight"], nn.Dense(4, 4, rng=g2).params["weight"]
    )


def test_backward_does_not_change_params():
    m = nn.Sequential([nn.Dense(4, 3, rng=0), nn.Tanh(), nn.Dense(3, 2, rng=1)])
    before = {k: v.copy() for k, v in m.params.items()}
    m.backward(np.ones_like(m.forward(RNG.normal(size=(5, 4)))))
    assert all(np.array_equal(before[k], v) for k, v in m.params.items())
    assert any(np.any(g != 0) for g in m.grads.values())


def test_sequential_keys_share_arrays():
    m = nn.Sequential([nn.Dense(4, 3, rng=0), nn.ReLU(), nn.Dense(3, 2, rng=1)])
    assert list(m.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    m.params["2.bias"][...] = 5.0
    assert np.all(m.layers[2].params["bias"] == 5.0)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 0), (1, 2), (3, 1)])
def test_conv_matches_naive_loop(stride, padding):
    conv = nn.Conv2D(3, 4, (3, 2), stride=stride, padding=padding, rng=0, dtype=np.float64)
    x = RNG.normal(size=(2, 3, 8, 7))
    expected = conv2d_naive(
        x, conv.params["weight"], conv.params["bias"], stride=stride, padding=padding
    )
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_conv_matches_scipy_correlate2d():
    conv = nn.Conv2D(2, 3, 3, rng=1, dtype=np.float64)
    x = RNG.normal(size=(2, 2, 10, 9))
    w, b = conv.params["weight"], conv.params["bias"]
    expected = np.array(
        [
            [
                sum(signal.correlate2d(x[n, c], w[o, c], "valid") for c in range(2)) + b[o]
                for o in range(3)
            ]
            for n in range(2)
        ]
    )
    np.testing.assert_allclose(conv.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_maxpool_matches_naive_loop_and_drops_remainder():
    x = RNG.normal(size=(2, 3, 9, 7))
    np.testing.assert_array_equal(nn.MaxPool2D(2).forward(x), maxpool2d_naive(x, 2))
    np.testing.assert_array_equal(nn.MaxPool2D(3).forward(x), maxpool2d_naive(x, 3))


def test_maxpool_routes_ties_to_one_element():
    pool = nn.MaxPool2D(2)
    pool.forward(np.ones((1, 1, 2, 2)))
    g = pool.backward(np.full((1, 1, 1, 1), 3.0))
    np.testing.assert_array_equal(g[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_maxpool_backward_needs_a_forward():
    with pytest.raises(RuntimeError, match=r"MaxPool2D.*backward needs a forward pass first"):
        nn.MaxPool2D(2).backward(np.ones((1, 1, 1, 1)))


def test_maxpool_backward_after_an_eval_forward_equals_the_training_one():
    """Evaluation mode records no window choices (inference stays one pass); a backward after
    it finds them from the kept input and routes the gradient exactly as training does."""
    x = np.concatenate([RNG.normal(size=(2, 3, 6, 7)), np.ones((1, 3, 6, 7))])  # ties too
    g = RNG.normal(size=(3, 3, 3, 3))
    trained, evaluated = nn.MaxPool2D(2), nn.MaxPool2D(2).eval()
    np.testing.assert_array_equal(trained.forward(x), evaluated.forward(x))
    assert evaluated.argmax is None
    np.testing.assert_array_equal(trained.backward(g), evaluated.backward(g))


def test_conv_after_conv_channel_major_layout():
    """Conv2D returns a transposed view; a following layer must see plain (N, C, H, W) values."""
    c1 = nn.Conv2D(1, 2, 3, rng=0, dtype=np.float64)
    c2 = nn.Conv2D(2, 3, 3, rng=1, dtype=np.float64)
    x = RNG.normal(size=(2, 1, 8, 8))
    h = c1.forward(x)
    np.testing.assert_allclose(c2.forward(h), c2.forward(np.ascontiguousarray(h)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_after_conv_gives_its_input_gradient_in_the_conv_layout(dtype):
    """Dense reads Flatten's view of the conv layout, (N, C*H*W) over (C, H, W, N) memory, and
    hands the input gradient back in that memory (``(W @ g.T).T``): Flatten reshapes it for free
    and the values are the plain ``g @ W.T`` product's, up to float rounding."""
    conv, flat = nn.Conv2D(1, 3, 3, rng=0, dtype=dtype), nn.Flatten()
    dense = nn.Dense(3 * 6 * 6, 4, rng=1, dtype=dtype)
    h = flat.forward(conv.forward(RNG.normal(size=(5, 1, 8, 8)).astype(dtype)))
    assert h.flags.f_contiguous and not h.flags.c_contiguous
    dense.forward(h)
    g = RNG.normal(size=(5, 4)).astype(dtype)
    gh = dense.backward(g)
    assert gh.strides == h.strides
    np.testing.assert_allclose(
        gh, g @ dense.params["weight"].T, rtol=1e-5 if dtype == np.float32 else 1e-12
    )
    gx = flat.backward(gh)
    assert np.shares_memory(gx, gh) and gx.strides == flat.x.strides  # no copy
    plain = nn.Dense(3 * 6 * 6, 4, rng=1, dtype=dtype)
    plain.forward(np.ascontiguousarray(h))
    np.testing.assert_array_equal(plain.backward(g), g @ plain.params["weight"].T)
    for key in ("weight", "bias"):
        np.testing.assert_allclose(dense.grads[key], plain.grads[key], rtol=1e-5)


def test_sigmoid_does_not_overflow():
    with np.errstate(all="raise"):
        y = nn.Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(y, [[0.0, 0.5, 1.0]])


@pytest.mark.parametrize(
    "layer, x_shape, match",
    [
        (
            nn.Dense(784, 10),
            (5, 100),
            r"Dense\(in_features=784.*expected input of shape \(N, 784\), "
            r"got \(5, 100\)",
        ),
        (nn.Dense(4, 2), (5, 2, 2), r"expected input of shape \(N, 4\), got \(5, 2, 2\)"),
        (
            nn.Conv2D(3, 4, 3),
            (2, 1, 8, 8),
            r"Conv2D.*expected input of shape \(N, 3, H, W\), "
            r"got \(2, 1, 8, 8\)",
        ),
        (nn.Conv2D(1, 4, 3), (2, 8, 8), r"expected input of shape \(N, 1, H, W\), got \(2, 8, 8\)"),
        (nn.Conv2D(1, 4, 5), (2, 1, 4, 8), r"kernel 5x5 is larger than the padded input 4x8"),
        (nn.MaxPool2D(4), (2, 1, 3, 8), r"MaxPool2D.*H, W >= 4, got \(2, 1, 3, 8\)"),
        (nn.Reshape((3, 3)), (2, 8), r"Reshape.*9 values per sample, got \(2, 8\)"),
        (nn.Flatten(), (5,), r"Flatten.*got \(5,\)"),
    ],
)
def test_bad_input_shapes(layer, x_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.forward(np.zeros(x_shape, np.float32))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nn.Dense(0, 3), "Dense: in_features must be a positive integer, got 0"),
        (lambda: nn.Dense(3, -1), "out_features must be a positive integer"),
        (lambda: nn.Dense(2.5, 3), "in_features must be a positive integer"),
        (lambda: nn.Conv2D(1, 2, 0), "kernel_size must be a positive integer, got 0"),
        (lambda: nn.Conv2D(1, 2, (3, 3, 3)), "kernel_size must be an int or a pair"),
        (lambda: nn.Conv2D(1, 2, 3, stride=0), "stride must be a positive integer"),
        (lambda: nn.Conv2D(1, 2, 3, padding=-1), "padding must be a non-negative integer"),
        (lambda: nn.MaxPool2D(0), "MaxPool2D: kernel_size must be a positive integer"),
        (lambda: nn.Reshape((2, 0)), "Reshape: every dimension of shape must be a positive"),
        (lambda: nn.SGD(-0.1), r"SGD: lr must be in \(0.0, inf\], got -0.1"),
        (lambda: nn.SGD(0.1, momentum=1.0), "SGD: momentum must be in"),
        (lambda: nn.Adam(lr=0), "Adam: lr must be in"),
        (lambda: nn.Adam(betas=(0.9, 1.5)), "Adam: betas must be in"),
        (lambda: nn.Adam(eps=float("nan")), "Adam: eps must be in"),
    ],
)
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_rng_type():
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        nn.Dense(2, 2, rng="seed")


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="item 1 is ufunc, not an nn.Layer"):
        nn.Sequential([nn.ReLU(), np.tanh])


def test_repr_shows_hyperparameters():
    assert repr(nn.Conv2D(1, 8, 3)) == (
        "Conv2D(in_channels=1, out_channels=8, kernel_size=[3, 3], "
        "stride=1, padding=0, dtype='float32', init='default')"
    )
    assert "(1): ReLU()" in repr(nn.Sequential([nn.Dense(2, 2), nn.ReLU()]))


def test_losses_mean_is_numpys_to_the_bit():
    from nn.losses import _mean

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for shape in [(1, 1), (10, 1), (7,), (128, 10), (1000, 37), (3, 100, 17)]:
            a = rng.normal(size=shape).astype(dtype)
            assert _mean(a) == float(np.mean(a))
            assert type(_mean(a)) is float


def test_dense_forward_keeps_its_input_and_adds_the_bias_to_every_row():
    layer = nn.Dense(3, 2, rng=0, dtype=np.float64)
    for x in (np.ones((1, 3)), np.arange(12.0).reshape(4, 3), np.ones((5, 3), np.float32)):
        y = layer.forward(x)
        expected = x.astype(np.float64) @ layer.params["weight"] + layer.params["bias"]
        np.testing.assert_array_equal(y, expected)
        assert layer.x.dtype == np.float64 and (layer.x is x) == (x.dtype == np.float64)


@pytest.mark.parametrize("bn", [False, True])
def test_a_relu_before_a_pool_runs_after_it_with_the_same_bits(mnist_folder, bn):
    """Sequential runs ReLU, MaxPool2D as MaxPool2D, ReLU (a quarter of the values): outputs and
    every gradient equal the layers run one by one in the written order, on real digits."""
    from pipeline.idx import load_mnist_split

    images, _ = load_mnist_split(mnist_folder, "test")
    x = (images[:64, None] / np.float32(255)).astype(np.float32)
    rng = np.random.default_rng(0)

    def build():
        norm = [nn.BatchNorm(8)] if bn else []
        layers = [nn.Conv2D(1, 8, 3, rng=0), *norm, nn.ReLU(), nn.MaxPool2D(2), nn.Flatten()]
        return nn.Sequential([*layers, nn.Dense(8 * 13 * 13, 10, rng=1)])

    fused, plain = build(), build()
    assert fused._pooled_relus() == {1 + bn}
    g = rng.normal(size=(64, 10)).astype(np.float32)
    y = fused.forward(x)
    gx = fused.backward(g)
    h = x
    for layer in plain.layers:  # the written order, one layer after another
        h = layer.forward(h)
    np.testing.assert_array_equal(y, h)
    assert fused.layers[1 + bn].y.shape == (64, 8, 13, 13)  # the ReLU saw the pooled values
    for layer in reversed(plain.layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(gx, g)
    for key, grad in plain.grads.items():
        np.testing.assert_array_equal(fused.grads[key], grad, err_msg=key)
    # windows with no positive value: the plain order's ties at 0 pass no gradient either
    assert (fused.layers[1 + bn].y == 0).mean() > 0.05
