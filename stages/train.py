"""Stage 3, train: ``python -m stages.train dense|conv``.

Builds the model that the ``train_<kind>`` section of ``params.yaml`` describes, trains it on
``data/processed/<kind>.npz`` with validation after every epoch, and writes ``models/<kind>.npz``
and the per-epoch curves through DVCLive in ``reports/live/<kind>/`` (``metrics.json``: the last
epoch's values and its ``step``; ``plots/metrics/<name>.tsv``: one row per epoch), written as each
epoch ends, so ``dvc exp show`` and VS Code's DVC extension follow a running experiment.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import numpy as np

import nn
from stages.common import (
    HISTORY_METRICS,
    LIVE,
    MODELS,
    MODELS_KINDS,
    PROCESSED,
    StageError,
    dataset_name,
    deterministic_blas,
    load_dataset,
    load_params,
    run_stage,
)

log = logging.getLogger("stages.train")

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
OUTPUTS = {"none": None, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": nn.Softmax}


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
    shards: int = 1  # each batch is split into this many parts, trained on parallel threads
    schedule: str = "step"  # per batch: constant | step | exponential | cosine | onecycle
    warmup: float = 0.25  # onecycle: the fraction of all steps spent warming up to lr
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])  # adam only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # adam: decoupled (AdamW); sgd: L2; weights only
    init: str = "default"  # default | he_uniform | he_normal | glorot_uniform | glorot_normal
    batch_norm: bool = False  # BatchNorm after every conv and hidden dense layer
    dropout: float = 0.0  # Dropout after every hidden dense layer's activation
    label_smoothing: float = 0.0  # cross_entropy only
    clip_norm: float | None = None  # clip the gradients' global L2 norm to this
    augment_shift: int = 0  # shift each training image by up to this many pixels (0: off)
    keep_best: bool = False  # restore the weights of the epoch with the best val_accuracy
    patience: int | None = None  # stop after this many epochs without a better val_accuracy

    def validate(self, section):
        for key in ("epochs", "batch_size", "shards"):
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
        self._validate_recipe(section)

    def _validate_recipe(self, section: str) -> None:
        """Checks of the training-recipe keys (schedules, regularization, augmentation)."""

        def fail(key, message):
            raise StageError(f"{section}.{key}: {message}, got {getattr(self, key)!r}")

        for key, allowed in (
            ("schedule", tuple(nn.schedules.SCHEDULES)),
            ("init", nn.init.INITIALIZERS),
        ):
            if getattr(self, key) not in allowed:
                fail(key, f"must be one of {', '.join(allowed)}")
        if not 0 < self.warmup < 1:
            fail("warmup", "must be in (0, 1)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            fail("betas", "must be two numbers in [0, 1)")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            fail("nesterov", "needs optimizer sgd with a momentum above 0")
        if self.weight_decay < 0:
            fail("weight_decay", "must not be negative")
        if not 0 <= self.dropout < 1:
            fail("dropout", "must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            fail("label_smoothing", "must be in [0, 1)")
        if self.label_smoothing and self.loss != "cross_entropy":
            fail("label_smoothing", "needs loss cross_entropy")
        if self.clip_norm is not None and not self.clip_norm > 0:
            fail("clip_norm", "must be positive (or null: no clipping)")
        if self.augment_shift < 0:
            fail("augment_shift", "must not be negative")
        if self.patience is not None and self.patience < 1:
            fail("patience", "must be at least 1 (or null: never stop early)")


@dataclasses.dataclass
class ConvParams(TrainParams):
    """``channels``: one Conv2D (+ activation, + MaxPool2D if ``pool > 1``; with ReLU the pooling
    comes first, the same function) per entry."""

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


def make_optimizer(p: TrainParams, steps_per_epoch: int) -> nn.optim.Optimizer:
    """The optimizer with its learning-rate schedule, stepped per batch."""
    total = p.epochs * steps_per_epoch
    schedule = {
        "constant": lambda: nn.schedules.Constant(p.lr),
        "step": lambda: nn.schedules.Step(p.lr, steps_per_epoch, p.lr_decay),
        "exponential": lambda: nn.schedules.Exponential(p.lr, p.lr_decay, steps_per_epoch),
        "cosine": lambda: nn.schedules.Cosine(p.lr, total),
        "onecycle": lambda: nn.schedules.OneCycle(p.lr, total, pct_start=p.warmup),
    }[p.schedule]()
    if p.optimizer == "adam":
        return nn.Adam(p.lr, tuple(p.betas), weight_decay=p.weight_decay, schedule=schedule)
    return nn.SGD(
        p.lr,
        momentum=p.momentum,
        nesterov=p.nesterov,
        weight_decay=p.weight_decay,
        schedule=schedule,
    )


def _head(p: TrainParams, n_in: int, n_out: int, rng) -> list[nn.Layer]:
    layers = []
    for width in p.hidden:
        layers.append(nn.Dense(n_in, width, rng=rng, init=p.init))
        if p.batch_norm:
            layers.append(nn.BatchNorm(width))
        layers.append(ACTIVATIONS[p.activation]())
        if p.dropout:
            layers.append(nn.Dropout(p.dropout, rng=rng.spawn(1)[0]))
        n_in = width
    layers.append(nn.Dense(n_in, n_out, rng=rng, init=p.init))
    if OUTPUTS[p.output_activation] is not None:
        layers.append(OUTPUTS[p.output_activation]())
    return layers


def build_model(kind: str, p: TrainParams, n_classes: int, rng, image_shape=(1, 28, 28)):
    """The ``nn.Sequential`` described by the params (see README: what each model is)."""
    c, h, w = image_shape
    layers: list[nn.Layer] = []
    if kind == "conv":
        for out in p.channels:
            layers.append(nn.Conv2D(c, out, p.kernel_size, padding=p.padding, rng=rng, init=p.init))
            if p.batch_norm:
                layers.append(nn.BatchNorm(out))
            h = nn.conv_output_size(h, p.kernel_size, 1, p.padding)
            w = nn.conv_output_size(w, p.kernel_size, 1, p.padding)
            if h < 1 or w < 1:
                raise StageError(
                    f"train_conv.channels: {len(p.channels)} conv layers of kernel "
                    f"{p.kernel_size} shrink the 28x28 image to nothing"
                )
            block = [ACTIVATIONS[p.activation]()]
            if p.pool > 1:
                h, w = h // p.pool, w // p.pool
                if h < 1 or w < 1:
                    raise StageError(
                        f"train_conv.pool: pooling by {p.pool} shrinks the image to "
                        "nothing; use fewer layers or a smaller pool"
                    )
                # ReLU and max-pooling commute, outputs and gradients alike, to the bit (both
                # take maxima): pooling first leaves the ReLU a quarter of the work. Tanh and
                # Sigmoid keep their place: saturating, they can turn unequal inputs into ties.
                pool = nn.MaxPool2D(p.pool)
                block = [pool, *block] if p.activation == "relu" else [*block, pool]
            layers += block
            c = out
    layers.append(nn.Flatten())
    return nn.Sequential(layers + _head(p, c * h * w, n_classes, rng))


class LiveCurves:
    """Write each epoch's history row through DVCLive as the epoch ends: ``<name>.tsv`` rows
    ``step<TAB>value`` (step = epoch - 1) without timestamps, so the same run writes the same bytes;
    no ``dvc.yaml`` of its own (ours declares the files) and no experiment of its own."""

    def __init__(self, kind: str):
        from dvclive import Live

        self.live = Live(str(LIVE / kind), dvcyaml=None, save_dvc_exp=False, report=None)

    def __call__(self, row: dict) -> None:
        for name in HISTORY_METRICS:
            if name in row:
                self.live.log_metric(name, row[name], timestamp=False)
        self.live.next_step()

    def close(self) -> None:
        self.live.end()


def train(kind: str, p: TrainParams, data: dict, *, progress=None, on_epoch=None):
    """Build and train the model; returns ``(model, history)``. ``on_epoch(row)`` is called as
    each epoch ends."""
    init_rng, shuffle_rng, augment_rng = np.random.default_rng(p.seed).spawn(3)
    n_classes = data["y_train"].shape[1]
    model = build_model(kind, p, n_classes, init_rng, data["x_train"].shape[1:])
    log.info("%s model:\n%r", kind, model)
    opt = make_optimizer(p, -(-len(data["x_train"]) // p.batch_size))
    augment = nn.augment.RandomShift(p.augment_shift, rng=augment_rng) if p.augment_shift else None
    keep_best = nn.KeepBest("val_accuracy", p.patience) if p.keep_best or p.patience else None
    validation = (data["x_val"], data["y_val"]) if len(data["x_val"]) else None
    if keep_best is not None and validation is None:
        raise StageError(
            f"train_{kind}.keep_best: needs validation images (preprocess.{kind}.val_size > 0)"
        )

    def report(row):
        log.info(
            "%s epoch %d: %s",
            kind,
            row["epoch"],
            ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"),
        )
        if on_epoch is not None:
            on_epoch(row)

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
            validation=validation,
            callback=report,
            progress=progress,
            shards=p.shards,
            augment=augment,
            label_smoothing=p.label_smoothing,
            clip_norm=p.clip_norm,
            keep_best=keep_best,
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
    curves = LiveCurves(kind)
    try:
        with deterministic_blas():
            model, history = train(kind, p, data, progress=progress, on_epoch=curves)
    finally:
        curves.close()
    log.info("%s: trained in %.1f s", kind, time.perf_counter() - t0)
    nn.save(
        model,
        MODELS / f"{kind}.npz",
        metadata={
            "kind": kind,
            "dataset": dataset_name(data),
            "classes": data["classes"].tolist(),
            "loss": p.loss,
            "params": dataclasses.asdict(p),
        },
    )


if __name__ == "__main__":
    run_stage(main)
