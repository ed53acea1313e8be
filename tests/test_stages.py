"""Pure functions of the pipeline stages, and their handling of bad input."""

import gzip
import hashlib
import http.server
import math
import threading
from functools import partial

import numpy as np
import pytest

import nn
from pipeline import download as fetch
from pipeline.data import make_subset, one_hot, stratified_order
from pipeline.datasets import DATASETS, absolute_mirrors, mirrors_for
from pipeline.errors import PipelineError
from pipeline.idx import load_mnist_split, parse_idx
from pipeline.metrics import classification_metrics, confusion_matrix, per_class_scores
from pipeline.models import build_model, make_optimizer
from pipeline.params import (
    ConvParams,
    PreprocessParams,
    SubsetParams,
    TrainParams,
    load_params,
    parse_section,
)
from pipeline.training import train


def idx_bytes(arr, dtype_code=8):
    arr = np.asarray(arr, np.uint8)
    return (
        bytes([0, 0, dtype_code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes() + arr.tobytes()
    )


# --- IDX ---------------------------------------------------------------------------------------


def test_parse_idx_round_trip():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a), ndim=3), a)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "not an IDX file"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4, "data type 0x0d is not uint8"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        (
            idx_bytes(np.zeros((2, 2)))[:-1],
            r"header says \(2, 2\) \(4 bytes\) but the file holds 3",
        ),
        (idx_bytes(np.zeros((2, 2))) + b"\x00", "but the file holds 5 bytes"),
        (idx_bytes(np.zeros(4)), "expected 3 dimensions, header says 1"),
    ],
)
def test_parse_idx_rejects_malformed(data, match):
    with pytest.raises(PipelineError, match=match):
        parse_idx(data, name="f", ndim=3 if "dimensions" in match else None)


def test_load_split_checks_counts_and_labels(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 28, 28))))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(PipelineError, match="3 images and 3 labels, expected 10000"):
        load_mnist_split(tmp_path, "test")
    with pytest.raises(PipelineError, match="train-images-idx3-ubyte: not found"):
        load_mnist_split(tmp_path, "train")


# --- preprocess --------------------------------------------------------------------------------


def test_stratified_order_every_prefix_is_balanced():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    order = stratified_order(labels, np.random.default_rng(0))
    assert sorted(order) == list(range(1000))
    counts = np.bincount(labels[order[:100]], minlength=3)
    np.testing.assert_allclose(counts, [60, 30, 10], atol=1)
    other = stratified_order(labels, np.random.default_rng(1))
    assert not np.array_equal(order, other)


def test_one_hot_uses_class_positions():
    np.testing.assert_array_equal(one_hot(np.array([7, 3, 7]), [7, 3]), [[1, 0], [0, 1], [1, 0]])


