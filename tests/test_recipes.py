"""Training recipes: modes, Dropout, BatchNorm, initializers, schedules, optimizer options, label
smoothing, clipping, augmentation, keep-best."""

import math

import numpy as np
import pytest

import nn
from nn import losses, schedules
from nn.augment import Compose, RandomFlip, RandomShift
from nn.gradcheck import numerical_gradient, relative_error
from nn.optim import clip_grad_norm


def images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 8, 8), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    return x, y


def bn_net(seed=0):
    return nn.Sequential(
        [
            nn.Conv2D(1, 4, 3, rng=seed),
            nn.ReLU(),
            nn.BatchNorm(4),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.3, rng=seed),
            nn.Dense(36, 3, rng=seed + 1),
        ]
    )


# --- modes -------------------------------------------------------------------------------------


def test_modes_propagate_and_fit_predict_use_them():
    model = bn_net()
    assert model.eval() is model and not any(layer.training for layer in model.layers)
    model.train()
    assert all(layer.training for layer in model.layers)
    x, y = images()
    nn.fit(model, x, y, loss="cross_entropy", optimizer=nn.Adam(1e-2), batch_size=8, rng=0)
    assert model.training  # restored
    a = nn.predict(model, x)
    b = nn.predict(model, x)
    np.testing.assert_array_equal(a, b)  # eval mode: no dropout masks, running statistics
    assert model.training
    model.eval()
    np.testing.assert_array_equal(model.forward(x), a)


# --- Dropout -----------------------------------------------------------------------------------


def test_dropout_train_and_eval():
    x = np.ones((200, 50), np.float32)
    d = nn.Dropout(0.25, rng=0)
    y = d.forward(x)
    assert abs((y == 0).mean() - 0.25) < 0.02
    assert abs(y.mean() - 1.0) < 0.03  # inverted: the expectation is kept
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)
    d.eval()
    assert d.forward(x) is x


@pytest.mark.parametrize("p", [-0.1, 1.0, "half"])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="Dropout: p must be (in|a number)"):
        nn.Dropout(p)


# --- BatchNorm ---------------------------------------------------------------------------------


def test_batchnorm_normalizes_and_tracks_running_statistics():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 3, 5, 5)) * [[[[2.0]], [[0.5]], [[3.0]]]] + 4).astype(np.float32)
    bn = nn.BatchNorm(3, momentum=0.5)
    y = bn.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    m = 64 * 25
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        bn.buffers["running_var"], 0.5 + 0.5 * x.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-4
    )
    bn.eval()
    expected = (x - bn.buffers["running_mean"].reshape(1, 3, 1, 1)) / np.sqrt(
        bn.buffers["running_var"].reshape(1, 3, 1, 1) + 1e-5
    )
    np.testing.assert_allclose(bn.forward(x), expected, rtol=1e-4, atol=1e-5)


def test_batchnorm_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3\) or \(N, 3, H, W\)"):
        nn.BatchNorm(3).forward(np.zeros((2, 4), np.float32))


def test_save_load_keeps_running_statistics(tmp_path):
    model = bn_net()
    x, y = images()
    nn.fit(model, x, y, loss="cross_entropy", optimizer=nn.Adam(1e-2), batch_size=8, rng=0)
    nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.buffers["2.running_var"], model.buffers["2.running_var"])
    np.testing.assert_array_equal(nn.predict(loaded, x), nn.predict(model, x))


def test_sharded_batchnorm_and_dropout_do_not_depend_on_threads():
    x, y = images(64)
    results = []
    for threads in (1, 2):
        model = bn_net()
        nn.fit(
            model,
            x,
            y,
            loss="cross_entropy",
            optimizer=nn.Adam(1e-2),
            epochs=2,
            batch_size=16,
            rng=0,
            shards=2,
            threads=threads,
        )
        results.append({k: a.tobytes() for k, a in (model.params | model.buffers).items()})
    assert results[0] == results[1]


