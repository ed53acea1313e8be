"""Stage 5, evaluate: ``python -m stages evaluate``: each model on its full test set (the 10,000
test images restricted to its classes).

Writes ``reports/metrics.json`` (``{"dense": {"accuracy", "loss", "macro_f1", "robustness"},
"conv": {...}}``, accuracies as fractions; ``robustness``: the accuracy on
``data/handwriting.npz``, digits by writers MNIST did not have, for MNIST models only),
``reports/per_class.json`` (precision, recall, F1 and support per class, under the class names:
digits for MNIST, "Sneaker", ... for Fashion-MNIST) and
``reports/confusion/<kind>.csv`` (one ``actual,predicted`` row of class names per test image, in
test-set order, for DVC's ``confusion`` template).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

import nn
from pipeline import numerics
from pipeline.data import class_names, dataset_name, load_dataset
from pipeline.files import write_json, write_text
from pipeline.handwriting import robustness_accuracy
from pipeline.metrics import classification_metrics, confusion_csv
from pipeline.models import load_trained
from pipeline.paths import HANDWRITING, MODEL_KINDS, REPORTS

log = logging.getLogger("stages.evaluate")


def evaluate_kind(kind: str, handwriting):
    model, meta, data = load_trained(kind)
    y_pred = nn.predict(model, data["x_test"], threads=nn.parallel.available_cores())
    names = class_names(data)
    summary, per_class, actual, predicted = classification_metrics(
        data["y_test"], y_pred, meta["loss"], names
    )
    if dataset_name(data) == "mnist":  # digits by writers MNIST did not have
        summary["robustness"] = robustness_accuracy(model, data, handwriting())
    labels = np.asarray(names)
    return summary, per_class, confusion_csv(labels[actual], labels[predicted])


def main(argv=()) -> None:
    metrics, per_class, confusion = {}, {}, {}
    # read once, and only for an MNIST model
    handwriting = functools.cache(lambda: load_dataset(HANDWRITING, "robustness"))
    with numerics.deterministic_blas():
        for kind in MODEL_KINDS:
            metrics[kind], per_class[kind], confusion[kind] = evaluate_kind(kind, handwriting)
            log.info("%s: %s", kind, metrics[kind])
    write_json(REPORTS / "metrics.json", metrics)
    write_json(REPORTS / "per_class.json", per_class)
    for kind, text in confusion.items():
        write_text(REPORTS / "confusion" / f"{kind}.csv", text)
