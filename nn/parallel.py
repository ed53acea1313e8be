"""Deterministic data parallelism: a batch split into a fixed number of shards.

Each shard's forward and backward runs on a replica of the model that shares its parameter arrays,
on a thread (NumPy releases the GIL in matmuls and ufuncs, so threads run on separate cores) or in
a worker process (``nn.processes``: shared-memory parameters, no GIL between shards); the shard
gradients are then summed in shard order into the model's own ``grads``. The arithmetic depends on
the shard count only: how many threads run the shards, and in which order they finish, changes
nothing, so a 1-core machine running the shards in turn gets the same bits as a 16-core one, and
threads the same bits as processes.

Why shards and not BLAS threads: a multithreaded BLAS splits its sums by the thread count it finds,
so its results change with the machine; and most of a small network's time is element-wise passes
and copies that BLAS threads do not touch at all.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nn import losses, processes
from nn.checks import ArgumentError, positive_int
from nn.layers import Layer, layer_from_config
from nn.sequential import Sequential

__all__ = ["replicate", "shard_bounds", "ShardedStep", "available_cores", "map_batches", "WORKERS"]

WORKERS = ("threads", "processes")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def replicate(layer: Layer) -> Layer:
    """A copy of ``layer`` for another thread: the same parameter arrays (shared, not copied),
    its own gradients and forward caches, the same mode. Buffers are copied: a replica's running
    statistics are its own, and the model's (replica 0's, from shard 0) are the ones kept. A
    layer with its own random draws (``rng``, as Dropout) gets an independent stream spawned
    from it, so replicas made in shard order draw the same masks on every machine."""
    if isinstance(layer, Sequential):
        copy = type(layer)([replicate(inner) for inner in layer.layers])
        copy.training = layer.training
        return copy
    copy = layer_from_config({"type": type(layer).__name__, "config": layer.config()})
    copy.params = layer.params
    copy.grads = {name: np.zeros_like(g) for name, g in layer.grads.items()}
    copy.buffers = {name: b.copy() for name, b in layer.buffers.items()}
    copy.training = layer.training
    if "input_grad" in vars(layer):
        copy.input_grad = layer.input_grad
    if isinstance(getattr(layer, "rng", None), np.random.Generator):
        copy.rng = layer.rng.spawn(1)[0]
    return copy


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each non-empty shard of ``n`` rows: sizes differ by at most one, the
    larger first (as ``np.array_split``)."""
    size, extra = divmod(n, shards)
    bounds, start = [], 0
    for s in range(shards):
        stop = start + size + (s < extra)
        if stop > start:
            bounds.append((start, stop))
        start = stop
    return bounds