def fake_mnist(n_train=200, n_test=50, seed=0):
    rng = np.random.default_rng(seed)
    tr = (
        rng.integers(0, 256, (n_train, 28, 28), np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
    )
    te = (rng.integers(0, 256, (n_test, 28, 28), np.uint8), np.arange(n_test, dtype=np.uint8) % 10)
    return tr, te


def test_make_subset_sizes_classes_and_scaling():
    train, test = fake_mnist()
    p = SubsetParams(classes=[3, 5], train_size=30, val_size=6)
    d = make_subset(train, test, p, np.random.default_rng(0), "preprocess.conv")
    assert d["x_train"].shape == (30, 1, 28, 28) and d["x_train"].dtype == np.float32
    assert 0.0 <= d["x_train"].min() and d["x_train"].max() <= 1.0
    assert d["y_train"].shape == (30, 2) and d["y_val"].shape == (6, 2)
    np.testing.assert_array_equal(d["y_val"].sum(0), [3, 3])  # stratified
    assert len(d["x_test"]) == 10 and d["classes"].tolist() == [3, 5]
    # validation and training images are disjoint
    tr = {a.tobytes() for a in d["x_train"]}
    assert not tr & {a.tobytes() for a in d["x_val"]}


def test_make_subset_train_size_too_large():
    train, test = fake_mnist()
    p = SubsetParams(classes=[0, 1], train_size=100, val_size=10)
    with pytest.raises(
        PipelineError, match=r"preprocess.dense.train_size: 100 is more than the 30"
    ):
        make_subset(train, test, p, np.random.default_rng(0), "preprocess.dense")


# --- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, match",
    [
        ({"seed": 0, "dense": {}, "conv": {}, "colour": 1}, r"^preprocess.colour: unknown key"),
        ({"seed": "x", "dense": {}, "conv": {}}, r"^preprocess.seed: expected int, got 'x'"),
        ({"seed": 0, "dense": {"classes": []}, "conv": {}}, r"classes: .* at least two"),
        (
            {"seed": 0, "dense": {}, "conv": {"classes": [3]}},
            r"^preprocess.conv.classes: a classifier needs at least two digits, got \[3\]$",
        ),
        ({"seed": 0, "dense": {"classes": [1, 1]}, "conv": {}}, "must be distinct digits"),
        ({"seed": 0, "dense": {"classes": [10]}, "conv": {}}, "must be distinct digits 0-9"),
        ({"seed": 0, "dense": {"val_size": -1}, "conv": {}}, "preprocess.dense.val_size: must not"),
        ({"seed": 0, "dense": {"train_size": 1.5}, "conv": {}}, "train_size: expected int, got"),
        ({"seed": 0, "dense": {}}, "preprocess.conv: missing key"),
    ],
)
def test_preprocess_params_errors(section, match):
    with pytest.raises(PipelineError, match=match):
        parse_section(PreprocessParams, section, "preprocess")


def tiny_data(n_classes=3, n=8):
    rng = np.random.default_rng(0)
    y = np.eye(n_classes, dtype=np.float32)[np.arange(n) % n_classes]
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    return {"x_train": x, "y_train": y, "x_val": x[:4], "y_val": y[:4]}


