"""Stage 2, preprocess: each model's subsets of the fetched dataset (MNIST or Fashion-MNIST),
scaled, split and one-hot encoded.

For each model (``dense``, ``conv``) it writes ``data/processed/<model>.npz`` with
``x_train, y_train, x_val, y_val, x_test, y_test`` (images ``(N, 1, 28, 28)`` float32 in [0, 1],
one-hot labels ``(N, K)`` float32 over the model's classes), ``classes`` (the labels 0-9, in the
order of the one-hot columns), ``class_names`` (their names: digits, or "Sneaker", ...) and
``dataset`` (its name, from ``data/raw/dataset.json``). Validation images come from the training
set; the test set is the full 10,000-image test set restricted to the model's classes.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from stages.common import (
    MODELS_KINDS,
    PROCESSED,
    RAW,
    StageError,
    load_params,
    run_stage,
    write_npz,
)
from stages.idx import load_mnist_split, read_dataset_info

log = logging.getLogger("stages.preprocess")


@dataclasses.dataclass
class SubsetParams:
    classes: list[int] = dataclasses.field(default_factory=lambda: list(range(10)))
    train_size: int | None = None  # training images after the validation split; None: all left
    val_size: int = 5000  # validation images, drawn from the training set

    def validate(self, section):
        if len(set(self.classes)) != len(self.classes) or not all(
            0 <= c <= 9 for c in self.classes
        ):
            raise StageError(f"{section}.classes: must be distinct digits 0-9, got {self.classes}")
        if len(self.classes) < 2:
            raise StageError(
                f"{section}.classes: a classifier needs at least two digits, got {self.classes}"
            )
        if self.train_size is not None and self.train_size < 1:
            raise StageError(f"{section}.train_size: must be positive, got {self.train_size}")
        if self.val_size < 0:
            raise StageError(f"{section}.val_size: must not be negative, got {self.val_size}")


@dataclasses.dataclass
class PreprocessParams:
    seed: int
    dense: SubsetParams
    conv: SubsetParams


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(labels))`` whose every prefix has each class in proportion.

    Shuffle, then sort by each sample's rank within its class divided by the class size: the first
    ``k`` indices are then a stratified random sample of size ``k``.
    """
    order = rng.permutation(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(shuffled == c)
        rank[members] = (np.arange(len(members)) + 0.5) / len(members)
    return order[np.argsort(rank, kind="stable")]


def one_hot(labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """``(N, K)`` float32 with a 1 in the column of each label's position in ``classes``."""
    lookup = np.full(10, -1)
    lookup[classes] = np.arange(len(classes))
    cols = lookup[labels]
    if np.any(cols < 0):
        raise ValueError("a label is not among the classes")
    out = np.zeros((len(labels), len(classes)), np.float32)
    out[np.arange(len(labels)), cols] = 1.0
    return out


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)`` in [0, 1]."""
    return (images.astype(np.float32) / np.float32(255.0))[:, None]


def make_subset(
    train, test, p: SubsetParams, rng: np.random.Generator, section: str, info: dict | None = None
) -> dict:
    """The arrays of one model's dataset (see the module docstring); ``info`` is the fetch stage's
    ``dataset.json`` (default: MNIST)."""
    info = info or {"dataset": "mnist", "class_names": [str(c) for c in range(10)]}
    (x_tr, y_tr), (x_te, y_te) = train, test
    pool = np.flatnonzero(np.isin(y_tr, p.classes))
    available = len(pool) - p.val_size
    if available < 1:
        raise StageError(
            f"{section}.val_size: {p.val_size} leaves no training images "
            f"(classes {p.classes} have {len(pool)})"
        )
    n_train = available if p.train_size is None else p.train_size
    if n_train > available:
        raise StageError(
            f"{section}.train_size: {n_train} is more than the {available} training "
            f"images of classes {p.classes} left after {p.val_size} for validation"
        )
    order = pool[stratified_order(y_tr[pool], rng)]
    val_idx = np.sort(order[: p.val_size])
    train_idx = np.sort(order[p.val_size : p.val_size + n_train])
    test_idx = np.flatnonzero(np.isin(y_te, p.classes))
    return {
        "x_train": scale(x_tr[train_idx]),
        "y_train": one_hot(y_tr[train_idx], p.classes),
        "x_val": scale(x_tr[val_idx]),
        "y_val": one_hot(y_tr[val_idx], p.classes),
        "x_test": scale(x_te[test_idx]),
        "y_test": one_hot(y_te[test_idx], p.classes),
        "classes": np.array(p.classes, np.int64),
        "class_names": np.array([info["class_names"][c] for c in p.classes]),
        "dataset": np.array(info["dataset"]),
    }


def main() -> None:
    params = load_params("preprocess", PreprocessParams)
    train, test = load_mnist_split(RAW, "train"), load_mnist_split(RAW, "test")
    info = read_dataset_info(RAW)
    subsets = {}
    for i, kind in enumerate(MODELS_KINDS):
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
            info["title"] if "title" in info else info["dataset"],
            arrays["class_names"].tolist(),
        )


if __name__ == "__main__":
    run_stage(main)
