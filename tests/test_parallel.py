"""Data-parallel shards: the same gradient as one batch, and bits that never depend on threads."""

import os

import numpy as np
import pytest

import nn
from nn import losses
from nn.parallel import ShardedStep, replicate, shard_bounds


def conv_net(dtype=np.float64, seed=0):
    return nn.Sequential(
        [
            nn.Conv2D(1, 3, 3, rng=seed, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(27, 8, rng=seed + 1, dtype=dtype),
            nn.Tanh(),
            nn.Dense(8, 4, rng=seed + 2, dtype=dtype),
        ]
    )


def data(n=13, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 8, 8)).astype(dtype)
    y = np.eye(4, dtype=dtype)[rng.integers(0, 4, n)]
    return x, y


@pytest.mark.parametrize(
    "n, shards, sizes",
    [(10, 1, [10]), (10, 3, [4, 3, 3]), (12, 4, [3, 3, 3, 3]), (2, 4, [1, 1]), (0, 2, [])],
)
def test_shard_bounds(n, shards, sizes):
    bounds = shard_bounds(n, shards)
    assert [b - a for a, b in bounds] == sizes
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:]))
    assert not bounds or (bounds[0][0], bounds[-1][1]) == (0, n)


def test_replica_shares_params_not_grads():
    model = conv_net()
    model.input_grad = False
    copy = replicate(model)
    for key, p in model.params.items():
        assert copy.params[key] is p
        assert copy.grads[key] is not model.grads[key]
    assert copy.input_grad is False
    model.params["0.weight"][...] = 0.5
    assert (copy.params["0.weight"] == 0.5).all()


@pytest.mark.parametrize(
    "loss, head",
    [("cross_entropy", None), ("mse", nn.Tanh), ("binary_cross_entropy", nn.Sigmoid)],
)
@pytest.mark.parametrize("shards", [2, 3, 5])
def test_sharded_gradient_is_the_batch_gradient(loss, head, shards):
    x, y = data()
    model = conv_net()
    if head is not None:
        model.layers.append(head())
    fn, prime = losses.get(loss)
    out = model.forward(x)
    model.backward(prime(y, out))
    want = {k: g.copy() for k, g in model.grads.items()}
    want_loss = fn(y, out)
    with ShardedStep(model, fn, prime, shards=shards) as step:
        got_out, got_loss = step(x, y)
    np.testing.assert_allclose(got_out, out, rtol=1e-12)
    assert got_loss == pytest.approx(want_loss, rel=1e-12)
    for k, g in model.grads.items():
        np.testing.assert_allclose(g, want[k], rtol=1e-10, atol=1e-14, err_msg=k)


def test_one_shard_is_the_plain_step_bit_for_bit():
    x, y = data(dtype=np.float32)
    model = conv_net(np.float32)
    out = model.forward(x)
    model.backward(losses.cross_entropy_prime(y, out))
    want = {k: g.copy() for k, g in model.grads.items()}
    with ShardedStep(model, losses.cross_entropy, losses.cross_entropy_prime) as step:
        step(x, y)
    for k, g in model.grads.items():
        assert g.tobytes() == want[k].tobytes()


def fit_conv(epochs, batch_size, shards, threads=None):
    """A float32 conv net trained on 64 samples: ``(history, model)``."""
    x, y = data(n=64, dtype=np.float32)
    model = conv_net(np.float32)
    fit = dict(loss="cross_entropy", optimizer=nn.Adam(0.01), rng=0)
    history = nn.fit(
        model, x, y, epochs=epochs, batch_size=batch_size, shards=shards, threads=threads, **fit
    )
    return history, model


def test_threads_never_change_a_bit():
    """fit with 3 shards on 1 thread and on 3 threads: byte-identical weights and history."""
    runs = []
    for threads in (1, 3):
        history, model = fit_conv(3, 20, shards=3, threads=threads)
        runs.append((history, {k: p.tobytes() for k, p in model.params.items()}))
    assert runs[0] == runs[1]


