"""The benchmark models and the nn -> PyTorch / Keras converters (``bench/``).

The converters are checked against nn's own forward pass where the peers are installed (the
``.venv-bench`` environment of ``make bench-peers``); elsewhere those two tests skip.
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

import nn
from bench.convert import input_shapes, to_keras, to_torch
from bench.models import LOSSES, NAMES, build, train_flops_per_sample


def test_four_models_with_their_losses():
    for name in NAMES:
        model = build(name)
        out = model.forward(np.zeros((2, 1, 28, 28), np.float32))
        assert out.shape == (2, 10), name
        assert LOSSES[name] in nn.losses.LOSSES
    assert build("C", classes=2).forward(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 2)
    assert build("A", dtype=np.float64).params["1.weight"].dtype == np.float64
    with pytest.raises(ValueError, match="one of A, B, C, D, got 'E'"):
        build("E")


def test_seeds_and_flops():
    a0, a1 = build("B", seed=0), build("B", seed=1)
    assert np.array_equal(build("B", seed=0).params["1.weight"], a0.params["1.weight"])
    assert not np.array_equal(a0.params["1.weight"], a1.params["1.weight"])
    # B: 784x128 + 128x10 multiply-adds; forward + weight gradient for the first, + input gradient
    # for the second: 2 FLOPs each.
    assert train_flops_per_sample("B") == 2 * (2 * 784 * 128 + 3 * 128 * 10)


def test_input_shapes():
    model = build("D")
    assert input_shapes(model, (1, 28, 28)) == [
        (1, 28, 28),
        (8, 26, 26),
        (8, 26, 26),
        (8, 13, 13),
        (1352,),
    ]
    assert model.training  # left as it was


def _conv_bn_model():
    """Every layer kind the converters handle, with non-trivial BatchNorm statistics."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, padding=1, rng=1),
            nn.BatchNorm(4),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(4 * 14 * 14, 16, rng=2),
            nn.BatchNorm(16),
            nn.Tanh(),
            nn.Dropout(0.5, rng=3),
            nn.Dense(16, 10, rng=4),
            nn.Sigmoid(),
        ]
    )
    for layer in model.layers:
        if isinstance(layer, nn.BatchNorm):
            c = layer.num_features
            layer.params["gamma"][:] = rng.uniform(0.5, 2, c)
            layer.params["beta"][:] = rng.normal(size=c)
            layer.buffers["running_mean"][:] = rng.normal(size=c)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2, c)
    return model.eval()


def _images():
    return np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("name", ["conv_bn", *NAMES])
def test_to_torch_matches_nn(name):
    torch = pytest.importorskip("torch")
    model = _conv_bn_model() if name == "conv_bn" else build(name).eval()
    x = _images()
    with torch.no_grad():
        got = to_torch(model).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["conv_bn", *NAMES])
def test_to_keras_matches_nn(name):
    pytest.importorskip("tensorflow")
    model = _conv_bn_model() if name == "conv_bn" else build(name).eval()
    x = _images()
    got = np.asarray(to_keras(model)(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-4, atol=1e-5)


def test_unsupported_layer_is_named():
    model = nn.Sequential([nn.Flatten(), nn.Dense(784, 10, rng=0), nn.Softmax()])
    for convert in (to_torch, to_keras):
        with pytest.raises(ValueError, match=r"layer 2 \(Softmax\) has no converter"):
            convert(model)


def test_each_nn_variant_runs_with_its_numerics():
    from bench.bench_peers import PINNED, VARIANTS, nn_numerics

    if "OPENBLAS_CORETYPE" not in PINNED:
        pytest.skip("this CPU gets no pinned kernel (not x86-64 with AVX2 and FMA)")
    kernel, loops = PINNED["OPENBLAS_CORETYPE"], PINNED["NPY_DISABLE_CPU_FEATURES"]
    pinned = {"OPENBLAS_CORETYPE": kernel, "NPY_DISABLE_CPU_FEATURES": loops}
    assert nn_numerics("nn") == nn_numerics("nn-shards") == pinned
    assert nn_numerics("nn-native") == {"OPENBLAS_CORETYPE": "", "NPY_DISABLE_CPU_FEATURES": ""}
    assert nn_numerics("nn-native-loops-shards") == {
        "OPENBLAS_CORETYPE": kernel,
        "NPY_DISABLE_CPU_FEATURES": "",
    }
    assert {v for v, fw in VARIANTS.items() if fw == "nn"} == {
        f"nn{native}{shards}"
        for native in ("", "-native", "-native-loops")
        for shards in ("", "-shards")
    }


def test_the_table_takes_the_variant_timed_in_every_round():
    """With ``--prune`` only round 1's fastest variant of each framework runs again: a variant
    timed once must not win its cell over that one's median by one lucky round."""
    from bench.bench_peers import markdown

    def row(framework, variant, median, rounds):
        speed = {f"{k}_samples_per_s": median for k in ("median", "min", "max")}
        return {"framework": framework, "variant": variant, "model": "D", "batch": 128,
                "threads": 1, "rounds": rounds, "gflops": 1.0, "fraction_of_matmul_peak": 0.1,
                "test_accuracy": 0.9, "peak_rss_mb": 300} | speed  # fmt: skip

    rows = [row("nn", "nn", 52_000, 1), row("nn", "nn-native-loops", 45_000, 3),
            row("torch", "torch", 22_000, 3), row("torch", "torch-compile", 30_000, 1),
            row("keras", "keras", 39_000, 3)]  # fmt: skip
    table = markdown({"rows": rows, "matmul_gflops_by_threads": {1: 100.0}})
    (line,) = [x for x in table.splitlines() if x.startswith("| D |")]
    assert "`nn-native-loops`" in line and "`torch` " in line and "**1.15×**" in line


@pytest.mark.parametrize("model", ["B", "D"])
def test_the_profile_accounts_for_the_whole_step(model, mnist_folder):
    """``bench.profile_conv`` (its own process: it pins the numerics before NumPy loads): every
    layer of a dense or a conv net has its rows, and the rows add up to the step's total."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile_conv", "--model", model, "--steps", "3",
         "--batch", "8"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "MNIST_MIRROR": str(mnist_folder)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(re.findall(r"^\| (.+?) \| ([\d.]+) \| [\d.]+% \|$", done.stdout, re.M))
    total = float(rows.pop("**total**"))
    parts = {k.split(" (")[0] for k in rows}
    for i, layer in enumerate(build(model).layers):
        assert f"{i:2d} {type(layer).__name__} forward".strip() in parts
    assert sum(map(float, rows.values())) == pytest.approx(total, abs=0.002 * len(rows))
    assert "% of this host's one-thread float32 limit" in done.stdout
