"""Optimizers, the training loop, and save/load."""

import json
import zipfile

import numpy as np
import pytest

import nn


def blobs(n=60, k=3, d=5, seed=0):
    """Separable Gaussian blobs: x (n, d) float32, one-hot y (n, k)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centers = rng.normal(scale=4.0, size=(k, d))
    x = (centers[labels] + rng.normal(size=(n, d))).astype(np.float32)
    return x, np.eye(k, dtype=np.float32)[labels]


def mlp(seed=0, d=5, k=3):
    return nn.Sequential([nn.Dense(d, 16, rng=seed), nn.ReLU(), nn.Dense(16, k, rng=seed + 1)])


def test_sgd_step_is_p_minus_lr_g():
    m = nn.Dense(3, 2, rng=0)
    m.grads["weight"][...] = 1.0
    m.grads["bias"][...] = -2.0
    w, b = m.params["weight"].copy(), m.params["bias"].copy()
    nn.SGD(0.5).step(m)
    np.testing.assert_allclose(m.params["weight"], w - 0.5)
    np.testing.assert_allclose(m.params["bias"], b + 1.0)


def test_sgd_momentum_accumulates():
    m = nn.Dense(1, 1, rng=0, dtype=np.float64)
    w0 = m.params["weight"].copy()
    opt = nn.SGD(0.1, momentum=0.9)
    for _ in range(2):
        m.grads["weight"][...] = 1.0
        m.grads["bias"][...] = 0.0
        opt.step(m)
    np.testing.assert_allclose(m.params["weight"], w0 - 0.1 * (1 + 1.9))


def test_adam_first_step_moves_each_param_by_lr():
    m = nn.Dense(2, 2, rng=0, dtype=np.float64)
    m.grads["weight"][...] = [[1e-3, -5.0], [2.0, 7.0]]
    m.grads["bias"][...] = [3.0, -3.0]
    before = m.params["weight"].copy()
    nn.Adam(lr=0.01).step(m)
    np.testing.assert_allclose(
        m.params["weight"] - before, -0.01 * np.sign(m.grads["weight"]), rtol=1e-4
    )


def test_adam_matches_textbook_formula():
    rng = np.random.default_rng(0)
    m = nn.Dense(3, 2, rng=0, dtype=np.float64)
    p = m.params["weight"].copy()
    mom, vel = np.zeros_like(p), np.zeros_like(p)
    opt = nn.Adam(lr=0.1, betas=(0.8, 0.9), eps=1e-3)
    for t in range(1, 4):
        g = rng.normal(size=p.shape)
        m.grads["weight"][...] = g
        m.grads["bias"][...] = 0
        opt.step(m)
        mom = 0.8 * mom + 0.2 * g
        vel = 0.9 * vel + 0.1 * g * g
        p = p - 0.1 * (mom / (1 - 0.8**t)) / (np.sqrt(vel / (1 - 0.9**t)) + 1e-3)
    np.testing.assert_allclose(m.params["weight"], p, rtol=1e-12)


def test_initial_loss_near_ln10():
    x = np.random.default_rng(0).random((500, 1, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(500) % 10]
    model = nn.Sequential(
        [nn.Flatten(), nn.Dense(784, 64, rng=0), nn.ReLU(), nn.Dense(64, 10, rng=1)]
    )
    loss = nn.losses.cross_entropy(y, model.forward(x))
    assert abs(loss - np.log(10)) < 0.1


def test_overfits_20_samples_to_100_percent():
    rng = np.random.default_rng(1)
    x = rng.random((20, 1, 8, 8), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(20) % 10]  # random labels: memorisation only
    model = nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, rng=0),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(36, 32, rng=1),
            nn.ReLU(),
            nn.Dense(32, 10, rng=2),
        ]
    )
    hist = nn.fit(
        model, x, y, loss="cross_entropy", optimizer=nn.Adam(0.01), epochs=150, batch_size=5, rng=0
    )
    assert hist[-1]["train_loss"] < 0.05
    assert nn.evaluate(model, x, y)["accuracy"] == 1.0


def test_fit_is_reproducible_and_seed_matters():
    x, y = blobs()

    def run(seed):
        model = mlp()
        hist = nn.fit(
            model,
            x,
            y,
            loss="cross_entropy",
            optimizer=nn.SGD(0.05, momentum=0.9),
            epochs=3,
            batch_size=8,
            rng=seed,
        )
        return hist, model.params

    (h1, p1), (h2, p2), (_, p3) = run(0), run(0), run(1)
    assert h1 == h2 and all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert any(not np.array_equal(p1[k], p3[k]) for k in p1)


def test_fit_history_callback_and_validation():
    x, y = blobs()
    rows = []
    hist = nn.fit(
        mlp(),
        x,
        y,
        loss="cross_entropy",
        optimizer=nn.Adam(0.01),
        epochs=4,
        batch_size=16,
        rng=0,
        validation=(x[:10], y[:10]),
        callback=rows.append,
    )
    assert rows == hist and [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert set(hist[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_fit_steps_the_optimizers_schedule():
    """The one learning-rate mechanism: the optimizer's schedule, set before every batch."""
    x, y = blobs()
    steps = -(-len(x) // 32)
    opt = nn.SGD(0.1, schedule=nn.schedules.Step(0.1, steps, 0.5))
    nn.fit(mlp(), x, y, loss="cross_entropy", optimizer=opt, epochs=3, rng=0)
    assert opt.lr == pytest.approx(0.025)  # the last batch of epoch 3: two halvings


def test_fit_restores_input_grad():
    x, y = blobs()
    model = mlp()
    nn.fit(model, x, y, loss="cross_entropy", optimizer=nn.SGD(0.1), rng=0)
    assert model.input_grad and model.layers[0].input_grad
    model.forward(x[:2])
    assert model.backward(np.ones((2, 3), np.float32)).shape == (2, 5)


def test_nan_loss_stops_with_epoch_and_batch():
    x, y = blobs()
    x[37] = np.nan  # sample 37 lands in some batch of epoch 1
    with pytest.raises(nn.TrainingDiverged, match=r"loss became nan at epoch 1, batch \d+"):
        nn.fit(mlp(), x, y, loss="cross_entropy", optimizer=nn.SGD(0.1), batch_size=8, rng=0)


def test_exploding_lr_stops_training():
    x, y = blobs()
    x *= 1e6
    with (
        pytest.raises(nn.TrainingDiverged, match=r"at epoch \d+, batch \d+"),
        np.errstate(all="ignore"),
    ):
        nn.fit(mlp(), x, y, loss="mse", optimizer=nn.SGD(1e6), epochs=50, batch_size=8, rng=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "hinge"}, "loss must be one of mse, binary_cross_entropy, cross_entropy"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": -1}, "batch_size must be a positive integer"),
        ({"per_batch": nn.PerBatch(label_smoothing=1.0)}, "label_smoothing must be in"),
    ],
)
def test_fit_bad_arguments(kwargs, match):
    x, y = blobs()
    args = {"loss": "cross_entropy", "optimizer": nn.SGD(0.1)} | kwargs
    with pytest.raises(ValueError, match=match):
        nn.fit(mlp(), x, y, **args)