def test_shards_change_the_bits_but_not_the_learning():
    finals = []
    for shards in (1, 4):
        history, model = fit_conv(30, 16, shards=shards)
        finals.append((history[-1]["train_loss"], model.params["0.weight"].tobytes()))
    assert finals[0][1] != finals[1][1]  # the shard count is part of the experiment
    assert finals[0][0] == pytest.approx(finals[1][0], rel=0.2, abs=0.02)


@pytest.mark.parametrize("shards, match", [(0, "shards must be a positive"), (1.5, "shards")])
def test_bad_shards(shards, match):
    x, y = data()
    with pytest.raises(ValueError, match=match):
        nn.fit(conv_net(), x, y, loss="cross_entropy", optimizer=nn.SGD(0.1), shards=shards)


def test_predict_threads_give_the_same_bits():
    x, _ = data(n=23, dtype=np.float32)
    model = conv_net(np.float32)
    one = nn.predict(model, x, batch_size=5)
    for threads in (2, 3, 8):
        assert nn.predict(model, x, batch_size=5, threads=threads).tobytes() == one.tobytes()
    np.testing.assert_array_equal(one[10:15], model.forward(x[10:15]))


def stateful_net(dtype):
    """Conv, BatchNorm (running buffers), Dropout (its own random stream): all a replica's state."""
    return nn.Sequential(
        [
            nn.Conv2D(1, 3, 3, rng=0, dtype=dtype),
            nn.BatchNorm(3, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dropout(0.25, rng=7),
            nn.Dense(27, 4, rng=1, dtype=dtype),
        ]
    )


def fit_stateful(dtype, threads, workers, smoothing):
    x, y = data(n=50, dtype=dtype)
    model = stateful_net(dtype)
    held = model.params["0.weight"]
    history = nn.fit(
        model, x, y, loss="cross_entropy", optimizer=nn.Adam(0.01), epochs=3, batch_size=16,
        rng=0, shards=3, threads=threads, workers=workers,
        per_batch=nn.PerBatch(label_smoothing=smoothing),
    )  # fmt: skip
    assert model.params["0.weight"] is held  # the original arrays are back, trained
    state = {k: a.tobytes() for k, a in (model.params | model.buffers).items()}
    return history, state, held.copy()


@pytest.mark.parametrize("dtype, smoothing", [(np.float32, 0.0), (np.float64, 0.1)])
def test_processes_give_the_threads_bits(dtype, smoothing):
    """3 shards on worker processes (1 worker: shards 0 and 2 here, 1 there; 2 workers: one
    shard each) against 3 shards on one thread: byte-identical history, weights, buffers."""
    want = fit_stateful(dtype, 1, "threads", smoothing)
    assert want[2].tobytes() != stateful_net(dtype).params["0.weight"].tobytes()  # it trained
    for threads in (2, 3):
        assert fit_stateful(dtype, threads, "processes", smoothing)[:2] == want[:2]


def test_a_worker_waits_for_the_next_model_then_leaves(monkeypatch):
    monkeypatch.setattr(nn.processes, "IDLE_SECONDS", 1.0)
    x, y = data(n=12, dtype=np.float32)
    fn, prime = losses.get("cross_entropy")
    with ShardedStep(conv_net(np.float32), fn, prime, shards=2, workers="processes") as step:
        assert step.workers == "processes"
        (worker,) = step._workers
        step(x, y)
    assert worker.process.poll() is None  # waiting for the next model
    dense = nn.Sequential([nn.Flatten(), nn.Dense(64, 4, rng=0)])
    want = nn.Sequential([nn.Flatten(), nn.Dense(64, 4, rng=0)])
    with ShardedStep(dense, fn, prime, shards=2, workers="processes") as step:
        assert step._workers[0].process is worker.process  # the same process, another model
        step(x, y)
    with ShardedStep(want, fn, prime, shards=2) as step:
        step(x, y)
    assert all(a.tobytes() == want.grads[k].tobytes() for k, a in dense.grads.items())
    assert worker.process.wait(10) == 0  # no model came within IDLE_SECONDS


def test_what_a_worker_cannot_rebuild_runs_on_threads():
    class Custom(nn.Tanh):  # a layer from outside nn
        pass

    custom = nn.Sequential([nn.Flatten(), nn.Dense(64, 4, rng=0), Custom()])
    fn, prime = losses.get("mse")
    for model, pair in [
        (custom, (fn, prime)),
        (conv_net(), (lambda y, z: fn(y, z), prime)),  # a loss not from nn.losses.get
    ]:
        with ShardedStep(model, *pair, shards=2, threads=2, workers="processes") as step:
            assert step.workers == "threads"


def test_a_dead_worker_is_a_clear_error():
    x, y = data(n=12, dtype=np.float32)
    model = conv_net(np.float32)
    held = model.params["0.weight"]
    fn, prime = losses.get("cross_entropy")
    with ShardedStep(model, fn, prime, shards=2, threads=2, workers="processes") as step:
        step._workers[0].process.kill()
        step._workers[0].process.wait()
        with pytest.raises(RuntimeError, match=r"nn shard worker \(pid \d+\) exited with code -9"):
            step(x, y)
    assert model.params["0.weight"] is held


def test_a_bad_batch_on_processes_raises_and_stops():
    model = conv_net(np.float32)
    fn, prime = losses.get("cross_entropy")
    with ShardedStep(model, fn, prime, shards=2, threads=2, workers="processes") as step:
        with pytest.raises(ValueError, match="expected"):
            step(np.zeros((4, 2, 8, 8), np.float32), np.zeros((4, 4), np.float32))
        x, y = data(n=12, dtype=np.float32)
        want = conv_net(np.float32)
        step(x, y)  # the next step reads its own answers
        ShardedStep(want, fn, prime, shards=2).__call__(x, y)
        assert all(a.tobytes() == want.grads[k].tobytes() for k, a in model.grads.items())
        worker = step._workers[0]
    nn.processes.shutdown()
    assert worker.process.poll() == 0


def test_bad_workers():
    with pytest.raises(ValueError, match=r"workers must be one of threads, processes, got 'gpu'"):
        ShardedStep(conv_net(), losses.mse, losses.mse_prime, workers="gpu")


def test_losses_describe_what_get_made():
    for name in losses.LOSSES:
        assert losses.describe(*losses.get(name)) == {"name": name, "label_smoothing": 0.0}
    pair = losses.get("cross_entropy", label_smoothing=0.1)
    assert losses.describe(*pair) == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert losses.describe(pair[0], losses.cross_entropy_prime) is None
    assert losses.describe(losses.mse, losses.cross_entropy_prime) is None


def test_an_error_in_a_worker_names_it_and_the_shard():
    x, y = data(n=12, dtype=np.float32)
    model = conv_net(np.float32)
    fn, prime = losses.get("cross_entropy")
    with ShardedStep(model, fn, prime, shards=2, threads=2, workers="processes") as step:
        worker = step._workers[0]
        worker.start([1], [x[:3, :, :5]], [y[:3]], 6)  # rows the worker's replica refuses
        with pytest.raises(RuntimeError, match=r"nn shard worker \(pid \d+\), shard 1: ValueError"):
            worker.finish()
        step(x, y)  # the worker goes on


def test_a_forked_child_never_shares_a_waiting_worker():
    x, y = data(n=12, dtype=np.float32)
    fn, prime = losses.get("cross_entropy")
    with ShardedStep(conv_net(np.float32), fn, prime, shards=2, workers="processes") as step:
        step(x, y)
        (worker,) = step._workers
    child = os.fork()
    if child == 0:  # the child must start a worker of its own
        code = 1
        try:
            with ShardedStep(conv_net(np.float32), fn, prime, shards=2, workers="processes") as s:
                s(x, y)
                code = 0 if s._workers[0].process.pid != worker.process.pid else 2
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0
    with ShardedStep(conv_net(np.float32), fn, prime, shards=2, workers="processes") as step:
        assert step._workers[0].process is worker.process  # still this process's, and in step
        step(x, y)
