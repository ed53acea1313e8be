"""Mini-batch training, prediction and evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from nn import losses as _losses
from nn.layers import Layer, as_generator
from nn.optim import Optimizer

__all__ = ["fit", "predict", "evaluate", "accuracy", "TrainingDiverged"]

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows classified right: argmax for several outputs, ``> 0.5`` for one."""
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


def predict(model: Layer, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """``model.forward`` over ``x`` in batches (bounded memory); returns a C-contiguous array."""
    outs = [np.ascontiguousarray(model.forward(x[s])) for s in _batches(len(x), batch_size, None)]
    return np.concatenate(outs) if outs else np.empty((0,))


def evaluate(
    model: Layer,
    x: np.ndarray,
    y: np.ndarray,
    loss: str = "cross_entropy",
    *,
    batch_size: int = 1024,
) -> dict:
    """``{"loss": ..., "accuracy": ...}`` of ``model`` on ``(x, y)``."""
    loss_fn, _ = _losses.get(loss)
    y_pred = predict(model, x, batch_size=batch_size)
    return {"loss": loss_fn(y, y_pred), "accuracy": accuracy(y, y_pred)}


def _check_data(name, x, y):
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{name}: no samples")


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
    lr_decay: float = 1.0,
    callback: Callable[[dict], None] | None = None,
    progress: Callable | None = None,
) -> list[dict]:
    """Train ``model`` with mini-batches and return one history row per epoch.

    Each epoch draws a permutation from ``rng`` (a Generator or int seed) and gathers each batch
    with ``x[idx]``, so the same seed gives the same batches. Per batch: forward, loss gradient,
    backward, ``optimizer.step(model)``.

    Args:
        loss: a name in ``nn.losses.LOSSES``.
        validation: optional ``(x_val, y_val)`` evaluated after every epoch.
        lr_decay: after every epoch ``optimizer.lr *= lr_decay`` (an exponential schedule).
        callback: called after every epoch with the history row
            ``{"epoch", "train_loss", "train_accuracy"[, "val_loss", "val_accuracy"]}``; the train
            values are means over the epoch's batches, weighted by batch size.
        progress: optional wrapper of the batch iterable (for example a tqdm factory).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (names the epoch and batch).
    """
    loss_fn, loss_prime = _losses.get(loss)
    _check_data("fit", x, y)
    if validation is not None:
        _check_data("fit validation", *validation)
    if not 0 < lr_decay <= 1:
        raise ValueError(f"fit: lr_decay must be in (0, 1], got {lr_decay!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"fit: {name} must be a positive integer, got {value!r}")
    rng = as_generator(rng)
    n = len(x)
    history = []
    first_input_grad = model.input_grad
    model.input_grad = False  # nothing uses the gradient with respect to the data
    try:
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n) if shuffle else None
            batches = _batches(n, batch_size, order)
            if progress is not None:
                batches = progress(batches, total=-(-n // batch_size), desc=f"epoch {epoch}")
            total_loss = total_correct = 0.0
            for b, idx in enumerate(batches, start=1):
                xb, yb = x[idx], y[idx]
                out = model.forward(xb)
                value = loss_fn(yb, out)
                if not np.isfinite(value):
                    raise TrainingDiverged(
                        f"loss became {value} at epoch {epoch}, batch {b}: "
                        "lower the learning rate or check the data"
                    )
                model.backward(loss_prime(yb, out))
                optimizer.step(model)
                total_loss += value * len(xb)
                total_correct += accuracy(yb, out) * len(xb)
            optimizer.lr *= lr_decay
            row = {
                "epoch": epoch,
                "train_loss": total_loss / n,
                "train_accuracy": total_correct / n,
            }
            if validation is not None:
                val = evaluate(model, *validation, loss=loss)
                row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            history.append(row)
            log.debug("epoch %d: %s", epoch, row)
            if callback is not None:
                callback(row)
    finally:
        model.input_grad = first_input_grad
    return history
