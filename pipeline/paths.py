"""Every path the stages read and write, from one root: the working directory DVC runs them in."""

from pathlib import Path

__all__ = [
    "ROOT",
    "RAW",
    "PROCESSED",
    "HANDWRITING",
    "MODELS",
    "REPORTS",
    "FIGURES",
    "LIVE",
    "MODEL_KINDS",
    "HISTORY_METRICS",
]

ROOT = Path(".")
RAW = ROOT / "data" / "raw"
PROCESSED = ROOT / "data" / "processed"
HANDWRITING = ROOT / "data" / "handwriting.npz"  # the robustness set (pipeline.handwriting)
MODELS = ROOT / "models"
REPORTS = ROOT / "reports"
FIGURES = REPORTS / "figures"
LIVE = REPORTS / "live"  # DVCLive's folders of training curves, one per model
MODEL_KINDS = ("dense", "conv")
HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
