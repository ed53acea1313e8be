"""Stage 3, train: ``python -m stages.train dense|conv``.

Builds the model that the ``train_<kind>`` section of ``params.yaml`` describes, trains it on
``data/processed/<kind>.npz`` with validation after every epoch, and writes ``models/<kind>.npz``
and the per-epoch curves ``reports/training/<kind>.csv``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import numpy as np

import nn
from stages.common import (
    MODELS,
    MODELS_KINDS,
    PROCESSED,
    REPORTS,
    StageError,
    deterministic_blas,
    load_dataset,
    load_params,
    run_stage,
    write_text,
)

log = logging.getLogger("stages.train")

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
OUTPUTS = {"none": None, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": nn.Softmax}
HISTORY_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


@dataclasses.dataclass
class TrainParams:
    """What both models share. ``hidden``: widths of the dense layers before the output layer."""

    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 1.0  # the learning rate is multiplied by this after every epoch
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.0  # sgd only
    loss: str = "cross_entropy"  # "cross_entropy" (on logits), "mse", "binary_cross_entropy"
    activation: str = "relu"  # hidden layers: "relu", "tanh", "sigmoid"
    output_activation: str = "none"  # "none" (logits), "sigmoid", "tanh", "softmax"
    hidden: list[int] = dataclasses.field(default_factory=list)

    def validate(self, section):
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise StageError(f"{section}.{key}: must be at least 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise StageError(f"{section}.lr: must be positive, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise StageError(f"{section}.lr_decay: must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.momentum < 1:
            raise StageError(f"{section}.momentum: must be in [0, 1), got {self.momentum}")
        choices = {
            "optimizer": ("adam", "sgd"),
            "loss": tuple(nn.losses.LOSSES),
            "activation": tuple(ACTIVATIONS),
            "output_activation": tuple(OUTPUTS),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise StageError(
                    f"{section}.{key}: must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, key)!r}"
                )
        if self.loss == "cross_entropy" and self.output_activation != "none":
            raise StageError(
                f"{section}.output_activation: cross_entropy takes logits, so it "
                f"must be 'none', got {self.output_activation!r}"
            )
        if self.loss == "binary_cross_entropy" and self.output_activation != "sigmoid":
            raise StageError(
                f"{section}.output_activation: binary_cross_entropy needs "
                f"probabilities, so it must be 'sigmoid'"
            )
        if any(h < 1 for h in self.hidden):
            raise StageError(f"{section}.hidden: widths must be positive, got {self.hidden}")


@dataclasses.dataclass
class ConvParams(TrainParams):
    """``channels``: one Conv2D (+ activation, + MaxPool2D if ``pool > 1``) per entry."""

    channels: list[int] = dataclasses.field(default_factory=lambda: [8])
    kernel_size: int = 3
    padding: int = 0
    pool: int = 2

    def validate(self, section):
        super().validate(section)
        if not self.channels or any(c < 1 for c in self.channels):
            raise StageError(
                f"{section}.channels: need at least one positive channel count, got {self.channels}"
            )
        if self.kernel_size < 1:
            raise StageError(f"{section}.kernel_size: must be at least 1, got {self.kernel_size}")
        if self.padding < 0:
            raise StageError(f"{section}.padding: must not be negative, got {self.padding}")
        if self.pool < 1:
            raise StageError(f"{section}.pool: must be at least 1 (1: no pooling), got {self.pool}")


PARAMS = {"dense": TrainParams, "conv": ConvParams}


def _head(p: TrainParams, n_in: int, n_out: int, rng) -> list[nn.Layer]:
    layers = []
    for width in p.hidden:
        layers += [nn.Dense(n_in, width, rng=rng), ACTIVATIONS[p.activation]()]
        n_in = width
    layers.append(nn.Dense(n_in, n_out, rng=rng))
    if OUTPUTS[p.output_activation] is not None:
        layers.append(OUTPUTS[p.output_activation]())
    return layers


def build_model(kind: str, p: TrainParams, n_classes: int, rng, image_shape=(1, 28, 28)):
    """The ``nn.Sequential`` described by the params (see README: what each model is)."""
    c, h, w = image_shape
    layers: list[nn.Layer] = []
    if kind == "conv":
        for out in p.channels:
            layers += [
                nn.Conv2D(c, out, p.kernel_size, padding=p.padding, rng=rng),
                ACTIVATIONS[p.activation](),
            ]
            h = nn.conv_output_size(h, p.kernel_size, 1, p.padding)
            w = nn.conv_output_size(w, p.kernel_size, 1, p.padding)
            if h < 1 or w < 1:
                raise StageError(
                    f"train_conv.channels: {len(p.channels)} conv layers of kernel "
                    f"{p.kernel_size} shrink the 28x28 image to nothing"
                )
            if p.pool > 1:
                layers.append(nn.MaxPool2D(p.pool))
                h, w = h // p.pool, w // p.pool
                if h < 1 or w < 1:
                    raise StageError(
                        f"train_conv.pool: pooling by {p.pool} shrinks the image to "
                        "nothing; use fewer layers or a smaller pool"
                    )
            c = out
    layers.append(nn.Flatten())
    return nn.Sequential(layers + _head(p, c * h * w, n_classes, rng))


def history_csv(history: list[dict]) -> str:
    lines = [",".join(HISTORY_COLUMNS)]
    for row in history:  # repr(float) is the shortest text that reads back to the same float
        lines.append(",".join(repr(row[c]) if c in row else "" for c in HISTORY_COLUMNS))
    return "\n".join(lines) + "\n"


def train(kind: str, p: TrainParams, data: dict, *, progress=None):
    """Build and train the model; returns ``(model, history)``."""
    init_rng, shuffle_rng = np.random.default_rng(p.seed).spawn(2)
    n_classes = data["y_train"].shape[1]
    model = build_model(kind, p, n_classes, init_rng, data["x_train"].shape[1:])
    log.info("%s model:\n%r", kind, model)
    opt = nn.Adam(p.lr) if p.optimizer == "adam" else nn.SGD(p.lr, momentum=p.momentum)
    validation = (data["x_val"], data["y_val"]) if len(data["x_val"]) else None

    def report(row):
        log.info(
            "%s epoch %d: %s",
            kind,
            row["epoch"],
            ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"),
        )

    try:
        history = nn.fit(
            model,
            data["x_train"],
            data["y_train"],
            loss=p.loss,
            optimizer=opt,
            epochs=p.epochs,
            batch_size=p.batch_size,
            rng=shuffle_rng,
            lr_decay=p.lr_decay,
            validation=validation,
            callback=report,
            progress=progress,
        )
    except nn.TrainingDiverged as e:
        raise StageError(f"train_{kind}: {e} (train_{kind}.lr is {p.lr})") from None
    return model, history


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in MODELS_KINDS:
        raise StageError(f"usage: python -m stages.train {{{'|'.join(MODELS_KINDS)}}}")
    kind = argv[0]
    p = load_params(f"train_{kind}", PARAMS[kind])
    data = load_dataset(PROCESSED / f"{kind}.npz")
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        def progress(it, total, desc):
            return tqdm(it, total=total, desc=f"{kind} {desc}", leave=False, file=sys.stderr)

    t0 = time.perf_counter()
    with deterministic_blas():
        model, history = train(kind, p, data, progress=progress)
    log.info("%s: trained in %.1f s", kind, time.perf_counter() - t0)
    nn.save(
        model,
        MODELS / f"{kind}.npz",
        metadata={
            "kind": kind,
            "classes": data["classes"].tolist(),
            "loss": p.loss,
            "params": dataclasses.asdict(p),
        },
    )
    write_text(REPORTS / "training" / f"{kind}.csv", history_csv(history))


if __name__ == "__main__":
    run_stage(main)
