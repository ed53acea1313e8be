"""The plot stage's figures, drawn with matplotlib's object API (no pyplot: importing this module
selects no backend and changes no global state) and written as PNG without version metadata.

- ``curves_figure``: training and validation loss and accuracy per epoch, both models;
- ``confusion_figure``: a test confusion matrix;
- ``image_grid``: a grid of images (misclassified test images, first-layer weights);
- ``mistakes_figure``: images beside their saliency (the test set's most confident mistakes);
- ``explanation_figure``: what ``nn-mnist explain`` draws of one explanation (the same panels as
  the page's "Look inside").
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
    "explanation_figure",
    "mistakes_figure",
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


def _signed(ax, values, title):
    """A signed map on a diverging scale symmetric around 0, with its colour bar."""
    m = float(np.abs(values).max()) or 1.0
    im = ax.imshow(values, cmap="bwr", vmin=-m, vmax=m)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def explanation_figure(answer: dict) -> Figure:
    """The panels of one explanation (``pipeline.explaining.explain_image``'s answer): the image,
    the class probabilities, saliency, integrated gradients (with the completeness gap) and
    Grad-CAM or gradient x input, then the first layer with maps (a conv model's first conv
    output) as a grid."""
    name = answer["class_names"][answer["target"]]
    maps = next((layer for layer in answer["layers"] if len(layer["shape"]) == 3), None)
    fig = Figure(figsize=(14, 6.4 if maps else 3.4))
    grid = fig.add_gridspec(2 if maps else 1, 5)
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(answer["image"], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{answer['model']}: the 28x28 image", fontsize=9)
    ax.set_axis_off()
    ax = fig.add_subplot(grid[0, 1])
    p = np.array(answer["probabilities"])
    ax.barh(
        range(len(p)),
        p,
        color=["#1b7f3b" if i == answer["target"] else "#2f6fde" for i in range(len(p))],
    )
    ax.set_yticks(range(len(p)), answer["class_names"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title("probabilities", fontsize=9)
    _signed(fig.add_subplot(grid[0, 2]), np.array(answer["saliency"]), f"saliency for {name!r}")
    c = answer["completeness"]
    _signed(
        fig.add_subplot(grid[0, 3]),
        np.array(answer["integrated_gradients"]),
        f"integrated gradients ({c['steps']} steps)\nsum {c['sum']:.3f} vs "
        f"{c['expected']:.3f}: gap {100 * c['relative_gap']:.2f}%",
    )
    ax = fig.add_subplot(grid[0, 4])
    if "grad_cam" in answer:
        ax.imshow(answer["image"], cmap="gray", vmin=0, vmax=1)
        ax.imshow(answer["grad_cam"], cmap="inferno", alpha=0.6)
        ax.set_title("Grad-CAM (last conv block)", fontsize=9)
        ax.set_axis_off()
    else:
        _signed(ax, np.array(answer["gradient_x_input"]), "gradient x input")
    if maps:
        values = np.array(maps["values"])  # (C, H, W)
        cols = math.ceil(math.sqrt(len(values) * 2.5))
        rows = math.ceil(len(values) / cols)
        sub = grid[1, :].subgridspec(rows, cols, wspace=0.05, hspace=0.05)
        lo, hi = values.min(), values.max()
        for k, v in enumerate(values):
            ax = fig.add_subplot(sub[k // cols, k % cols])
            ax.imshow(v, cmap="gray", vmin=lo, vmax=hi)
            ax.set_axis_off()
        fig.text(
            0.5, 0.47, f"layer {maps['index']} {maps['type']}: one map per channel (one scale)",
            ha="center", fontsize=9,
        )  # fmt: skip
    fig.suptitle(
        f"{answer['file']} (sha256 {answer['sha256'][:12]}): predicted "
        f"{answer['class_names'][answer['prediction']]!r}, explaining {name!r}",
        fontsize=10,
    )
    return fig


def mistakes_figure(images: np.ndarray, saliency: np.ndarray, titles: list[str], suptitle: str):
    """Each image (grey) beside its saliency (blue-white-red, symmetric around 0, its own
    scale): four pairs a row."""
    n = max(len(images), 1)
    pairs = min(n, 4)
    rows = math.ceil(n / pairs)
    fig = Figure(figsize=(2.6 * pairs, 1.55 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 2 * pairs, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, sal, title) in enumerate(zip(images, saliency, titles)):
        a, b = axes[k // pairs, 2 * (k % pairs)], axes[k // pairs, 2 * (k % pairs) + 1]
        a.imshow(img, cmap="gray")
        a.set_title(title, fontsize=8)
        lim = float(np.abs(sal).max()) or 1.0
        b.imshow(sal, cmap="bwr", vmin=-lim, vmax=lim)
        b.set_title("saliency", fontsize=8)
    fig.suptitle(suptitle)
    return fig
