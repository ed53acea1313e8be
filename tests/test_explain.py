"""nn.explain against finite differences and the forward pass, in float64: saliency, every layer's
gradient, integrated gradients' completeness, gradient x input, a unit's arithmetic, Grad-CAM; and
that explaining leaves a model byte-identical."""

import numpy as np
import pytest

import nn
from nn import explain
from nn.gradcheck import relative_error

F64 = np.float64
EPS = 1e-6


def as_float64(model: nn.Sequential) -> nn.Sequential:
    """The same model computing in float64 (parameters and buffers copied)."""
    config = model.config()
    for spec in config["layers"]:
        if "dtype" in spec["config"]:
            spec["config"]["dtype"] = "float64"
    copy = nn.Sequential.from_config(config)
    for key, value in model.params.items():
        copy.params[key][...] = value
    for key, value in model.buffers.items():
        copy.buffers[key][...] = value
    return copy.eval()


def pipeline_conv(seed=0, dtype=F64) -> nn.Sequential:
    """The pipeline's conv architecture (smaller), with running statistics that are not the
    identity's, in evaluation mode."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        [
            nn.Conv2D(1, 4, 5, rng=rng, dtype=dtype),
            nn.BatchNorm(4, dtype=dtype),
            nn.MaxPool2D(2),
            nn.ReLU(),
            nn.Conv2D(4, 6, 5, rng=rng, dtype=dtype),
            nn.BatchNorm(6, dtype=dtype),
            nn.MaxPool2D(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dense(96, 16, rng=rng, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(0.3, rng=rng),
            nn.Dense(16, 10, rng=rng, dtype=dtype),
        ]
    )
    for layer in model.layers:
        if isinstance(layer, nn.BatchNorm):
            c = layer.num_features
            layer.params["gamma"][:] = rng.uniform(0.5, 1.5, c)
            layer.params["beta"][:] = rng.normal(0, 0.3, c)
            layer.buffers["running_mean"][:] = rng.normal(0, 0.2, c)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, c)
    return model.eval()


def pipeline_dense(seed=0, dtype=F64) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        [
            nn.Flatten(),
            nn.Dense(784, 32, rng=rng, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(0.2, rng=rng),
            nn.Dense(32, 16, rng=rng, dtype=dtype),
            nn.BatchNorm(16, dtype=dtype),
            nn.Tanh(),
            nn.Dense(16, 10, rng=rng, dtype=dtype),
        ]
    ).eval()


def digit_like(seed=0) -> np.ndarray:
    """A 28x28 image with a few blurry strokes in [0, 1], ``(1, 1, 28, 28)`` float64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    img = np.zeros((28, 28))
    for _ in range(4):
        cy, cx = rng.uniform(6, 22, 2)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 12))
    img += rng.uniform(0, 0.1, (28, 28))  # no exact ties for max-pooling to break
    return np.clip(img, 0, 1)[None, None]


def kinks(model, x, live=None) -> tuple:
    """Which side of every ReLU and which max of every pool window ``x`` sits on. With ``live``
    (the gradients of ``explain.gradients`` at ``x``), only the windows whose pooled output
    reaches the target count: a tie between equal values (a blank background gives many) is no
    kink of the function where nothing downstream depends on it."""
    outputs = explain.layer_outputs(model, x)
    marks = []
    for i, layer in enumerate(model.layers):
        before = x if i == 0 else outputs[i - 1]
        if isinstance(layer, nn.ReLU):
            marks.append((before > 0).tobytes())
        elif isinstance(layer, nn.MaxPool2D):
            pool = nn.MaxPool2D(layer.kernel_size)
            pool.forward(before)
            choice = pool.argmax.astype(int)
            if live is not None:
                choice = np.where(live[i + 1] != 0, choice, -1)
            marks.append(choice.tobytes())
    return tuple(marks)


def fd_saliency(model, x, target, pixels):
    """Central differences of ``f_target`` at ``pixels`` (flat indices), and which of them cross a
    ReLU or a max-pool choice that reaches the target (excluded: the derivative is not defined
    there)."""
    live = explain.gradients(model, x, target)[1]
    base = kinks(model, x, live)
    values, crossed = [], []
    for p in pixels:
        plus, minus = x.copy(), x.copy()
        plus.reshape(-1)[p] += EPS
        minus.reshape(-1)[p] -= EPS
        f = [explain.layer_outputs(model, z)[-1][0, target] for z in (plus, minus)]
        values.append((f[0] - f[1]) / (2 * EPS))
        crossed.append(kinks(model, plus, live) != base or kinks(model, minus, live) != base)
    return np.array(values), np.array(crossed)


