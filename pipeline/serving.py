"""What the web app serves, without the web: a folder's models loaded as one set, a signature that
tells when the files changed, the checks on a client's pixels, and the answer for a batch of images.

The server (``nn_mnist/server.py``) is the HTTP around this module; images are prepared by
:func:`pipeline.images.prepare_image`, the same function ``nn-mnist predict`` uses.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.images import FIELD
from pipeline.inference import Classifier, load_classifier

__all__ = [
    "FORMATS",
    "ModelSet",
    "load_model_set",
    "signature",
    "parse_pixels",
    "answers",
    "accuracies",
]

FORMATS = ("npz", "onnx")  # nn's own files, or exported ones run by ONNX Runtime
PIXELS = FIELD * FIELD


@dataclasses.dataclass(frozen=True)
class ServedModel:
    name: str  # the file's stem: "conv", "dense" (another revision's: "conv@NAME")
    classifier: Classifier
    accuracy: float | None  # test accuracy from the metrics file, where it has this model
    revision: dict | None = None  # the experiment or commit it comes from (None: the workspace)

    def info(self) -> dict:
        c = self.classifier
        return {
            "name": self.name,
            "file": c.path.name,
            "runtime": c.runtime,
            "dataset": c.dataset,
            "class_names": c.class_names,
            "accuracy": self.accuracy,
            "sha256": c.sha256,
            "md5": c.md5,
            "revision": self.revision,
        }


@dataclasses.dataclass(frozen=True)
class ModelSet:
    """The models served together, and the signature of the files they were loaded from."""

    models: tuple[ServedModel, ...]
    signature: tuple

    def info(self) -> list[dict]:
        return [m.info() for m in self.models]

    @property
    def dataset(self) -> str:
        """The dataset all the models were trained on: images are prepared as its images were."""
        return self.models[0].classifier.dataset


def model_files(folder: Path, fmt: str) -> list[Path]:
    """The ``*.{fmt}`` files in ``folder``, sorted by name."""
    if fmt not in FORMATS:
        raise PipelineError(f"model format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such folder of models (run `make repro` first)")
    return sorted(p for p in folder.glob(f"*.{fmt}") if p.is_file())


def signature(folder: Path, fmt: str, metrics: Path | None) -> tuple:
    """What changes when any served file changes (``dvc checkout``, ``dvc exp apply``, ``dvc
    repro`` replace them): name, size, modification time and inode of each model file and of the
    metrics file. Cheap: a few ``stat`` calls."""
    paths = model_files(folder, fmt) if folder.is_dir() else []
    if metrics is not None:
        paths.append(metrics)
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out.append((str(p), None))
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


def accuracies(text: str | None) -> dict:
    """``{model name: test accuracy}`` from the text of the evaluate stage's ``metrics.json``
    (empty if there is none or it is not of that shape: accuracy is shown where known, never
    guessed)."""
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return {}
    out = {}
    if isinstance(data, dict):
        for name, values in data.items():
            acc = values.get("accuracy") if isinstance(values, dict) else None
            if isinstance(acc, int | float) and math.isfinite(acc):
                out[name] = float(acc)
    return out


def _read(path: Path | None) -> str | None:
    try:
        return None if path is None else path.read_text()
    except OSError:
        return None


def load_model_set(folder, fmt: str = "npz", metrics=None) -> ModelSet:
    """Every ``*.{fmt}`` model in ``folder``, each checked to answer a blank image; PipelineError
    naming the file and the problem if none is there or one cannot be loaded."""
    folder = Path(folder)
    metrics = None if metrics is None else Path(metrics)
    before = signature(folder, fmt, metrics)
    files = model_files(folder, fmt)
    if not files:
        raise PipelineError(f"{folder}: no .{fmt} models in it (run `make repro` first)")
    accuracy = accuracies(_read(metrics))
    models = []
    blank = np.zeros((1, FIELD, FIELD), np.float32)
    for path in files:
        classifier = load_classifier(path)
        p = classifier.probabilities(blank)
        if p.shape != (1, len(classifier.class_names)) or not np.isfinite(p).all():
            raise PipelineError(f"{path}: does not answer a blank image with class probabilities")
        models.append(ServedModel(path.stem, classifier, accuracy.get(path.stem)))
    datasets = {m.classifier.dataset for m in models}
    if len(datasets) > 1:  # one image preparation serves them all: they must agree
        trained = ", ".join(f"{m.classifier.path.name} on {m.classifier.dataset}" for m in models)
        raise PipelineError(f"{folder}: models of different datasets ({trained})")
    return ModelSet(tuple(models), before)


def parse_pixels(data) -> np.ndarray:
    """A client's JSON ``{"pixels": [784 numbers in [0, 1]]}`` (row by row, white ink on black, as
    MNIST's images: the models see them as they are) as a float32 ``(28, 28)``; PipelineError
    naming the problem otherwise."""
    if not isinstance(data, dict) or "pixels" not in data:
        raise PipelineError('JSON body must be an object with "pixels": a list of 784 numbers')
    pixels = data["pixels"]
    if isinstance(pixels, list) and pixels and all(isinstance(r, list) for r in pixels):
        pixels = [v for row in pixels for v in row]  # 28 rows of 28 are fine too
    if not isinstance(pixels, list):
        raise PipelineError(f'"pixels" must be a list of {PIXELS} numbers')
    if len(pixels) != PIXELS:
        raise PipelineError(f'"pixels" must have {PIXELS} values (28x28), got {len(pixels)}')
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pixels):
        raise PipelineError('"pixels" must hold numbers only')
    x = np.asarray(pixels, np.float64)
    if not np.isfinite(x).all():
        raise PipelineError('"pixels" must be finite numbers (no NaN or infinity)')
    if x.min() < 0 or x.max() > 1:
        raise PipelineError(
            f'"pixels" must be in [0, 1], got values from {x.min():g} to {x.max():g}'
        )
    return x.astype(np.float32).reshape(FIELD, FIELD)


def answers(model_set: ModelSet, images: np.ndarray) -> list[list[dict]]:
    """For each image of ``images`` ``(N, 28, 28)``, each model's prediction: one forward pass
    per model for the whole batch."""
    per_model = [m.classifier.probabilities(images) for m in model_set.models]
    out = []
    for i in range(len(images)):
        row = []
        for m, probs in zip(model_set.models, per_model, strict=True):
            p = probs[i]
            row.append(
                {
                    "name": m.name,
                    "prediction": m.classifier.class_names[int(p.argmax())],
                    "probabilities": [round(float(v), 6) for v in p],
                }
            )
        out.append(row)
    return out
