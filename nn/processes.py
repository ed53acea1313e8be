"""Shards in worker processes: the same arithmetic as shard threads, without the GIL between them.

A small network's step is hundreds of short NumPy calls; two threads running two shards hand the
GIL back and forth between every one of them, so the second core waits more than it works. A
worker process runs its shards' forward and backward on replicas of its own, built from the
model's config, whose parameters are views of one shared-memory block (the model's own arrays
are moved into it for the duration of the step object, so the optimizer's in-place updates are
seen everywhere); each worker writes its gradients into a shared block of its own. Per step the
parent copies each worker's rows and targets into a shared block of that worker's, sends one
short message, runs its own shards, and reads the worker's answer: the outputs and the losses.
The worker runs what a thread would (:func:`shard_step`: forward, the loss named by
``nn.losses.describe``, its gradient, backward). Nothing is pickled: messages are a JSON header
and raw arrays.

A worker is the same Python running ``nn`` with the parent's environment, so the BLAS kernel,
its thread count and NumPy's SIMD loops are the parent's where the environment sets them (as
``pipeline.numerics.pin`` does); a thread count set inside the parent (threadpoolctl) is not
seen by the workers. Replicas get their state as :func:`nn.parallel.replicate` gives it to a
thread's (buffers copied, the random stream spawned in shard order), so the bits are those of
the threads.

Only what a worker can rebuild is sent to one: layers from ``nn`` itself chained by plain
``nn.Sequential``, and a loss from ``nn.losses.get``. POSIX systems only (file descriptors are
passed to the worker).

Starting a worker costs about 0.1 s (a Python and NumPy import), so a worker that has finished a
step object's work waits for the next one in this process (any model, the same environment)
for ``IDLE_SECONDS`` before it leaves: a second ``fit`` starts at once. :func:`shutdown` stops the
waiting ones now (it also runs at exit); a waiting worker also leaves when this process ends.
"""

from __future__ import annotations

import atexit
import json
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading

import numpy as np

from nn import losses
from nn.layers import Layer, layer_from_config
from nn.sequential import Sequential

__all__ = ["can_run", "leaves", "shard_step", "SharedParams", "ShardWorker", "shutdown"]

_ALIGN = 64
_HEAD = struct.Struct("<I")
_STARTUP = 120.0  # seconds a worker may take to import nn and rebuild its replicas
_TIMEOUT = 10.0  # seconds a worker may take to stop
IDLE_SECONDS = 60.0  # how long a worker waits for the next model before it leaves


def leaves(layer: Layer, prefix: str = ""):
    """``(prefix, layer)`` of every layer that is not a Sequential, in order: a leaf's entry
    ``name`` is the model's ``prefix + name`` (as ``Sequential.params`` names it)."""
    if isinstance(layer, Sequential):
        for i, inner in enumerate(layer.layers):
            yield from leaves(inner, f"{prefix}{i}.")
    else:
        yield prefix, layer


def _spec(layer: Layer) -> dict:
    return {"type": type(layer).__name__, "config": layer.config()}


def shard_step(replica: Layer, loss_fn, loss_prime, x, y, n: int):
    """One shard on its replica: forward, the loss, ``n_s / n`` of its gradient, backward.
    Returns ``(out, loss)``; the replica's ``grads`` hold the shard's part of the batch gradient.
    (What a shard thread and a worker process both run.)"""
    out = replica.forward(x)
    loss = loss_fn(y, out)
    grad = loss_prime(y, out)
    if len(x) != n:
        grad *= grad.dtype.type(len(x) / n)
    replica.backward(grad)
    return out, loss


def can_run(model: Layer, loss_fn, loss_prime) -> bool:
    """Whether a worker process can rebuild ``model`` and the loss: POSIX, every leaf a layer of
    ``nn``, every chain a plain ``nn.Sequential``, the config rebuilding the same structure, and
    a loss pair from ``nn.losses.get``."""
    if os.name != "posix" or not hasattr(socket, "send_fds") or not sys.executable:
        return False
    if losses.describe(loss_fn, loss_prime) is None:
        return False

    def native(layer):
        if isinstance(layer, Sequential):
            return type(layer) is Sequential and all(native(inner) for inner in layer.layers)
        return type(layer).__module__.split(".")[0] == "nn"

    if not native(model):
        return False
    try:
        rebuilt = layer_from_config(_spec(model))
    except Exception:  # a config that does not rebuild: run on threads instead
        return False
    return [(p, type(leaf)) for p, leaf in leaves(rebuilt)] == [
        (p, type(leaf)) for p, leaf in leaves(model)
    ]