# --- initializers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "init, std",
    [
        ("he_normal", math.sqrt(2 / 400)),
        ("he_uniform", math.sqrt(2 / 400)),
        ("glorot_normal", math.sqrt(2 / 700)),
        ("glorot_uniform", math.sqrt(2 / 700)),
        ("default", 1 / math.sqrt(400) / math.sqrt(3)),
    ],
)
def test_initializer_scales(init, std):
    w = nn.Dense(400, 300, rng=0, init=init).params["weight"]
    assert w.std() == pytest.approx(std, rel=0.02)
    if init.endswith("uniform"):
        assert np.abs(w).max() <= std * math.sqrt(3) * 1.0001
    conv = nn.Conv2D(4, 6, 3, rng=0, init=init)
    if init != "default":
        assert not conv.params["bias"].any()


def test_unknown_initializer():
    with pytest.raises(ValueError, match="Conv2D: init must be one of default, he_uniform"):
        nn.Conv2D(1, 2, 3, init="lecun")


# --- schedules and optimizers ------------------------------------------------------------------


def test_schedules():
    assert schedules.Step(1.0, step_size=10, gamma=0.5).lr(25) == 0.25
    assert schedules.Exponential(1.0, gamma=0.5, steps_per_epoch=10).lr(5) == pytest.approx(2**-0.5)
    cos = schedules.Cosine(1.0, total_steps=100, min_lr=0.1)
    assert (cos.lr(0), cos.lr(50), cos.lr(100), cos.lr(150)) == pytest.approx((1, 0.55, 0.1, 0.1))
    one = schedules.OneCycle(1.0, total_steps=100, pct_start=0.2, div_factor=10)
    lrs = [one.lr(t) for t in range(100)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 19 and lrs[-1] == pytest.approx(0.1 / 1e4)
    assert all(a <= b for a, b in zip(lrs[:19], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))
    with pytest.raises(ValueError, match="OneCycle: pct_start must be in"):
        schedules.OneCycle(1.0, 10, pct_start=1.5)


def test_optimizer_consults_its_schedule_every_step():
    m = nn.Dense(1, 1, rng=0, dtype=np.float64)
    opt = nn.SGD(1.0, schedule=schedules.Step(1.0, step_size=1, gamma=0.5))
    seen = []
    for _ in range(3):
        m.grads["weight"][...] = 0
        m.grads["bias"][...] = 0
        opt.step(m)
        seen.append(opt.lr)
    assert seen == [1.0, 0.5, 0.25]


def test_sgd_nesterov_and_l2():
    m = nn.Dense(1, 1, rng=0, dtype=np.float64)
    w0 = float(m.params["weight"][0, 0])
    opt = nn.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.5)
    m.grads["weight"][...] = 1.0
    m.grads["bias"][...] = 1.0
    b0 = float(m.params["bias"][0])
    opt.step(m)
    g = 1.0 + 0.5 * w0  # L2 on the weight only
    assert m.params["weight"][0, 0] == pytest.approx(w0 - 0.1 * (g + 0.9 * g))
    assert m.params["bias"][0] == pytest.approx(b0 - 0.1 * (1 + 0.9))
    with pytest.raises(ValueError, match="nesterov needs a momentum"):
        nn.SGD(0.1, nesterov=True)


def test_adamw_decay_is_decoupled():
    m = nn.Dense(2, 2, rng=0, dtype=np.float64)
    w, b = m.params["weight"].copy(), m.params["bias"].copy()
    for g in m.grads.values():
        g[...] = 0.0
    nn.Adam(0.1, weight_decay=0.01).step(m)  # zero gradient: only the decay moves
    np.testing.assert_allclose(m.params["weight"], w * (1 - 0.1 * 0.01))
    np.testing.assert_array_equal(m.params["bias"], b)


def test_clip_grad_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 10.0) == 5.0 and grads["a"][0] == 3.0
    assert clip_grad_norm(grads, 1.0) == 5.0
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-5)


# --- label smoothing ---------------------------------------------------------------------------


