"""Scores of a classifier on its test set: accuracy, loss, macro F1, and per class precision,
recall, F1 and support, from a confusion matrix."""

from __future__ import annotations

import numpy as np

import nn

__all__ = [
    "confusion_matrix",
    "per_class_scores",
    "classification_metrics",
    "confusion_csv",
    "confident_mistakes",
]


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


def confident_mistakes(probabilities: np.ndarray, actual: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` wrong predictions made with the highest probability, most
    confident first (ties by index)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != actual)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:k]]
