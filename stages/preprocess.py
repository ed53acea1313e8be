"""Stage 2, preprocess: ``python -m stages preprocess``.

For each model (``dense``, ``conv``) it writes ``data/processed/<model>.npz``: its classes of the
fetched dataset, scaled to [0, 1], split into training, stratified validation and test images, with
one-hot labels (``pipeline.data`` says what the file holds).
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.data import make_subset
from pipeline.files import write_npz
from pipeline.idx import load_mnist_split, read_dataset_info
from pipeline.params import PreprocessParams, load_params
from pipeline.paths import MODEL_KINDS, PROCESSED, RAW

log = logging.getLogger("stages.preprocess")


def main(argv=()) -> None:
    params = load_params("preprocess", PreprocessParams)
    train, test = load_mnist_split(RAW, "train"), load_mnist_split(RAW, "test")
    info = read_dataset_info(RAW)
    subsets = {}
    for i, kind in enumerate(MODEL_KINDS):
        rng = np.random.default_rng([params.seed, i])  # one independent stream per model
        section = f"preprocess.{kind}"
        subsets[kind] = make_subset(train, test, getattr(params, kind), rng, section, info)
    for kind, arrays in subsets.items():  # validate everything before writing anything
        write_npz(PROCESSED / f"{kind}.npz", arrays)
        log.info(
            "%s: %d train, %d val, %d test images of %s classes %s",
            kind,
            len(arrays["x_train"]),
            len(arrays["x_val"]),
            len(arrays["x_test"]),
            info.get("title", info["dataset"]),
            arrays["class_names"].tolist(),
        )
