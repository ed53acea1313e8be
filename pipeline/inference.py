"""A trained classifier from a file, whatever its kind: an ``nn`` model (``.npz``, run by the
library) or an exported one (``.onnx``, run by ONNX Runtime). ``nn-mnist predict`` and the web app
load models through :func:`load_classifier`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

import nn
from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError, first_line

__all__ = ["Classifier", "load_classifier", "classifier_from_bytes"]


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A model ready to classify 28x28 images. ``outputs`` maps ``(N, 1, 28, 28)`` float32 to the
    model's outputs; ``logits`` says whether softmax turns those into probabilities."""

    path: Path
    runtime: str  # "nn" or "onnxruntime"
    dataset: str
    class_names: list[str]
    sha256: str
    outputs: Callable[[np.ndarray], np.ndarray]
    logits: bool
    model: nn.Sequential | None = None  # the nn model itself (None for ONNX): explanations
    md5: str = ""  # of the file, as DVC records it in dvc.lock

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """``(N, K)`` class probabilities of ``images`` ``(N, 28, 28)`` or ``(N, 1, 28, 28)``."""
        x = np.asarray(images, np.float32).reshape(-1, 1, 28, 28)
        return self.probabilities_of(self.outputs(x))

    def probabilities_of(self, y: np.ndarray) -> np.ndarray:
        """``(N, K)`` class probabilities from the model's outputs ``y``."""
        if self.logits:
            return nn.losses.softmax(y.astype(np.float64))
        y = np.clip(y.astype(np.float64), 0, None)
        return y / np.maximum(y.sum(axis=1, keepdims=True), 1e-12)


def _class_names(dataset: str, classes) -> list[str]:
    names = DATASETS[dataset].class_names if dataset in DATASETS else [str(c) for c in range(10)]
    return [names[c] for c in classes]


def load_classifier(path) -> Classifier:
    """The classifier in ``path`` (``.npz``: an ``nn`` model; ``.onnx``: exported); PipelineError
    naming the file and the problem for anything else."""
    path = Path(path)
    if path.is_dir():
        raise PipelineError(f"{path}: is a directory, not a model file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: model not found (run `make repro` first)") from None
    except OSError as e:
        raise PipelineError(f"{path}: cannot read ({e.strerror})") from None
    return classifier_from_bytes(path, data)


def classifier_from_bytes(path: Path, data: bytes) -> Classifier:
    """The classifier in ``data``, the bytes of a model file named ``path`` (its suffix says the
    kind)."""
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(data).hexdigest()
    if path.suffix == ".npz":
        try:
            model, meta = nn.load(path, with_metadata=True, data=data)
        except nn.ModelFileError as e:
            raise PipelineError(str(e)) from None
        model.eval()
        dataset = meta.get("dataset", "mnist")
        if "classes" in meta:
            classes = meta["classes"]
        else:  # a model saved without its classes: one per output
            classes = list(range(model.forward(np.zeros((1, 1, 28, 28), np.float32)).shape[1]))
        return Classifier(
            path,
            "nn",
            dataset,
            _class_names(dataset, classes),
            digest,
            lambda x: nn.predict(model, x),
            meta.get("loss", "cross_entropy") == "cross_entropy",
            model,
            md5,
        )
    if path.suffix == ".onnx":
        return dataclasses.replace(_load_onnx(path, data, digest), md5=md5)
    raise PipelineError(f"{path}: not a model file (expected .npz from nn or .onnx)")


def _load_onnx(path: Path, data: bytes, digest: str) -> Classifier:
    from pipeline.export import run_onnx, session

    try:
        sess = session(data)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise PipelineError(
            f"{path}: not an ONNX model ONNX Runtime can run ({first_line(e)})"
        ) from None
    shape = sess.get_inputs()[0].shape
    if len(shape) != 4 or list(shape[1:]) != [1, 28, 28]:
        raise PipelineError(f"{path}: takes input of shape {shape}, not (N, 1, 28, 28) images")
    meta = sess.get_modelmeta().custom_metadata_map
    try:
        names = json.loads(meta["class_names"])
    except (KeyError, ValueError):
        n_out = sess.get_outputs()[0].shape[-1]
        names = [str(c) for c in range(n_out if isinstance(n_out, int) else 10)]
    return Classifier(
        path,
        "onnxruntime",
        meta.get("dataset", "unknown"),
        names,
        digest,
        lambda x: run_onnx(sess, x),
        "logits" in meta.get("output", "logits"),
    )
