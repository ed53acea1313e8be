"""Mini-batch training, prediction and evaluation."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nn import losses as _losses
from nn.checks import number, positive_int
from nn.keep_best import KeepBest
from nn.layers import Layer, as_generator
from nn.optim import Optimizer, clip_grad_norm
from nn.parallel import ShardedStep, map_batches

__all__ = ["fit", "PerBatch", "predict", "evaluate", "accuracy", "TrainingDiverged"]

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows classified right: argmax for several outputs, ``> 0.5`` for one.

    >>> accuracy(np.eye(3), np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]]))
    0.6666666666666666
    """
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return float(np.mean(y_pred.argmax(axis=1) == y_true.argmax(axis=1)))
    return float(np.mean((y_pred > 0.5) == (y_true > 0.5)))


def _batches(n: int, batch_size: int, order: np.ndarray | None):
    for start in range(0, n, batch_size):
        yield (
            order[start : start + batch_size]
            if order is not None
            else slice(start, start + batch_size)
        )


def predict(model: Layer, x: np.ndarray, *, batch_size: int = 1024, threads: int = 1) -> np.ndarray:
    """``model.forward`` over ``x`` in batches (bounded memory), in evaluation mode; returns a
    C-contiguous array. ``threads`` run the batches in parallel; the result is the same bits for
    any thread count."""
    was_training = model.training
    model.eval()
    try:
        outs = map_batches(model, x, batch_size, threads)
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.empty((0,))


def evaluate(
    model: Layer,
    x: np.ndarray,
    y: np.ndarray,
    loss: str = "cross_entropy",
    *,
    batch_size: int = 1024,
    threads: int = 1,
) -> dict:
    """``{"loss": ..., "accuracy": ...}`` of ``model`` on ``(x, y)`` (``threads``: see predict)."""
    loss_fn, _ = _losses.get(loss)
    y_pred = predict(model, x, batch_size=batch_size, threads=threads)
    return {"loss": loss_fn(y, y_pred), "accuracy": accuracy(y, y_pred)}


def _check_data(name, x, y):
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{name}: no samples")


@dataclasses.dataclass(frozen=True)
class PerBatch:
    """What ``fit`` does to every batch besides forward, backward and the optimizer step.

    Attributes:
        augment: applied to every training batch of images (e.g. ``nn.augment.RandomShift``).
        label_smoothing: cross-entropy against ``(1 - e) * y + e / K`` (training loss only).
        clip_norm: scale the gradients so their global L2 norm is at most this (None: off).
    """

    augment: Callable[[np.ndarray], np.ndarray] | None = None
    label_smoothing: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self):
        if self.clip_norm is not None:
            number("PerBatch", "clip_norm", self.clip_norm, low_open=True)


def _prepared(x, y, batches, augment):
    """``(x[idx], y[idx])`` of each batch, its images through ``augment``. With an augmentation,
    each batch is gathered and augmented one batch ahead on a thread of its own while the step
    before it trains (NumPy releases the GIL in the gathers, transforms and products, so the
    second core fills the step's one-threaded parts); the draws still happen one batch after
    another on that one thread, so the bits are those of the plain loop."""
    if augment is None:
        for idx in batches:
            yield x[idx], y[idx]
        return

    def prepare(idx):
        return augment(x[idx]), y[idx]

    with ThreadPoolExecutor(1, thread_name_prefix="nn-augment") as ahead:
        pending = None
        for idx in batches:
            following = ahead.submit(prepare, idx)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def _train_epoch(step: ShardedStep, optimizer: Optimizer, x, y, batches, epoch, per_batch) -> dict:
    """One pass over ``batches`` (index arrays or slices): per batch, augment, ``step`` (forward,
    loss, backward), clip, ``optimizer.step``. Returns the epoch's mean train loss and accuracy."""
    total_loss = total_correct = 0.0
    for b, (xb, yb) in enumerate(_prepared(x, y, batches, per_batch.augment), start=1):
        out, value = step(xb, yb)
        if not np.isfinite(value):
            raise TrainingDiverged(
                f"loss became {value} at epoch {epoch}, batch {b}: "
                "lower the learning rate or check the data"
            )
        if per_batch.clip_norm is not None:
            clip_grad_norm(step.model.grads, per_batch.clip_norm)
        optimizer.step(step.model)
        total_loss += value * len(xb)
        total_correct += accuracy(yb, out) * len(xb)
    return {"train_loss": total_loss / len(x), "train_accuracy": total_correct / len(x)}


