"""Stage 5, plot: matplotlib figures in ``reports/figures/``.

- ``curves.png``: training and validation loss and accuracy per epoch, both models;
- ``confusion_<kind>.png``: the test confusion matrix;
- ``misclassified_<kind>.png``: a grid of misclassified test images (true -> predicted);
- ``weights_dense.png`` / ``filters_conv.png``: the first layer's weights as images.

PNGs are written without the software-version metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import nn  # noqa: E402
from stages.common import (
    FIGURES,
    HISTORY_METRICS,
    LIVE,
    MODELS,
    MODELS_KINDS,
    PROCESSED,
    REPORTS,  # noqa: E402
    StageError,
    class_names,
    load_dataset,
    load_params,
    run_stage,
    write_bytes,
)
from stages.evaluate import confusion_matrix  # noqa: E402


@dataclasses.dataclass
class PlotParams:
    misclassified: int = 36  # digits shown per grid
    dpi: int = 100

    def validate(self, section):
        if self.misclassified < 1:
            raise StageError(f"{section}.misclassified: must be at least 1")
        if not 20 <= self.dpi <= 600:
            raise StageError(f"{section}.dpi: must be in [20, 600], got {self.dpi}")


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
        raise StageError(f"{path}: not found (run the earlier stages first)") from None


def png_bytes(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def curves_figure(histories: dict[str, list[dict]]):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
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
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
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
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    return fig


def image_grid(images: np.ndarray, titles: list[str], suptitle: str, cmap="gray"):
    n = max(len(images), 1)
    cols = min(n, 8 if n > 12 else 6)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False, layout="constrained"
    )
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
        raise StageError(f"first Dense layer has {w.shape[0]} inputs, not a square image")
    return w.T[:64].reshape(-1, side, side), "first-layer weights (first 64 units)"


def main() -> None:
    p = load_params("plot", PlotParams)
    histories = {k: read_live_history(k) for k in MODELS_KINDS}
    figures = {"curves.png": curves_figure(histories)}
    for kind in MODELS_KINDS:
        rows = read_csv(REPORTS / "confusion" / f"{kind}.csv")
        data = load_dataset(PROCESSED / f"{kind}.npz")
        names = class_names(data)
        if len(rows) != len(data["x_test"]):
            raise StageError(
                f"reports/confusion/{kind}.csv has {len(rows)} rows but the test "
                f"set has {len(data['x_test'])} images: rerun evaluate"
            )
        index = {c: i for i, c in enumerate(names)}
        try:
            actual = np.array([index[r["actual"]] for r in rows])
            predicted = np.array([index[r["predicted"]] for r in rows])
        except KeyError as e:
            raise StageError(
                f"reports/confusion/{kind}.csv names class {e.args[0]!r}, not one of "
                f"{names}: rerun evaluate"
            ) from None
        cm = confusion_matrix(actual, predicted, len(names))
        figures[f"confusion_{kind}.png"] = confusion_figure(cm, names, kind)
        wrong = np.flatnonzero(actual != predicted)[: p.misclassified]
        figures[f"misclassified_{kind}.png"] = image_grid(
            data["x_test"][wrong, 0],
            [f"{names[actual[i]]} -> {names[predicted[i]]}" for i in wrong],
            f"{kind}: misclassified test images (true -> predicted), "
            f"{int(np.sum(actual != predicted))} in all",
        )
        model = nn.load(MODELS / f"{kind}.npz")
        images, title = first_layer_images(model)
        name = "filters_conv.png" if kind == "conv" else f"weights_{kind}.png"
        figures[name] = image_grid(
            images, [str(i) for i in range(len(images))], f"{kind}: {title}", cmap="RdBu_r"
        )
    for name, fig in figures.items():
        write_bytes(FIGURES / name, png_bytes(fig, p.dpi))


if __name__ == "__main__":
    run_stage(main)
