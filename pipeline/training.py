"""The training recipe: a ``train_<kind>`` section and a processed dataset in, a trained model and
its per-epoch history out (and, through :class:`LiveCurves`, DVCLive's files as each epoch ends).
"""

from __future__ import annotations

import logging

import numpy as np

import nn
from pipeline.errors import PipelineError
from pipeline.models import build_model, make_optimizer, params_errors
from pipeline.params import TrainParams
from pipeline.paths import HISTORY_METRICS, LIVE

__all__ = ["train", "LiveCurves"]

log = logging.getLogger("pipeline.training")


class LiveCurves:
    """Write each epoch's history row through DVCLive as the epoch ends: ``<name>.tsv`` rows
    ``step<TAB>value`` (step = epoch - 1) without timestamps, so the same run writes the same bytes;
    no ``dvc.yaml`` of its own (ours declares the files) and no experiment of its own. The folder
    is opened at the first epoch's end, so a run refused before training writes nothing."""

    def __init__(self, kind: str, root=LIVE):
        self.folder, self.live = root / kind, None

    def __call__(self, row: dict) -> None:
        if self.live is None:
            from dvclive import Live

            self.live = Live(str(self.folder), dvcyaml=None, save_dvc_exp=False, report=None)
        for name in HISTORY_METRICS:
            if name in row:
                self.live.log_metric(name, row[name], timestamp=False)
        self.live.next_step()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def augmentation(p: TrainParams, rng: np.random.Generator):
    """The training section's augmentation, in the order flip, warp, strokes, blur, shift; None
    if every key is off. Each part that is on draws from a stream of its own, spawned from
    ``rng`` (the shifts from ``rng`` itself): turning one on leaves the others' draws alone."""
    parts = []
    if p.augment_flip:
        parts.append(nn.augment.RandomFlip(0.5, rng=rng.spawn(1)[0]))
    warp = (p.augment_rotate, p.augment_scale, p.augment_shear, p.augment_elastic)
    if any(warp):
        parts.append(nn.augment.RandomWarp(*warp, p.augment_elastic_sigma, rng=rng.spawn(1)[0]))
    if p.augment_stroke:
        parts.append(nn.augment.RandomStroke(p.augment_stroke, rng=rng.spawn(1)[0]))
    if p.augment_blur:
        parts.append(nn.augment.RandomBlur(p.augment_blur, rng=rng.spawn(1)[0]))
    if p.augment_shift:
        parts.append(nn.augment.RandomShift(p.augment_shift, rng=rng))
    return nn.augment.Compose(parts) if parts else None


# What runs the shards (``nn.fit``'s ``workers``; the bits are the same either way). Measured by
# ``bench_training`` on the Zen 4 host (2026-12-06): the conv stage 44.8 s on threads, 41.1 s on
# processes; the dense stage, whose steps are short and whose batches wait on the augmentation
# thread, 22.9 s on threads and 24.6 s on processes.
WORKERS = {"conv": "processes", "dense": "threads"}


def train(kind: str, p: TrainParams, data: dict, *, progress=None, on_epoch=None, workers=None):
    """Build and train the model; returns ``(model, history)``. ``on_epoch(row)`` is called as
    each epoch ends. ``workers`` run the shards (default: ``WORKERS[kind]``; see ``nn.fit``,
    the same bits on either). A value the library refuses raises PipelineError naming its params
    key."""
    section = f"train_{kind}"
    validation = (data["x_val"], data["y_val"]) if len(data["x_val"]) else None
    keeps_best = p.keep_best or p.patience is not None
    if keeps_best and validation is None:
        raise PipelineError(
            f"{section}.keep_best: needs validation images (preprocess.{kind}.val_size > 0)"
        )
    init_rng, shuffle_rng, augment_rng = np.random.default_rng(p.seed).spawn(3)
    with params_errors(section):
        model = build_model(kind, p, data["y_train"].shape[1], init_rng, data["x_train"].shape[1:])
        batch_size = nn.checks.positive_int("fit", "batch_size", p.batch_size)
        opt = make_optimizer(p, -(-len(data["x_train"]) // batch_size))
        per_batch = nn.PerBatch(
            augment=augmentation(p, augment_rng),
            label_smoothing=p.label_smoothing,
            clip_norm=p.clip_norm,
        )
        keep_best = nn.KeepBest("val_accuracy", p.patience) if keeps_best else None
    log.info("%s model:\n%r", kind, model)

    def report(row):
        values = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
        log.info("%s epoch %d: %s", kind, row["epoch"], values)
        if on_epoch is not None:
            on_epoch(row)

    try:
        with params_errors(section):
            history = nn.fit(
                model,
                data["x_train"],
                data["y_train"],
                loss=p.loss,
                optimizer=opt,
                epochs=p.epochs,
                batch_size=batch_size,
                rng=shuffle_rng,
                validation=validation,
                per_batch=per_batch,
                shards=p.shards,
                workers=workers or WORKERS[kind],
                keep_best=keep_best,
                callback=report,
                progress=progress,
            )
    except nn.TrainingDiverged as e:
        raise PipelineError(f"{section}: {e} ({section}.lr is {p.lr})") from None
    return model, history