def map_batches(model: Layer, x: np.ndarray, batch_size: int, threads: int = 1) -> list:
    """``model.forward`` of every ``batch_size`` slice of ``x``, in order, as C-contiguous arrays.

    The slices are fixed by ``batch_size`` alone; ``threads`` replicas run them (replica ``r``
    takes slices ``r, r + threads, ...``), so the outputs are the same bits for any thread count.
    """
    slices = [slice(i, i + batch_size) for i in range(0, len(x), batch_size)]
    threads = max(1, min(threads, len(slices)))
    replicas = [model] + [replicate(model) for _ in range(threads - 1)]

    def run(r):
        return [np.ascontiguousarray(replicas[r].forward(x[s])) for s in slices[r::threads]]

    if threads == 1:
        return run(0)
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(run, range(threads)))
    return [parts[i % threads][i // threads] for i in range(len(slices))]


class ShardedStep:
    """Forward, loss and backward of one batch, over ``shards`` parts run ``threads`` at a time.

    Calling it with ``(x, y)`` leaves in ``model.grads`` the gradient of the batch's mean loss,
    and returns ``(out, loss)``: the model's output for the whole batch and the mean loss.
    Shard ``s`` of ``n_s`` rows contributes ``(n_s / n) * loss_prime(y_s, out_s)``; with one shard
    this is exactly the plain ``forward``/``backward``.

    Args:
        model: the layer to train (replica 0; the other shards get replicas of it).
        loss_fn, loss_prime: the loss and its gradient with respect to the model's output.
        shards: parts each batch is split into; part of the experiment, like the batch size.
        threads: how many shards run at once (default: one per shard, at most one per core).
            Changes the speed, never the result.
        workers: ``"threads"`` (the default) or ``"processes"``: shard ``s`` runs in this
            process if ``s % threads == 0``, else in worker process ``s % threads`` (see
            ``nn.processes``: no GIL between the shards, the same bits where the environment
            sets BLAS's threads, as ``pipeline.numerics.pin`` does). While the step exists the
            model's parameters live in shared memory; ``close()`` puts the original arrays back
            with the trained values. A model a worker cannot rebuild (a layer from outside
            ``nn``), or a system without ``fork``-style descriptor passing, runs on threads.

    Use it as a context manager (or call ``close()``) to stop its threads or processes.
    """

    def __init__(
        self, model: Layer, loss_fn, loss_prime, *, shards: int = 1, threads=None, workers="threads"
    ):
        self.shards = positive_int("ShardedStep", "shards", shards)
        threads = min(self.shards, available_cores()) if threads is None else threads
        self.threads = positive_int("ShardedStep", "threads", threads)
        if workers not in WORKERS:
            raise ArgumentError(
                "ShardedStep", "workers", f"must be one of {', '.join(WORKERS)}, got {workers!r}"
            )
        self.model, self.loss_fn, self.loss_prime = model, loss_fn, loss_prime
        self.replicas = [model] + [replicate(model) for _ in range(self.shards - 1)]
        self._pool, self._shared, self._workers = None, None, []
        self._host: dict[int, processes.ShardWorker] = {}  # shard -> the worker that runs it
        runners = min(self.threads, self.shards)
        if workers == "processes" and runners > 1 and processes.can_run(model, loss_fn, loss_prime):
            loss = losses.describe(loss_fn, loss_prime)
            self._shared = processes.SharedParams(model)
            try:
                for w in range(1, runners):
                    hosted = {s: self.replicas[s] for s in range(w, self.shards, runners)}
                    worker = processes.ShardWorker(model, self._shared, hosted, loss)
                    self._workers.append(worker)
                    self._host.update(dict.fromkeys(hosted, worker))
            except BaseException:
                self.close()
                raise
        elif self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads)
        self.workers = "processes" if self._workers else "threads"

    def _run(self, s, x, y, n):
        """Shard ``s`` on its replica: ``(out, loss)``, with ``n_s / n`` of its gradient."""
        return processes.shard_step(self.replicas[s], self.loss_fn, self.loss_prime, x, y, n)

    def _run_processes(self, jobs):
        """Every shard's ``(out, loss)``: the workers' shards started first, this process's run
        while they compute."""
        remote: dict[processes.ShardWorker, list[tuple]] = {}
        for job in jobs:
            if job[0] in self._host:
                remote.setdefault(self._host[job[0]], []).append(job)
        for worker, mine in remote.items():
            shards, xs, ys, ns = zip(*mine)
            worker.start(list(shards), list(xs), list(ys), ns[0])
        try:
            results = {job[0]: self._run(*job) for job in jobs if job[0] not in self._host}
        except BaseException:
            for worker in remote:  # collect the workers' answers, so the next step reads its own
                with contextlib.suppress(RuntimeError):
                    worker.finish()
            raise
        for worker, mine in remote.items():
            results.update(zip((job[0] for job in mine), worker.finish()))
        return [results[s] for s in range(len(jobs))]

    def _grads(self, s):
        return self._host[s].grads[s] if s in self._host else self.replicas[s].grads

    def __call__(self, x: np.ndarray, y: np.ndarray):
        n = len(x)
        bounds = shard_bounds(n, self.shards)
        jobs = [(s, x[a:b], y[a:b], n) for s, (a, b) in enumerate(bounds)]
        if self._workers and len(jobs) > 1:
            results = self._run_processes(jobs)
        elif self._pool is None or len(jobs) == 1:
            results = [self._run(*job) for job in jobs]
        else:
            results = [f.result() for f in [self._pool.submit(self._run, *job) for job in jobs]]
        if len(results) == 1:
            return results[0]
        grads = self.model.grads
        for s in range(1, len(results)):  # in shard order, whoever finished first
            for name, g in self._grads(s).items():
                grads[name] += g
        out = np.concatenate([o for o, _ in results])
        loss = sum(loss * (b - a) for (_, loss), (a, b) in zip(results, bounds)) / n
        return out, loss

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for worker in self._workers:
            worker.close()
        self._workers, self._host = [], {}
        if self._shared is not None:
            self._shared.restore()
            self._shared = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