def check_saliency(model, x, target, pixels):
    s = explain.saliency(model, x, target).reshape(-1)[pixels]
    numeric, crossed = fd_saliency(model, x, target, pixels)
    assert crossed.mean() <= 0.05, crossed.sum()
    keep = ~crossed
    assert relative_error(s[keep], numeric[keep]) < 1e-7
    return int(crossed.sum())


def test_saliency_equals_finite_differences_on_every_pixel_of_a_dense_model():
    model, x = pipeline_dense(), digit_like(1)
    for target in (0, 3, 9):
        check_saliency(model, x, target, np.arange(784))


def test_saliency_equals_finite_differences_on_sampled_pixels_of_a_conv_model():
    model, x = pipeline_conv(), digit_like(2)
    pixels = np.random.default_rng(0).choice(784, 120, replace=False)
    for target in (1, 7):
        check_saliency(model, x, target, pixels)


def test_every_layer_gradient_equals_finite_differences_of_the_rest_of_the_model():
    """``grads[i + 1]`` (what Grad-CAM reads) is d f_t / d(output of layer i)."""
    model, x, target = pipeline_conv(3), digit_like(3), 4
    outputs, grads = explain.gradients(model, x, target)
    rng = np.random.default_rng(1)
    for i in (1, 3, 7, 9):
        rest = nn.Sequential(model.layers[i + 1 :]).eval()
        a = outputs[i].copy()
        live = explain.gradients(rest, a, target)[1]
        picks = rng.choice(a.size, min(80, a.size), replace=False)
        numeric, crossed = [], []
        for p in picks:
            plus, minus = a.copy(), a.copy()
            plus.reshape(-1)[p] += EPS
            minus.reshape(-1)[p] -= EPS
            numeric.append(
                (rest.forward(plus)[0, target] - rest.forward(minus)[0, target]) / 2 / EPS
            )
            base = kinks(rest, a, live)
            crossed.append(kinks(rest, plus, live) != base or kinks(rest, minus, live) != base)
        keep = ~np.array(crossed)
        # Dead ReLUs leave exact ties for the next pool: those elements are kinks, not checked.
        assert keep.sum() >= min(20, a.size // 2), (i, keep.sum())
        analytic = grads[i + 1].reshape(-1)[picks]
        assert relative_error(analytic[keep], np.array(numeric)[keep]) < 1e-6, i


def test_layer_outputs_are_the_forward_pass():
    model, x = pipeline_conv(), np.concatenate([digit_like(4), digit_like(5)])
    outputs = explain.layer_outputs(model, x)
    assert len(outputs) == len(model.layers)
    h = x
    for layer, out in zip(model.layers, outputs, strict=True):
        h = layer.forward(h)
        np.testing.assert_array_equal(out, h)
    np.testing.assert_array_equal(outputs[-1], nn.predict(model, x))


def test_gradient_x_input_sums_to_the_logit_less_its_bias_without_hidden_layers():
    model = nn.Sequential([nn.Flatten(), nn.Dense(784, 10, rng=0, dtype=F64)]).eval()
    x = digit_like(6)
    logits = nn.predict(model, x)[0]
    for t in range(10):
        total = explain.gradient_x_input(model, x, t).sum()
        assert total == pytest.approx(logits[t] - model.layers[1].params["bias"][t], abs=1e-12)


@pytest.mark.parametrize("make", [pipeline_dense, pipeline_conv])
def test_integrated_gradients_close_the_completeness_gap(make):
    model, x = make(7), digit_like(7)
    target = int(nn.predict(model, x)[0].argmax())
    attributions, c = explain.integrated_gradients(model, x, target, steps=64)
    assert attributions.shape == x.shape
    assert c.sum == pytest.approx(attributions.sum())
    logits = nn.predict(model, np.concatenate([x, np.zeros_like(x)]))
    assert c.expected == pytest.approx(logits[0, target] - logits[1, target])
    assert c.relative_gap < 0.01, c


@pytest.mark.parametrize("make", [pipeline_dense, pipeline_conv])
def test_a_units_terms_sum_to_its_pre_activation(make):
    model, x = make(8), digit_like(8)
    outputs = explain.layer_outputs(model, x)
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, nn.Dense | nn.Conv2D):
            continue
        for index in (0, outputs[i][0].size // 2, outputs[i][0].size - 1):
            u = explain.unit(model, x, i, index, top=5)
            total = sum(t["product"] for t in u["terms"]) + u["rest"] + u["bias"]
            assert total == pytest.approx(u["pre_activation"], abs=1e-9)
            assert u["pre_activation"] == pytest.approx(u["output"], abs=1e-9)
            assert len(u["terms"]) == 5
            mags = [abs(t["product"]) for t in u["terms"]]
            assert mags == sorted(mags, reverse=True)
            for t in u["terms"]:
                assert t["product"] == pytest.approx(t["weight"] * t["input_value"], abs=1e-15)
                src = x if i == 0 else outputs[i - 1]
                assert src[0].reshape(-1)[0] is not None
                value = src[0][tuple(t["input"])] if src.ndim == 4 else src[0][t["input"][0]]
                assert t["input_value"] == value
            if "batch_norm" in u:
                bn = u["batch_norm"]
                assert bn["value"] == pytest.approx(bn["output"], abs=1e-9)
                assert bn["value"] == pytest.approx(
                    u["pre_activation"] * bn["scale"] + bn["shift"], abs=1e-12
                )
            if "activation" in u:
                a = u["activation"]
                value = u.get("batch_norm", {}).get("value", u["pre_activation"])
                f = {"ReLU": lambda v: max(v, 0), "Tanh": np.tanh}[a["type"]]
                assert a["value"] == pytest.approx(f(value), abs=1e-12)


def test_a_conv_units_window_and_pool():
    model, x = pipeline_conv(9), digit_like(9)
    u = explain.unit(model, x, 4, 6 * 8 * 8 - 1)  # last unit of the second conv: (5, 7, 7)
    assert u["channel"] == 5 and u["position"] == [7, 7] and u["count"] == 4 * 25
    assert all(0 <= t["input"][0] < 4 and 7 <= t["input"][1] < 12 for t in u["terms"])
    pool = u["pool"]
    assert pool["position"] == [3, 3] and np.array(pool["window"]).shape == (2, 2)


def test_grad_cam_reads_the_last_conv_block():
    model, x = pipeline_conv(10), digit_like(10)
    assert explain.grad_cam_layer(model) == 7  # the second block's ReLU, before Flatten
    cam = explain.grad_cam(model, x, 3)
    assert cam.shape == (1, 28, 28) and cam.min() >= 0
    outputs, grads = explain.gradients(model, x, 3)
    a, g = outputs[7][0], grads[8][0]
    coarse = np.maximum((g.mean(axis=(1, 2))[:, None, None] * a).sum(0), 0)  # (4, 4)
    # Bilinear resizing keeps the mean of a 4x4 map on a 28x28 grid within its range, and a
    # constant map exactly.
    assert coarse.min() - 1e-12 <= cam.min() and cam.max() <= coarse.max() + 1e-12
    with pytest.raises(ValueError, match="Grad-CAM needs a model with a Conv2D layer"):
        explain.grad_cam(pipeline_dense(), x, 0)


def test_explaining_leaves_a_model_byte_identical():
    """After a training step (grads, Adam's moments and BatchNorm's statistics all non-trivial)
    every explanation leaves every array and flag as it was."""
    model = pipeline_conv(11, dtype=np.float32).train()
    opt = nn.Adam(1e-3)
    x = np.concatenate([digit_like(s) for s in range(4)]).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    nn.fit(model, x, y, loss="cross_entropy", optimizer=opt, epochs=1, batch_size=4, rng=0)
    model.layers[0].input_grad = False  # as fit leaves a model's first layer
    model.train()

    def state():
        arrays = {f"p.{k}": v.tobytes() for k, v in model.params.items()}
        arrays |= {f"g.{k}": v.tobytes() for k, v in model.grads.items()}
        arrays |= {f"b.{k}": v.tobytes() for k, v in model.buffers.items()}
        arrays |= {f"o.{k}": repr(v) for k, v in sorted(vars(opt).items()) if k != "schedule"}
        flags = [(layer.training, layer.input_grad) for layer in model.layers]
        return arrays, flags, model.training

    before = state()
    one = x[:1]
    explain.layer_outputs(model, x)
    explain.saliency(model, one, 2)
    explain.integrated_gradients(model, one, 2, steps=8)
    explain.grad_cam(model, one, 2)
    explain.unit(model, one, 4, 3)
    assert state() == before


def test_bad_arguments_name_the_problem():
    model, x = pipeline_conv(), digit_like()
    with pytest.raises(ValueError, match=r"target must be class indices in \[0, 10\), got 10"):
        explain.saliency(model, x, 10)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        explain.integrated_gradients(model, x, 1, steps=0)
    with pytest.raises(ValueError, match="layer 3 is ReLU; units are outputs of Dense or Conv2D"):
        explain.unit(model, x, 3, 0)
    with pytest.raises(ValueError, match=r"index must be in \[0, 2304\) for layer 0, got 2304"):
        explain.unit(model, x, 0, 2304)
    with pytest.raises(ValueError, match=r"layer must be in \[0, 13\), got 13"):
        explain.unit(model, x, 13, 0)


def test_confident_mistakes_are_the_wrong_answers_given_most_surely():
    from pipeline.metrics import confident_mistakes

    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    actual = np.array([0, 0, 0, 1, 1])
    assert confident_mistakes(p, actual, 5).tolist() == [1, 4, 2]
    assert confident_mistakes(p, actual, 2).tolist() == [1, 4]


# --- the trained models -----------------------------------------------------------------------


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


@pytest.mark.slow
def test_trained_models_saliency_and_completeness_on_real_digits(trained, mnist_folder):
    """On real test digits: the trained conv model's saliency (in float64) against finite
    differences on sampled pixels, and integrated gradients at 64 steps within 1% of
    completeness (float32, as the server runs it)."""
    from pipeline.data import scale
    from pipeline.idx import load_mnist_split

    conv, folder = trained
    images, _ = load_mnist_split(mnist_folder, "test")
    x = scale(images[:5])
    conv64 = as_float64(conv)
    pixels = np.random.default_rng(0).choice(784, 60, replace=False)
    # A blank background makes every conv output there equal, so max-pooling compares equal
    # values: most background pixels sit on a tie (measured: 76-94% of sampled pixels of real
    # digits), where f has no derivative and saliency is the one-sided one (the gradient goes to
    # the first maximum, as in PyTorch). A dither below one grey level (1e-3 < 1/255) breaks the
    # ties; then the check holds with at most 5% of pixels on a kink.
    dither = np.random.default_rng(5).uniform(0, 1e-3, (2, 1, 28, 28))
    for i in range(2):
        one = x[i : i + 1].astype(F64) + dither[i]
        target = int(nn.predict(conv64, one)[0].argmax())
        excluded = check_saliency(conv64, one, target, pixels)
        print(f"conv, dithered digit {i}: {excluded} of {len(pixels)} pixels on a kink")
        blank = x[i : i + 1].astype(F64)
        numeric, crossed = fd_saliency(conv64, blank, target, pixels)
        s = explain.saliency(conv64, blank, target).reshape(-1)[pixels]
        assert relative_error(s[~crossed], numeric[~crossed]) < 1e-7
        print(f"conv, digit {i} as is: {crossed.sum()} of {len(pixels)} pixels on a pool tie")
    dense64 = as_float64(nn.load(folder / "dense.npz"))
    one = x[:1].astype(F64)
    target = int(nn.predict(dense64, one)[0].argmax())
    assert check_saliency(dense64, one, target, np.arange(784)) == 0  # every pixel
    for i in range(5):
        one = x[i : i + 1]
        target = int(nn.predict(conv, one)[0].argmax())
        _, c = explain.integrated_gradients(conv, one, target, steps=64)
        assert c.relative_gap < 0.01, (i, c)


@pytest.mark.slow
def test_saliency_depends_on_the_trained_weights(trained, mnist_folder):
    """Adebayo et al.'s sanity check: over 100 test digits, the trained conv model's saliency and
    that of the same architecture with re-drawn weights rank pixels differently (median Spearman
    correlation below 0.5)."""
    from pipeline.data import scale
    from pipeline.idx import load_mnist_split

    conv, _ = trained
    random = nn.Sequential.from_config(conv.config())
    rng = np.random.default_rng(123)
    for layer in random.layers:
        if hasattr(layer, "reset_parameters"):  # Dense, Conv2D; BatchNorm keeps its fresh state
            layer.reset_parameters(rng)
    images, _ = load_mnist_split(mnist_folder, "test")
    x = scale(images[:100])
    targets = nn.predict(conv, x).argmax(axis=1)
    ours = explain.saliency(conv, x, targets)
    theirs = explain.saliency(random.eval(), x, targets)
    rho = np.median([spearman(a, b) for a, b in zip(ours, theirs, strict=True)])
    rho_abs = np.median([spearman(np.abs(a), np.abs(b)) for a, b in zip(ours, theirs, strict=True)])
    print(f"median Spearman, trained vs re-drawn weights: {rho:.3f} (of |saliency|: {rho_abs:.3f})")
    assert rho < 0.5, rho  # the signed maps, as the page shows them