def test_label_smoothing_gradient_and_value():
    fn, prime = losses.get("cross_entropy", label_smoothing=0.1)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 5))
    y = np.eye(5)[[0, 3, 1, 1]]
    numeric = numerical_gradient(lambda: fn(y, z), z)
    assert relative_error(prime(y, z), numeric) < 1e-6
    assert fn(y, z) == pytest.approx(losses.cross_entropy(y * 0.9 + 0.02, z))
    with pytest.raises(ValueError, match="label_smoothing needs the cross_entropy loss"):
        losses.get("mse", label_smoothing=0.1)


# --- augmentation ------------------------------------------------------------------------------


def naive_shift(img, dy, dx):
    out = np.zeros_like(img)
    h, w = img.shape[-2:]
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[..., i, j] = img[..., si, sj]
    return out


def test_random_shift_matches_naive_per_image_shift():
    x = np.random.default_rng(1).random((12, 2, 6, 7), dtype=np.float32)
    got = RandomShift(2, rng=5)(x)
    dy, dx = np.random.default_rng(5).integers(-2, 3, size=(2, 12))
    for n in range(12):
        np.testing.assert_array_equal(got[n], naive_shift(x[n], dy[n], dx[n]))
    assert got.dtype == x.dtype and got.shape == x.shape
    with pytest.raises(ValueError, match="RandomShift: max_shift must be a positive integer"):
        RandomShift(0)


def test_random_flip_mirrors_the_chosen_images_only():
    x = np.random.default_rng(1).random((40, 2, 5, 6), dtype=np.float32)
    got = RandomFlip(0.5, rng=7)(x)
    chosen = np.random.default_rng(7).random(40) < 0.5
    assert 5 < chosen.sum() < 35
    for n in range(40):  # a loop oracle: column j of a mirrored image is column W-1-j
        want = x[n][:, :, [5 - j for j in range(6)]] if chosen[n] else x[n]
        np.testing.assert_array_equal(got[n], want)
    assert got.dtype == x.dtype and not np.shares_memory(got, x)
    np.testing.assert_array_equal(RandomFlip(0.0)(x), x)
    np.testing.assert_array_equal(RandomFlip(1.0)(x), x[..., ::-1])
    with pytest.raises(ValueError, match=r"RandomFlip: p must be in \[0.0, 1.0\]"):
        RandomFlip(1.5)


def test_compose_applies_in_order():
    x = np.random.default_rng(2).random((8, 1, 6, 6), dtype=np.float32)
    got = Compose([RandomFlip(1.0), RandomShift(1, rng=3)])(x)
    np.testing.assert_array_equal(got, RandomShift(1, rng=3)(x[..., ::-1].copy()))


# --- keep-best and early stopping --------------------------------------------------------------


def test_keep_best_restores_best_epoch_and_stops():
    model = nn.Dense(2, 2, rng=0)
    kb = nn.KeepBest("val_loss", patience=2)
    assert not kb.update({"epoch": 1, "val_loss": 0.5}, model)
    best = model.params["weight"].copy()
    model.params["weight"][...] += 1
    assert not kb.update({"epoch": 2, "val_loss": 0.7}, model)
    assert kb.update({"epoch": 3, "val_loss": 0.6}, model)  # two epochs without improvement
    kb.restore(model)
    np.testing.assert_array_equal(model.params["weight"], best)
    assert (kb.best_epoch, kb.best_value) == (1, 0.5)


def test_fit_stops_early_with_keep_best():
    x, y = images(48)
    model = bn_net()
    kb = nn.KeepBest("val_accuracy", patience=1)
    history = nn.fit(
        model,
        x,
        y,
        loss="cross_entropy",
        optimizer=nn.Adam(0.05),
        epochs=50,
        batch_size=16,
        rng=0,
        validation=images(16, seed=1),
        keep_best=kb,
    )
    assert len(history) < 50 and len(history) == kb.best_epoch + 1
    assert nn.evaluate(model, *images(16, seed=1))["accuracy"] == kb.best_value
    with pytest.raises(ValueError, match="KeepBest: history has no 'val_accuracy'"):
        nn.fit(model, x, y, loss="cross_entropy", optimizer=nn.SGD(0.1), keep_best=kb)
