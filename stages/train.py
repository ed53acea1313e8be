"""Stage 3, train: ``python -m stages train dense|conv``.

Trains the model that the ``train_<kind>`` section of ``params.yaml`` describes on
``data/processed/<kind>.npz``, validating after every epoch (``pipeline.training``), and writes
``models/<kind>.npz`` and the per-epoch curves through DVCLive in ``reports/live/<kind>/``
(``metrics.json``: the last epoch's values and its ``step``; ``plots/metrics/<name>.tsv``: one row
per epoch), written as each epoch ends, so ``dvc exp show`` follows a running experiment.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time

import nn
from pipeline import numerics
from pipeline.data import dataset_name, load_dataset
from pipeline.errors import PipelineError
from pipeline.params import TRAIN_PARAMS, load_params
from pipeline.paths import MODEL_KINDS, MODELS, PROCESSED
from pipeline.training import LiveCurves, train

log = logging.getLogger("stages.train")


def tqdm_progress(kind: str):
    """A progress bar per epoch where stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def progress(it, total, desc):
        return tqdm(it, total=total, desc=f"{kind} {desc}", leave=False, file=sys.stderr)

    return progress


def main(argv=()) -> None:
    if len(argv) != 1 or argv[0] not in MODEL_KINDS:
        raise PipelineError(f"usage: python -m stages train {{{'|'.join(MODEL_KINDS)}}}")
    kind = argv[0]
    p = load_params(f"train_{kind}", TRAIN_PARAMS[kind])
    data = load_dataset(PROCESSED / f"{kind}.npz")
    t0 = time.perf_counter()
    curves = LiveCurves(kind)
    try:
        with numerics.deterministic_blas():
            model, _ = train(kind, p, data, progress=tqdm_progress(kind), on_epoch=curves)
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
