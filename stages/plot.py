"""Stage 5, plot: ``python -m stages plot``: matplotlib figures in ``reports/figures/``.

- ``curves.png``: training and validation loss and accuracy per epoch, both models;
- ``confusion_<kind>.png``: the test confusion matrix;
- ``misclassified_<kind>.png``: a grid of misclassified test images (true -> predicted);
- ``mistakes_<kind>.png``: the most confident mistakes, each beside its saliency for the class the
  model wrongly gave (``nn.explain``): which pixels pushed it there;
- ``weights_dense.png`` / ``filters_conv.png``: the first layer's weights as images.
"""

from __future__ import annotations

import numpy as np

import nn
from pipeline import figures as fg
from pipeline.data import class_names, load_dataset
from pipeline.errors import PipelineError
from pipeline.files import write_bytes
from pipeline.metrics import confident_mistakes, confusion_matrix
from pipeline.params import PlotParams, load_params
from pipeline.paths import FIGURES, MODEL_KINDS, MODELS, PROCESSED, REPORTS


def read_confusion(kind: str, names: list[str], n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """``(actual, predicted)`` class indices from ``reports/confusion/<kind>.csv``."""
    rows = fg.read_csv(REPORTS / "confusion" / f"{kind}.csv")
    if len(rows) != n_test:
        raise PipelineError(
            f"reports/confusion/{kind}.csv has {len(rows)} rows but the test "
            f"set has {n_test} images: rerun evaluate"
        )
    index = {c: i for i, c in enumerate(names)}
    try:
        actual = np.array([index[r["actual"]] for r in rows])
        predicted = np.array([index[r["predicted"]] for r in rows])
    except KeyError as e:
        raise PipelineError(
            f"reports/confusion/{kind}.csv names class {e.args[0]!r}, not one of "
            f"{names}: rerun evaluate"
        ) from None
    return actual, predicted


def main(argv=()) -> None:
    p = load_params("plot", PlotParams)
    figures = {"curves.png": fg.curves_figure({k: fg.read_live_history(k) for k in MODEL_KINDS})}
    for kind in MODEL_KINDS:
        data = load_dataset(PROCESSED / f"{kind}.npz")
        names = class_names(data)
        actual, predicted = read_confusion(kind, names, len(data["x_test"]))
        cm = confusion_matrix(actual, predicted, len(names))
        figures[f"confusion_{kind}.png"] = fg.confusion_figure(cm, names, kind)
        wrong = np.flatnonzero(actual != predicted)[: p.misclassified]
        figures[f"misclassified_{kind}.png"] = fg.image_grid(
            data["x_test"][wrong, 0],
            [f"{names[actual[i]]} -> {names[predicted[i]]}" for i in wrong],
            f"{kind}: misclassified test images (true -> predicted), "
            f"{int(np.sum(actual != predicted))} in all",
        )
        model = nn.load(MODELS / f"{kind}.npz").eval()
        probabilities = nn.losses.softmax(nn.predict(model, data["x_test"]).astype(np.float64))
        top = confident_mistakes(probabilities, actual, p.mistakes)
        wrong_class = probabilities[top].argmax(axis=1)
        figures[f"mistakes_{kind}.png"] = fg.mistakes_figure(
            data["x_test"][top, 0],
            nn.explain.saliency(model, data["x_test"][top], wrong_class)[:, 0],
            [
                f"{names[actual[i]]} -> {names[c]} ({probabilities[i, c]:.0%})"
                for i, c in zip(top, wrong_class, strict=True)
            ],
            f"{kind}: the most confident mistakes (true -> predicted), and the saliency of the "
            "predicted class (red raises it)",
        )
        images, title = fg.first_layer_images(model)
        name = "filters_conv.png" if kind == "conv" else f"weights_{kind}.png"
        figures[name] = fg.image_grid(
            images, [str(i) for i in range(len(images))], f"{kind}: {title}", cmap="RdBu_r"
        )
    for name, fig in figures.items():
        write_bytes(FIGURES / name, fg.png_bytes(fig, p.dpi))