def fit(
    model: Layer,
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str,
    optimizer: Optimizer,
    epochs: int = 1,
    batch_size: int = 32,
    rng=None,
    shuffle: bool = True,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    per_batch: PerBatch = PerBatch(),
    shards: int = 1,
    threads: int | None = None,
    workers: str = "threads",
    keep_best: KeepBest | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: Callable | None = None,
) -> list[dict]:
    """Train ``model`` with mini-batches and return one history row per epoch.

    Each epoch draws a permutation from ``rng`` (a Generator or int seed) and gathers each batch
    with ``x[idx]``, so the same seed gives the same batches. Per batch: augment, forward, loss
    gradient, backward (split into ``shards`` parts run on threads, see
    ``nn.parallel.ShardedStep``), clip, ``optimizer.step(model)``. The learning rate is the
    optimizer's: constant, or set from its ``schedule`` before every step (``nn.schedules``).
    The model is in training mode throughout; validation runs in evaluation mode.

    Args:
        loss: a name in ``nn.losses.LOSSES``.
        validation: optional ``(x_val, y_val)`` evaluated after every epoch.
        per_batch: augmentation, label smoothing and gradient clipping (:class:`PerBatch`).
        shards: each batch is split into this many parts, each run on its own thread over a
            replica of the model; part of the experiment (it changes the float results), like
            ``batch_size``. 1: the plain loop.
        threads: how many shards run at once (default: one per shard, at most one per core).
            Changes the speed only, never a bit of the result.
        workers: what runs them: ``"threads"`` of this process, or worker ``"processes"`` that
            share the parameters through shared memory (no GIL between the shards: faster for
            small networks; the same bits where the environment sets BLAS's thread count, see
            ``nn.processes``).
        keep_best: an ``nn.KeepBest``: the weights of its best epoch are restored at the end,
            and training stops early after its ``patience``.
        callback: called after every epoch with the history row
            ``{"epoch", "train_loss", "train_accuracy"[, "val_loss", "val_accuracy"]}``; the train
            values are means over the epoch's batches, weighted by batch size.
        progress: optional wrapper of the batch iterable (for example a tqdm factory).

    Raises:
        ValueError: an argument out of range (the message names it).
        TrainingDiverged: the loss became NaN or infinite (names the epoch and batch).

    Example: XOR, the video's first network, in batches of four.

        >>> import numpy as np, nn
        >>> x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        >>> y = np.array([[0], [1], [1], [0]], np.float32)
        >>> model = nn.Sequential([nn.Dense(2, 8, rng=0), nn.Tanh(), nn.Dense(8, 1, rng=1),
        ...                        nn.Sigmoid()])
        >>> history = nn.fit(model, x, y, loss="binary_cross_entropy", optimizer=nn.Adam(0.05),
        ...                  epochs=300, batch_size=4, rng=0)
        >>> len(history), history[-1]["train_accuracy"]
        (300, 1.0)
        >>> (nn.predict(model, x) > 0.5).astype(int).ravel()
        array([0, 1, 1, 0])
    """
    _check_data("fit", x, y)
    if validation is not None:
        _check_data("fit validation", *validation)
    positive_int("fit", "epochs", epochs)
    positive_int("fit", "batch_size", batch_size)
    loss_fn, loss_prime = _losses.get(loss, label_smoothing=per_batch.label_smoothing)
    rng = as_generator(rng)
    n = len(x)
    history = []
    first_input_grad, was_training = model.input_grad, model.training
    model.input_grad = False  # nothing uses the gradient with respect to the data
    model.train()
    try:
        with ShardedStep(
            model, loss_fn, loss_prime, shards=shards, threads=threads, workers=workers
        ) as step:
            for epoch in range(1, epochs + 1):
                order = rng.permutation(n) if shuffle else None
                batches = _batches(n, batch_size, order)
                if progress is not None:
                    batches = progress(batches, total=-(-n // batch_size), desc=f"epoch {epoch}")
                row = {
                    "epoch": epoch,
                    **_train_epoch(step, optimizer, x, y, batches, epoch, per_batch),
                }
                if validation is not None:
                    val = evaluate(model, *validation, loss=loss, threads=step.threads)
                    row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                history.append(row)
                log.debug("epoch %d: %s", epoch, row)
                if callback is not None:
                    callback(row)
                if keep_best is not None and keep_best.update(row, model):
                    break
        if keep_best is not None:
            keep_best.restore(model)
    finally:
        model.input_grad = first_input_grad
        model.train(was_training)
    return history