def test_fit_mismatched_data():
    x, y = blobs()
    with pytest.raises(ValueError, match="x has 60 samples but y has 59"):
        nn.fit(mlp(), x, y[:-1], loss="cross_entropy", optimizer=nn.SGD(0.1))


def test_loss_shape_mismatch():
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: y_true has shape \(2, 3\) but y_pred "
        r"has \(2, 4\)",
    ):
        nn.losses.cross_entropy(np.zeros((2, 3)), np.zeros((2, 4)))


def test_predict_batches_give_same_result():
    x, _ = blobs(n=50)
    model = mlp()
    np.testing.assert_allclose(nn.predict(model, x, batch_size=7), model.forward(x), rtol=1e-6)


# --- save / load ---------------------------------------------------------------------------


def conv_model():
    return nn.Sequential(
        [
            nn.Conv2D(1, 3, 3, padding=1, rng=0),
            nn.Sigmoid(),
            nn.MaxPool2D(2),
            nn.Reshape((48,)),
            nn.Dense(48, 4, rng=1),
            nn.Tanh(),
            nn.Softmax(),
        ]
    )


def test_save_load_round_trip(tmp_path):
    model = conv_model()
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "m.npz"
    nn.save(model, path, metadata={"classes": [0, 1, 2, 3]})
    loaded, meta = nn.load(path, with_metadata=True)
    assert meta == {"classes": [0, 1, 2, 3]}
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
    with np.load(path, allow_pickle=False) as f:  # plain arrays, no pickle
        assert set(f.files) == {"__model__", *model.params}


def test_save_is_byte_identical(tmp_path):
    nn.save(conv_model(), tmp_path / "a.npz")
    nn.save(conv_model(), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def _rewrite(path, mutate):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    mutate(arrays)
    np.savez(path, **arrays)


def test_load_not_a_model(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(nn.ModelFileError, match="not an nn model file"):
        nn.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", a=np.zeros(3))
    with pytest.raises(nn.ModelFileError, match="no '__model__' entry"):
        nn.load(tmp_path / "y.npz")
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "missing.npz")


def test_load_wrong_shape_names_key_and_shapes(tmp_path):
    path = tmp_path / "m.npz"
    nn.save(conv_model(), path)
    _rewrite(path, lambda a: a.__setitem__("4.weight", np.zeros((47, 4), np.float32)))
    with pytest.raises(
        nn.ModelFileError,
        match=r"'4.weight' has shape \(47, 4\).*expects "
        r"\(48, 4\)",
    ):
        nn.load(path)


def test_load_missing_and_extra_keys(tmp_path):
    path = tmp_path / "m.npz"
    nn.save(conv_model(), path)
    _rewrite(path, lambda a: a.pop("0.bias"))
    with pytest.raises(nn.ModelFileError, match=r"missing array '0.bias'"):
        nn.load(path)
    nn.save(conv_model(), path)
    _rewrite(path, lambda a: a.__setitem__("9.weight", np.zeros(2)))
    with pytest.raises(nn.ModelFileError, match=r"unexpected array '9.weight'"):
        nn.load(path)


def test_load_bad_architecture(tmp_path):
    path = tmp_path / "m.npz"
    nn.save(conv_model(), path)
    header = {"format": 1, "architecture": {"type": "Bogus", "config": {}}, "metadata": {}}
    _rewrite(path, lambda a: a.__setitem__("__model__", np.array(json.dumps(header))))
    with pytest.raises(nn.ModelFileError, match="unknown layer type 'Bogus'"):
        nn.load(path)
