"""Property-based checks over random shapes and hyperparameters (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import nn
from nn.reference import conv2d_naive, maxpool2d_backward_naive, maxpool2d_naive
from pipeline.data import stratified_order


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    extra_h=st.integers(0, 5),
    extra_w=st.integers(0, 5),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_conv_forward_and_backward_match_naive(
    n, c, o, kh, kw, extra_h, extra_w, stride, padding, seed
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, kh + extra_h, kw + extra_w))
    conv = nn.Conv2D(c, o, (kh, kw), stride=stride, padding=padding, rng=seed, dtype=np.float64)
    w, b = conv.params["weight"], conv.params["bias"]
    y = conv.forward(x)
    np.testing.assert_allclose(
        y, conv2d_naive(x, w, b, stride=stride, padding=padding), rtol=1e-10, atol=1e-10
    )
    # The input gradient of sum(y * r) is the naive conv's, by linearity: probe with unit inputs.
    r = rng.normal(size=y.shape)
    gx = conv.backward(r)
    k = rng.integers(x.size)
    e = np.zeros(x.size)
    e[k] = 1.0
    e = e.reshape(x.shape)
    expected = np.sum(conv2d_naive(e, w, np.zeros_like(b), stride=stride, padding=padding) * r)
    np.testing.assert_allclose(gx.reshape(-1)[k], expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    k=st.integers(1, 4),
    h=st.integers(4, 12),
    w=st.integers(4, 12),
    seed=st.integers(0, 2**16),
)
def test_maxpool_matches_naive_and_routes_each_window_once(n, c, k, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(n, c, h, w)).astype(np.float64)  # many ties
    pool = nn.MaxPool2D(k)
    y = pool.forward(x)
    np.testing.assert_array_equal(y, maxpool2d_naive(x, k))
    g = pool.backward(np.ones_like(y))
    assert g.sum() == y.size  # one unit of gradient per window, whatever the ties
    assert np.all(
        x[g == 1]
        == np.repeat(np.repeat(y, k, 2), k, 3)[g[:, :, : y.shape[2] * k, : y.shape[3] * k] == 1]
    )
    grad_y = rng.normal(size=y.shape)  # to the first maximum of each window, as the loop does
    np.testing.assert_array_equal(pool.backward(grad_y), maxpool2d_backward_naive(x, grad_y, k))
    # the same in Conv2D's (C, H, W, N) memory layout, where the pipeline pools
    x_chwn = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(pool.forward(x_chwn), y)
    np.testing.assert_array_equal(pool.backward(grad_y), maxpool2d_backward_naive(x, grad_y, k))


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 50), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    k=st.integers(1, 100),
)
def test_stratified_prefix_proportions(counts, seed, k):
    labels = np.repeat(np.arange(len(counts)), counts)
    order = stratified_order(labels, np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(len(labels)))
    k = min(k, len(labels))
    got = np.bincount(labels[order[:k]], minlength=len(counts))
    expected = np.array(counts) * k / len(labels)
    assert np.all(np.abs(got - expected) <= 1 + 1e-9)