@pytest.mark.parametrize(
    "section, match",
    [
        # the type and key checks of the parser
        ({"lr": "fast"}, r"^train_dense.lr: expected float, got 'fast'$"),
        ({"shards": 1.5}, r"^train_dense.shards: expected int, got 1.5$"),
        ({"batch_norm": "yes"}, r"^train_dense.batch_norm: expected bool, got 'yes'$"),
        ({"batch_size": True}, r"^train_dense.batch_size: expected int, got True$"),
        ({"epoch": 3}, r"^train_dense.epoch: unknown key"),
        # choices among the pipeline's tables, and rules across keys
        ({"schedule": "linear"}, r"^train_dense.schedule: must be one of constant, step, exp"),
        ({"optimizer": "rmsprop"}, r"^train_dense.optimizer: must be one of adam, sgd"),
        ({"loss": "cross_entropy", "output_activation": "softmax"}, "cross_entropy takes logits"),
        ({"nesterov": True}, r"^train_dense.nesterov: needs optimizer sgd, got 'adam'$"),
        # ranges: the library's checks, named by the params key
        ({"lr": -0.1}, r"^train_dense.lr: OneCycle: max_lr must be in \(0.0, inf\], got -0.1$"),
        ({"epochs": 0}, r"^train_dense.epochs: OneCycle: total_steps must be a positive integer"),
        ({"batch_size": 0}, r"^train_dense.batch_size: fit: batch_size must be a positive int"),
        ({"shards": 0}, r"^train_dense.shards: ShardedStep: shards must be a positive integer"),
        ({"warmup": 1.0}, r"^train_dense.warmup: OneCycle: pct_start must be in \(0.0, 1.0\)"),
        ({"betas": [0.9]}, r"^train_dense.betas: Adam: betas must be a pair, got \(0.9,\)$"),
        (
            {"nesterov": True, "optimizer": "sgd"},
            r"^train_dense.nesterov: SGD: nesterov needs a momentum above 0$",
        ),
        ({"weight_decay": -1}, r"^train_dense.weight_decay: Adam: weight_decay must be in \[0.0,"),
        ({"init": "zeros"}, r"^train_dense.init: Dense: init must be one of default, he_uni"),
        ({"dropout": 1}, r"^train_dense.dropout: Dropout: p must be in \[0.0, 1.0\), got 1.0$"),
        (
            {"label_smoothing": 0.1, "loss": "mse", "output_activation": "tanh"},
            r"^train_dense.label_smoothing: losses.get: label_smoothing needs the cross_entropy",
        ),
        ({"clip_norm": 0}, r"^train_dense.clip_norm: PerBatch: clip_norm must be in \(0.0, inf\]"),
        ({"augment_shift": -2}, r"^train_dense.augment_shift: RandomShift: max_shift must be a"),
        ({"augment_rotate": -5}, r"^train_dense.augment_rotate: RandomWarp: rotate must be in"),
        ({"augment_scale": 1.5}, r"^train_dense.augment_scale: RandomWarp: scale must be in"),
        ({"augment_shear": 90}, r"^train_dense.augment_shear: RandomWarp: shear must be in"),
        ({"augment_elastic": -1}, r"^train_dense.augment_elastic: RandomWarp: elastic must be"),
        (
            {"augment_elastic": 30, "augment_elastic_sigma": 0},
            r"^train_dense.augment_elastic_sigma: RandomWarp: sigma must be in \(0.0, inf\]",
        ),
        ({"augment_stroke": 2}, r"^train_dense.augment_stroke: RandomStroke: p must be in"),
        ({"augment_blur": -1}, r"^train_dense.augment_blur: RandomBlur: max_sigma must be in"),
        ({"patience": 0}, r"^train_dense.patience: KeepBest: patience must be a positive int"),
        ({"hidden": [10, 0]}, r"^train_dense.hidden: Dense: out_features must be a positive"),
    ],
)
def test_train_params_errors(section, match):
    """Each mistake is one line naming its key, whether the parser, the stage's cross-key rules
    or the library (the one place each range is written) refuses it; nothing is trained."""
    base = {"schedule": "onecycle", "hidden": [8], "epochs": 1, "batch_size": 4}
    with pytest.raises(PipelineError, match=match):
        train("dense", parse_section(TrainParams, base | section, "train_dense"), tiny_data())


