"""Stage 4, evaluate: each model on its full test set (the 10,000 test images restricted to its
classes).

Writes ``reports/metrics.json`` (``{"dense": {"accuracy", "loss", "macro_f1"}, "conv": {...}}``,
accuracy as a fraction), ``reports/per_class.json`` (precision, recall, F1 and support per class,
under the class names: digits for MNIST, "Sneaker", ... for Fashion-MNIST) and
``reports/confusion/<kind>.csv`` (one ``actual,predicted`` row of class names per test image, in
test-set order, for DVC's ``confusion`` template).
"""

from __future__ import annotations

import logging

import numpy as np

import nn
from stages.common import (
    MODELS,
    MODELS_KINDS,
    PROCESSED,
    REPORTS,
    StageError,
    class_names,
    dataset_name,
    deterministic_blas,
    load_dataset,
    run_stage,
    write_json,
    write_text,
)

log = logging.getLogger("stages.evaluate")


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``m[i, j]`` = how many samples of class index ``i`` were predicted as ``j``."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (actual, predicted), 1)
    return m


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, loss: str, classes: list
) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """``(summary, per_class, actual_idx, predicted_idx)`` for one-hot ``y_true`` and outputs;
    ``classes`` names the columns (per_class's keys)."""
    actual = y_true.argmax(axis=1)
    predicted = y_pred.argmax(axis=1)
    cm = confusion_matrix(actual, predicted, len(classes))
    scores = per_class_scores(cm)
    summary = {
        "accuracy": float(np.mean(actual == predicted)),
        "loss": nn.losses.get(loss)[0](y_true, y_pred),
        "macro_f1": float(np.mean(scores["f1"])),
    }
    per_class = {
        str(c): {k: (int(v[i]) if k == "support" else float(v[i])) for k, v in scores.items()}
        for i, c in enumerate(classes)
    }
    return summary, per_class, actual, predicted


def confusion_csv(actual_names, predicted_names) -> str:
    rows = (f"{a},{p}" for a, p in zip(actual_names, predicted_names))
    return "actual,predicted\n" + "\n".join(rows) + "\n"


def evaluate_kind(kind: str):
    path = MODELS / f"{kind}.npz"
    try:
        model, meta = nn.load(path, with_metadata=True)
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run the train_{kind} stage first)") from None
    except nn.ModelFileError as e:
        raise StageError(str(e)) from None
    data = load_dataset(PROCESSED / f"{kind}.npz")
    classes = data["classes"].tolist()
    dataset, trained_on = dataset_name(data), meta.get("dataset", "mnist")
    if trained_on != dataset:
        raise StageError(
            f"{path}: trained on {trained_on}, but "
            f"{PROCESSED / f'{kind}.npz'} holds {dataset}: rerun the pipeline"
        )
    if meta.get("classes") != classes:
        raise StageError(
            f"{path}: trained on classes {meta.get('classes')}, but "
            f"{PROCESSED / f'{kind}.npz'} holds {classes}: rerun the pipeline"
        )
    y_pred = nn.predict(model, data["x_test"], threads=nn.parallel.available_cores())
    names = class_names(data)
    summary, per_class, actual, predicted = classification_metrics(
        data["y_test"], y_pred, meta["loss"], names
    )
    labels = np.asarray(names)
    return summary, per_class, confusion_csv(labels[actual], labels[predicted])


def main() -> None:
    metrics, per_class, confusion = {}, {}, {}
    with deterministic_blas():
        for kind in MODELS_KINDS:
            metrics[kind], per_class[kind], confusion[kind] = evaluate_kind(kind)
            log.info("%s: %s", kind, metrics[kind])
    write_json(REPORTS / "metrics.json", metrics)
    write_json(REPORTS / "per_class.json", per_class)
    for kind, text in confusion.items():
        write_text(REPORTS / "confusion" / f"{kind}.csv", text)


if __name__ == "__main__":
    run_stage(main)