def _shared_block(size: int, name: str) -> tuple[int, mmap.mmap]:
    """A file descriptor of ``size`` bytes of shared memory (an anonymous memfd, or an unlinked
    temporary file), and its mapping here."""
    size = max(size, 1)
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, 0)
    else:
        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def _layout(arrays: dict[str, np.ndarray], start: int = 0) -> tuple[dict, int]:
    """``{name: [offset, dtype, shape]}`` of each array in one block, 64-byte aligned, and the
    block's end."""
    layout, offset = {}, start
    for name, a in arrays.items():
        offset = -(-offset // _ALIGN) * _ALIGN
        layout[name] = [offset, a.dtype.str, list(a.shape)]
        offset += a.nbytes
    return layout, offset


def _views(block: mmap.mmap, layout: dict) -> dict[str, np.ndarray]:
    return {
        name: np.ndarray(tuple(shape), np.dtype(dtype), buffer=block, offset=offset)
        for name, (offset, dtype, shape) in layout.items()
    }


def _send(sock: socket.socket, meta: dict, arrays=(), fds=()) -> None:
    """One message: a JSON header (with each array's dtype and shape), then the arrays' bytes;
    ``fds`` (file descriptors) ride on the header's first bytes."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    meta = dict(meta, arrays=[[a.dtype.str, list(a.shape)] for a in arrays])
    head = json.dumps(meta).encode()
    message = _HEAD.pack(len(head)) + head
    sent = socket.send_fds(sock, [message], list(fds)) if fds else 0
    sock.sendall(message[sent:])
    for a in arrays:
        if a.nbytes:
            sock.sendall(memoryview(a).cast("B"))


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    while len(view):
        got = sock.recv_into(view)
        if not got:
            raise EOFError("the other end closed the connection")
        view = view[got:]


def _recv(sock: socket.socket) -> tuple[dict, list[np.ndarray], list[int]]:
    """The next message: its header, its arrays, and the file descriptors that came with it."""
    first, fds, _, _ = socket.recv_fds(sock, _HEAD.size, 4)
    if not first:
        raise EOFError("the other end closed the connection")
    head = bytearray(first) + bytearray(_HEAD.size - len(first))
    _recv_into(sock, memoryview(head)[len(first) :])
    body = bytearray(_HEAD.unpack(head)[0])
    _recv_into(sock, memoryview(body))
    meta = json.loads(body)
    arrays = []
    for dtype, shape in meta.pop("arrays"):
        a = np.empty(tuple(shape), np.dtype(dtype))
        if a.nbytes:
            _recv_into(sock, memoryview(a).cast("B"))
        arrays.append(a)
    return meta, arrays, fds


class SharedParams:
    """The model's parameters moved into one shared-memory block while it exists: each leaf's
    ``params[name]`` becomes a view of the block holding the same values. ``restore()`` copies the
    values back into the original arrays and puts them back, so references taken before stay
    valid and see the training."""

    def __init__(self, model: Layer):
        self.entries = [
            (prefix + name, leaf, name, p)
            for prefix, leaf in leaves(model)
            for name, p in leaf.params.items()
        ]
        self.layout, size = _layout({full: p for full, _, _, p in self.entries})
        self.fd, self.block = _shared_block(size, "nn-params")
        views = _views(self.block, self.layout)
        for full, leaf, name, p in self.entries:
            views[full][...] = p
            leaf.params[name] = views[full]

    def restore(self) -> None:
        if self.block is None:
            return
        for _, leaf, name, original in self.entries:
            original[...] = leaf.params[name]
            leaf.params[name] = original
        self.entries = []
        os.close(self.fd)
        self.block = None  # the mapping closes with its last view


def _replica_state(replica: Layer) -> tuple[list[dict], list[np.ndarray]]:
    """What a worker needs besides the config and the parameters to make ``replica`` again: per
    leaf its mode, input-gradient flag and random stream, and its buffers (as arrays)."""
    states, buffers = [], []
    for _, leaf in leaves(replica):
        rng = getattr(leaf, "rng", None)
        states.append(
            {
                "training": leaf.training,
                "input_grad": vars(leaf).get("input_grad"),
                "rng": rng.bit_generator.state if isinstance(rng, np.random.Generator) else None,
                "buffers": list(leaf.buffers),
            }
        )
        buffers.extend(leaf.buffers.values())
    return states, buffers


class _Process:
    """A worker process and this process's end of the socket to it."""

    def __init__(self, env: dict):
        self.env, self.owner = env, os.getpid()
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import nn.processes as p; p.serve()", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
            )
        finally:
            theirs.close()
        self.sock = ours

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                _send(self.sock, {"op": "quit"})
                self.process.wait(_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.sock.close()


_idle: list[_Process] = []  # workers waiting for their next model
_idle_lock = threading.Lock()
_stop_at_exit = []  # whether shutdown is registered with atexit yet


def _worker_environment() -> dict:
    """The environment of a worker: this process's, with ``nn`` importable."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _take_worker() -> _Process:
    """A waiting worker started with this environment, or a new one."""
    env = _worker_environment()
    with _idle_lock:
        while _idle:
            proc = _idle.pop()
            if proc.owner != os.getpid():
                continue  # a forked copy of the list: that worker answers the parent only
            if proc.env == env and proc.process.poll() is None:
                return proc
            proc.stop()  # started with other pins, or gone
        if not _stop_at_exit:
            atexit.register(shutdown)
            _stop_at_exit.append(True)
    return _Process(env)


def shutdown() -> None:
    """Stop the workers waiting for a model now."""
    with _idle_lock:
        while _idle:
            proc = _idle.pop()
            if proc.owner == os.getpid():
                proc.stop()


class ShardWorker:
    """A worker process running the shards ``list(replicas)`` of a step on replicas of its own.

    ``replicas`` maps each of those shard indices to the replica the parent made for it
    (:func:`nn.parallel.replicate`); the worker rebuilds each from the model's config and that
    replica's state, over the parameters of ``params``. ``grads[s]`` are shard ``s``'s gradients,
    views of shared memory the worker writes.
    """

    def __init__(self, model: Layer, params: SharedParams, replicas: dict[int, Layer], loss: dict):
        self.io, self.pending = None, []
        names = {full: p for full, _, _, p in params.entries}
        layouts, size = {}, 0
        for s in replicas:
            layouts[s], size = _layout(names, size)
        grads_fd, grads_block = _shared_block(size, "nn-grads")
        self.grads = {s: _views(grads_block, layouts[s]) for s in replicas}
        replicas_meta, buffers = [], []
        for s, replica in replicas.items():
            states, arrays = _replica_state(replica)
            replicas_meta.append(
                {"shard": s, "training": replica.training, "leaves": states, "grads": layouts[s]}
            )
            buffers.extend(arrays)
        init = {
            "op": "init",
            "spec": _spec(model),
            "loss": loss,
            "params": params.layout,
            "params_size": params.block.size(),
            "grads_size": grads_block.size(),
            "replicas": replicas_meta,
        }
        self.worker = _take_worker()
        self.process, self.sock = self.worker.process, self.worker.sock
        try:
            _send(self.sock, init, buffers, fds=(params.fd, grads_fd))
        except OSError as e:
            self.worker.stop()
            raise self._gone(e) from None
        finally:
            os.close(grads_fd)
        self.starting = True  # its "ready" is read by the first step: a new one's start overlaps

    def _gone(self, e: Exception) -> RuntimeError:
        """The error for a worker that stopped answering (``e``: what the socket said)."""
        code = self.process.poll()
        state = "is not answering" if code is None else f"exited with code {code}"
        return RuntimeError(f"nn shard worker (pid {self.process.pid}) {state}: {e}")

    def _answer(self, timeout=None):
        self.sock.settimeout(timeout)
        try:
            meta, arrays, _ = _recv(self.sock)
        except (EOFError, OSError) as e:
            raise self._gone(e) from None
        finally:
            self.sock.settimeout(None)
        self.pending = []  # answered: the next message is the next command's
        if meta["op"] == "error":
            raise RuntimeError(f"nn shard worker (pid {self.process.pid}), {meta['error']}")
        return meta, arrays

    def _ready(self) -> None:
        if self.starting:
            self._answer(timeout=_STARTUP)
            self.starting = False

    def _io_block(self, size: int) -> mmap.mmap:
        """The shared block the rows and targets go through, grown (and sent) when too small."""
        self._ready()
        if self.io is None or self.io.size() < size:
            fd, self.io = _shared_block(size, "nn-rows")
            try:
                _send(self.sock, {"op": "rows", "size": self.io.size()}, fds=(fd,))
            finally:
                os.close(fd)
            self._answer()
        return self.io

    def start(self, shards: list[int], xs: list[np.ndarray], ys: list[np.ndarray], n: int):
        """Copy the shards' rows and targets into shared memory and let the worker run them (the
        rows of ``n`` in all); the parent goes on with its own shards meanwhile."""
        arrays = {f"{i}": a for i, a in enumerate(xs + ys)}
        layout, size = _layout(arrays)
        try:
            views = _views(self._io_block(size), layout)
            for name, a in arrays.items():
                views[name][...] = a
            _send(self.sock, {"op": "step", "shards": shards, "n": n, "rows": layout})
            self.pending = shards
        except OSError as e:
            try:
                self.process.wait(1)  # a closed socket: the worker is exiting
            except subprocess.TimeoutExpired:
                pass
            raise self._gone(e) from None

    def finish(self) -> list[tuple[np.ndarray, float]]:
        """``(out, loss)`` of each pending shard, once the worker has written their gradients."""
        meta, outs = self._answer()
        return list(zip(outs, meta["losses"]))

    def close(self) -> None:
        """Release the worker: back to waiting for the next model if it is in step with this
        process (no step left half-answered), stopped otherwise."""
        reusable = self.process.poll() is None and not self.pending
        try:
            if reusable:
                self._ready()
                _send(self.sock, {"op": "release", "idle": IDLE_SECONDS})
        except (OSError, RuntimeError):
            reusable = False
        if reusable:
            with _idle_lock:
                _idle.append(self.worker)
        else:
            self.worker.stop()
        self.grads, self.io, self.starting = {}, None, False


def _rebuild(meta: dict, state: dict, arrays, params: dict, grads: dict) -> Layer:
    """One replica in the worker, as the parent's ``replicate`` made it."""
    model = layer_from_config(meta["spec"])
    for (prefix, leaf), leaf_state in zip(leaves(model), state["leaves"]):
        leaf.params = {name: params[prefix + name] for name in leaf.params}
        leaf.grads = {name: grads[prefix + name] for name in leaf.grads}
        leaf.buffers = {name: next(arrays) for name in leaf_state["buffers"]}
        leaf.training = leaf_state["training"]
        if leaf_state["input_grad"] is not None:
            leaf.input_grad = leaf_state["input_grad"]
        if leaf_state["rng"] is not None:
            bit_generator = getattr(np.random, leaf_state["rng"]["bit_generator"])()
            bit_generator.state = leaf_state["rng"]
            leaf.rng = np.random.Generator(bit_generator)
    model.training = state["training"]
    return model