def test_params_file_errors(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train_dense: [1, 2\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params("train_dense", TrainParams, path)
    path.write_text("fetch: {}\n")
    with pytest.raises(PipelineError, match="missing section 'train_dense'"):
        load_params("train_dense", TrainParams, path)


def test_params_accept_yaml12_exponent_floats(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train_dense:\n  lr: 1e-3\n  lr_decay: 9E-1\n")  # as `dvc exp run -S` writes
    p = load_params("train_dense", TrainParams, path)
    assert p.lr == 0.001 and p.lr_decay == 0.9


def test_build_models_from_params():
    dense = build_model(
        "dense",
        TrainParams(hidden=[40], activation="tanh", output_activation="tanh", loss="mse"),
        10,
        0,
    )
    assert [type(layer).__name__ for layer in dense.layers] == [
        "Flatten",
        "Dense",
        "Tanh",
        "Dense",
        "Tanh",
    ]
    conv = build_model("conv", ConvParams(channels=[4, 8], hidden=[16]), 3, 0)
    assert conv.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 3)
    assert conv.layers[-1].in_features == 16 and conv.layers[7].in_features == 8 * 5 * 5
    with pytest.raises(PipelineError, match="train_conv.pool: pooling by 8 shrinks"):
        build_model("conv", ConvParams(channels=[4, 4], pool=8), 3, 0)
    recipe = ConvParams(channels=[4], hidden=[16], batch_norm=True, dropout=0.5, init="he_normal")
    conv = build_model("conv", recipe, 3, np.random.default_rng(0))
    assert [type(layer).__name__ for layer in conv.layers] == [
        "Conv2D",
        "BatchNorm",
        "ReLU",  # which nn.Sequential runs after the pool (see the test below)
        "MaxPool2D",
        "Flatten",
        "Dense",
        "BatchNorm",
        "ReLU",
        "Dropout",
        "Dense",
    ]
    assert conv.layers[0].init == "he_normal" and conv.layers[8].p == 0.5


def test_conv_model_trains_with_the_relu_after_the_pool_to_the_bit():
    """nn.Sequential runs each ReLU, MaxPool2D of the conv model as MaxPool2D, ReLU (a quarter of
    the ReLU work); training must give exactly the weights of the layers run in their written
    order, with ties in every window of the blank border (as in MNIST) and two shards."""

    class Written(nn.Sequential):
        def _pooled_relus(self):
            return frozenset()  # every layer in its place

    p = ConvParams(channels=[4, 6], kernel_size=3, hidden=[8], batch_norm=True)
    built = build_model("conv", p, 3, np.random.default_rng(0), (1, 14, 14))
    kinds = [type(layer).__name__ for layer in built.layers]
    assert kinds[:8] == ["Conv2D", "BatchNorm", "ReLU", "MaxPool2D"] * 2
    assert built._pooled_relus() == {2, 6}
    written = Written.from_config(built.config())
    assert type(written) is Written and not written._pooled_relus()
    for name, value in built.params.items():
        written.params[name][...] = value
    initial = built.params["4.weight"].copy()
    rng = np.random.default_rng(1)
    x = np.zeros((24, 1, 14, 14), np.float32)
    x[:, :, 3:11, 3:11] = rng.random((24, 1, 8, 8), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 24)]
    for model in (built, written):
        opt = nn.optim.Adam(lr=0.05)
        nn.fit(
            model,
            x,
            y,
            loss="cross_entropy",
            optimizer=opt,
            epochs=3,
            batch_size=8,
            shards=2,
            rng=0,
        )
    assert not np.array_equal(built.params["4.weight"], initial)
    for name, value in {**built.params, **built.buffers}.items():
        assert np.array_equal(value, {**written.params, **written.buffers}[name]), name


@pytest.mark.parametrize(
    "schedule, lrs",
    [
        ("constant", [0.1, 0.1, 0.1, 0.1, 0.1]),
        ("step", [0.1, 0.1, 0.05, 0.05, 0.025]),
        ("cosine", [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2]),
    ],
)
def test_make_optimizer_schedules(schedule, lrs):
    p = TrainParams(lr=0.1, lr_decay=0.5, schedule=schedule, epochs=2, optimizer="sgd")
    opt = make_optimizer(p, steps_per_epoch=2)
    assert [opt.schedule.lr(t) for t in range(len(lrs))] == pytest.approx(lrs)
    assert isinstance(make_optimizer(TrainParams(weight_decay=0.1), 2), nn.Adam)


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_hand_computed():
    # actual:    0 0 0 1 1 2
    # predicted: 0 0 1 1 2 2
    actual, predicted = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(actual, predicted, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    s = per_class_scores(cm)
    np.testing.assert_allclose(s["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(s["recall"], [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(s["f1"], [0.8, 0.5, 2 / 3])
    y_true = np.eye(3)[actual]
    logits = np.eye(3)[predicted] * 5
    summary, per_class, *_ = classification_metrics(y_true, logits, "cross_entropy", [4, 7, 9])
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert per_class["9"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }


def test_per_class_scores_never_divide_by_zero():
    s = per_class_scores(np.array([[3, 0], [0, 0]]))
    np.testing.assert_array_equal(s["precision"], [1, 0])
    np.testing.assert_array_equal(s["recall"], [1, 0])


# --- fetch -------------------------------------------------------------------------------------

SMALL = {name: idx_bytes(np.full(4 + i, i)) for i, name in enumerate(DATASETS["mnist"].sha256)}
CHECKS = {k: hashlib.sha256(v).hexdigest() for k, v in SMALL.items()}


def serve(folder):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fetch_skips_dead_and_corrupt_mirrors(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for name, data in SMALL.items():
        (good / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        (bad / f"{name}.gz").write_bytes(gzip.compress(data[:-1] + b"\x07", mtime=0))
    servers = [serve(bad), serve(good)]
    dead = serve(tmp_path)  # bound, then shut: connection refused
    dead_url = f"http://127.0.0.1:{dead.server_address[1]}/"
    dead.shutdown()
    dead.server_close()
    mirrors = [dead_url] + [f"http://127.0.0.1:{s.server_address[1]}/" for s in servers]
    out = tmp_path / "raw"
    try:
        for name in SMALL:
            fetch.fetch_file(
                name, mirrors, out, sha256=CHECKS[name], retries=2, timeout=5, backoff=0
            )
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
    for name, data in SMALL.items():
        assert (out / name).read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == sorted(SMALL)  # no temp files left


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    name = next(iter(SMALL))
    (mirror / f"{name}.gz").write_bytes(gzip.compress(b"not the file"))
    out = tmp_path / "raw"
    with pytest.raises(PipelineError, match=f"could not fetch {name}: .*checksum mismatch"):
        fetch.fetch_file(name, [str(mirror)], out, sha256=CHECKS[name], retries=1, backoff=0)
    assert not out.exists() or not any(out.iterdir())


def test_mirror_hints_name_the_variables():
    mnist, fashion = DATASETS["mnist"], DATASETS["fashion_mnist"]
    assert fetch.mirror_hint(mnist, {}).startswith("set MNIST_MIRROR to a folder")
    assert "DATA_MIRROR to one with a mnist/ subfolder" in fetch.mirror_hint(mnist, {})
    assert fetch.mirror_hint(fashion, {"MNIST_MIRROR": "/m"}) == (
        "set DATA_MIRROR to a folder or URL with a fashion_mnist/ subfolder of the .gz files"
    )
    assert fetch.mirror_hint(fashion, {"DATA_MIRROR": "/d"}) == "check DATA_MIRROR"
    assert fetch.mirror_hint(mnist, {"MNIST_MIRROR": "/m"}) == "check MNIST_MIRROR"


def test_mirror_lookup_order():
    mnist, fashion = DATASETS["mnist"], DATASETS["fashion_mnist"]
    env = {"MNIST_MIRROR": "/a, http://b/", "DATA_MIRROR": "/data/, http://c"}
    assert mirrors_for(mnist, env) == ["/a", "http://b/", "/data/mnist", "http://c/mnist"]
    assert mirrors_for(fashion, env) == ["/data/fashion_mnist", "http://c/fashion_mnist"]
    assert mirrors_for(fashion, {"MNIST_MIRROR": "/a"}) == list(fashion.mirrors)
    assert mirrors_for(mnist, {}) == list(mnist.mirrors)


def test_mirror_folders_made_absolute_for_a_pipeline_run_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"MNIST_MIRROR": "../m, http://b/", "DATA_MIRROR": "data", "HOME": "/x"}
    assert absolute_mirrors(env) == {
        "MNIST_MIRROR": f"{tmp_path.parent.resolve() / 'm'},http://b/",
        "DATA_MIRROR": str(tmp_path.resolve() / "data"),
    }
    assert absolute_mirrors({"DATA_MIRROR": " "}) == {}


# --- allocator ---------------------------------------------------------------------------------


def test_keep_freed_memory_takes_effect_on_glibc():
    import platform
    import sys

    from pipeline.allocator import keep_freed_memory

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True
