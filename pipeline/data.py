"""The processed datasets: each model's split of the raw images (``data/processed/<kind>.npz``),
built by the preprocess stage and read by every later one.

A processed file holds ``x_train, y_train, x_val, y_val, x_test, y_test`` (images
``(N, 1, 28, 28)`` float32 in [0, 1], one-hot labels ``(N, K)`` float32 over the model's classes),
``classes`` (the labels 0-9, in the order of the one-hot columns), ``class_names`` (their names:
digits, or "Sneaker", ...) and ``dataset`` (its name). Validation images come from the training
set; the test set is the full 10,000-image test set restricted to the model's classes.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import PipelineError
from pipeline.params import SubsetParams

__all__ = [
    "load_dataset",
    "dataset_name",
    "class_names",
    "stratified_order",
    "one_hot",
    "scale",
    "make_subset",
]


def load_dataset(path, stage: str = "preprocess") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` a stage wrote (``data/processed/<kind>.npz``: preprocess)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run the {stage} stage first)") from None


def dataset_name(data: dict) -> str:
    """The dataset a processed ``.npz`` came from (files written before it was recorded: MNIST)."""
    return str(data["dataset"]) if "dataset" in data else "mnist"


def class_names(data: dict) -> list[str]:
    """The names of a processed ``.npz``'s classes, in one-hot column order."""
    if "class_names" in data:
        return [str(n) for n in data["class_names"]]
    return [str(c) for c in data["classes"]]


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
        raise PipelineError(
            f"{section}.val_size: {p.val_size} leaves no training images "
            f"(classes {p.classes} have {len(pool)})"
        )
    n_train = available if p.train_size is None else p.train_size
    if n_train > available:
        raise PipelineError(
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
