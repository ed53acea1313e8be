"""What a point measured, as one flat mapping: ``reports/metrics.json`` (the evaluate stage, on
the test set: ``conv.accuracy``, ``dense.loss``, ...) and each model's last epoch from its
training curves (``reports/live/<kind>/metrics.json``: ``conv.val_accuracy``,
``dense.train_loss``, ...), so a sweep can rank points by a validation metric and keep the test
set for the final report."""

from __future__ import annotations

import json
from collections.abc import Callable

from pipeline.paths import HISTORY_METRICS, LIVE, MODEL_KINDS, REPORTS

__all__ = ["METRICS", "flatten", "read"]

METRICS = (REPORTS / "metrics.json").as_posix()
CURVES = {kind: (LIVE / kind / "metrics.json").as_posix() for kind in MODEL_KINDS}


def flatten(metrics: dict, prefix: str = "") -> dict:
    """``{"conv": {"accuracy": 0.99}}`` -> ``{"conv.accuracy": 0.99}``."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read(text_of: Callable[[str], str | None]) -> dict:
    """The flat metrics of one commit or clone; ``text_of(path)`` is a file's text, or None
    where the file is missing (a pipeline without that model)."""
    text = text_of(METRICS)
    flat = flatten(json.loads(text) or {}) if text else {}
    for kind, path in CURVES.items():
        text = text_of(path)
        last = json.loads(text) if text else {}
        flat |= {f"{kind}.{k}": v for k, v in last.items() if k in HISTORY_METRICS}
    return flat
