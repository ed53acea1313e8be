"""The plot stage's figures, drawn with matplotlib's object API (no pyplot: importing this module
selects no backend and changes no global state) and written as PNG without version metadata.

- ``curves_figure``: training and validation loss and accuracy per epoch, both models;
- ``confusion_figure``: a test confusion matrix;
- ``image_grid``: a grid of images (misclassified test images, first-layer weights).
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
from matplotlib.artist import setp
from matplotlib.figure import Figure

import nn
from pipeline.errors import PipelineError
from pipeline.paths import HISTORY_METRICS, LIVE

__all__ = [
    "read_live_history",
    "read_csv",
    "png_bytes",
    "curves_figure",
    "confusion_figure",
    "image_grid",
    "first_layer_images",
]


def read_live_history(kind: str) -> list[dict]:
    """The per-epoch rows ``{"epoch", "train_loss", ...}`` the train stage wrote through DVCLive
    (``reports/live/<kind>/plots/metrics/<name>.tsv``: rows ``step<TAB>value``, step = epoch - 1).
    """
    rows: dict[int, dict] = {}
    for name in HISTORY_METRICS:
        path = LIVE / kind / "plots" / "metrics" / f"{name}.tsv"
        if not path.exists() and name.startswith("val_"):
            continue  # trained without validation images
        for r in read_csv(path, delimiter="\t"):
            step = int(r["step"])
            rows.setdefault(step, {"epoch": step + 1})[name] = r[name]
    return [rows[s] for s in sorted(rows)]


def read_csv(path, delimiter=",") -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f, delimiter=delimiter))
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run the earlier stages first)") from None


def png_bytes(fig: Figure, dpi: int) -> bytes:
    """The figure as PNG, without the software-version metadata (the same figure, the same
    bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def curves_figure(histories: dict[str, list[dict]]):
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for kind, rows in histories.items():
        epochs = [int(r["epoch"]) for r in rows]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(
                epochs, [float(r[f"train_{metric}"]) for r in rows], "--", label=f"{kind} train"
            )
            if rows and rows[0].get(f"val_{metric}"):
                ax.plot(
                    epochs,
                    [float(r[f"val_{metric}"]) for r in rows],
                    "-o",
                    ms=3,
                    label=f"{kind} validation",
                )
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    return fig


def confusion_figure(cm: np.ndarray, classes: list[str], kind: str):
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > cm.max() / 2 else "black",
        )
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="actual",
        title=f"{kind}: test confusion matrix",
    )
    if max(len(c) for c in classes) > 2:  # names, not digits: slant them so they do not overlap
        setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    return fig


def image_grid(images: np.ndarray, titles: list[str], suptitle: str, cmap="gray"):
    n = max(len(images), 1)
    cols = min(n, 8 if n > 12 else 6)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.3 * cols, 1.5 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        lim = np.abs(img).max() or 1.0
        ax.imshow(img, cmap=cmap, **({} if cmap == "gray" else {"vmin": -lim, "vmax": lim}))
        ax.set_title(title, fontsize=8)
    fig.suptitle(suptitle)
    return fig


def first_layer_images(model: nn.Sequential) -> tuple[np.ndarray, str]:
    """The first layer's weights as images: Dense columns as 28x28, Conv2D filters as kh x kw."""
    first = next(layer for layer in model.layers if layer.params)
    w = first.params["weight"]
    if isinstance(first, nn.Conv2D):
        return w[:, 0], "first-layer filters (input channel 0)"
    side = math.isqrt(w.shape[0])
    if side * side != w.shape[0]:
        raise PipelineError(f"first Dense layer has {w.shape[0]} inputs, not a square image")
    return w.T[:64].reshape(-1, side, side), "first-layer weights (first 64 units)"