def _run_shards(meta: dict, rows: mmap.mmap, replicas: dict, shared_grads: dict, loss):
    """A step's shards, in order: their outputs and losses, their gradients in shared memory."""
    views = _views(rows, meta["rows"])
    k = len(meta["shards"])
    outs, values = [], []
    for i, shard in enumerate(meta["shards"]):
        try:
            x, y = views[f"{i}"], views[f"{k + i}"]
            out, value = shard_step(replicas[shard], *loss, x, y, meta["n"])
        except Exception as e:  # the parent raises it, naming the shard
            raise RuntimeError(f"shard {shard}: {type(e).__name__}: {e}") from None
        for prefix, leaf in leaves(replicas[shard]):
            for name, g in leaf.grads.items():
                shared = shared_grads[shard][prefix + name]
                if g is not shared:  # a layer that replaced its array
                    shared[...] = g
                    leaf.grads[name] = shared
        outs.append(out)
        values.append(value)
    return outs, values


def _serve_model(sock: socket.socket, meta: dict, arrays: list, fds: list) -> float | None:
    """Build the replicas of an ``init`` message and run their steps until ``release`` (returns
    how long to wait for the next model) or ``quit`` (returns None)."""
    params_fd, grads_fd = fds
    loss = losses.get(**meta["loss"])
    params = _views(mmap.mmap(params_fd, meta["params_size"]), meta["params"])
    grads_block = mmap.mmap(grads_fd, meta["grads_size"])
    os.close(params_fd)
    os.close(grads_fd)
    buffers = iter(arrays)
    replicas, shared_grads = {}, {}
    for r in meta["replicas"]:
        shared_grads[r["shard"]] = _views(grads_block, r["grads"])
        replicas[r["shard"]] = _rebuild(meta, r, buffers, params, shared_grads[r["shard"]])
    rows = None
    _send(sock, {"op": "ready"})
    while True:
        meta, _, fds = _recv(sock)
        if meta["op"] == "release":
            return meta["idle"]
        if meta["op"] == "quit":
            return None
        if meta["op"] == "rows":
            rows = mmap.mmap(fds[0], meta["size"])
            os.close(fds[0])
            _send(sock, {"op": "ready"})
            continue
        try:
            outs, values = _run_shards(meta, rows, replicas, shared_grads, loss)
        except RuntimeError as e:
            _send(sock, {"op": "error", "error": str(e)})
            continue
        _send(sock, {"op": "done", "losses": values}, outs)


def serve(argv=None) -> None:
    """The worker's loop (run by ``ShardWorker`` as ``python -c``): a model's steps from its
    ``init`` to its ``release``, then the next model's, until ``quit``, until no model came for
    the time the last release said, or until the parent goes away. Ctrl-C is the parent's to
    handle: it stops its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int((argv or sys.argv[1:])[0]))
    idle = None  # seconds to wait for a model (None: as long as the parent is there)
    try:
        while True:
            sock.settimeout(idle)
            meta, arrays, fds = _recv(sock)
            sock.settimeout(None)
            if meta["op"] != "init":
                return  # quit
            idle = _serve_model(sock, meta, arrays, fds)
            if idle is None:
                return
    except (EOFError, OSError):
        return  # the parent is gone, or no model came in time: nothing left to answer
