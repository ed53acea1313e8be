"""``nn-mnist predict``: one line per image (the file, the class, its probability, the top 3), or
``--json``. A bad image is one line naming the file and the problem; the others are still
predicted, and the exit status says that something failed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.images import prepare_image
from pipeline.inference import load_classifier

MAX_FILE_BYTES = 50 * 1024 * 1024


def read_image(path: Path, dataset: str = "mnist") -> np.ndarray:
    """The image file at ``path`` as a 28x28 image of ``dataset``; PipelineError naming the
    problem."""
    if path.is_dir():
        raise PipelineError("is a directory, not an image")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PipelineError(f"{size:,} bytes, more than the {MAX_FILE_BYTES:,} accepted")
        return prepare_image(path.read_bytes(), dataset)
    except FileNotFoundError:
        raise PipelineError("no such file") from None
    except OSError as e:
        raise PipelineError(f"cannot read ({e.strerror})") from None


def run(images: list[str], model_path: str, *, as_json: bool = False) -> int:
    try:
        model = load_classifier(model_path)
    except PipelineError as e:
        print(f"nn-mnist predict: {e}", file=sys.stderr)
        return 2
    results, digits, failed = [], [], 0
    for name in images:
        try:
            digits.append(read_image(Path(name), model.dataset))
            results.append({"file": name})
        except PipelineError as e:
            results.append({"file": name, "error": str(e)})
            failed += 1
    if digits:
        probs = iter(model.probabilities(np.stack(digits)))
        for r in results:
            if "error" not in r:
                p = next(probs)
                top = np.argsort(-p, kind="stable")[:3]
                r["class"] = model.class_names[top[0]]
                r["probability"] = round(float(p[top[0]]), 4)
                r["top3"] = [[model.class_names[i], round(float(p[i]), 4)] for i in top]
    if as_json:
        head = {"model": str(model.path), "runtime": model.runtime, "dataset": model.dataset}
        print(json.dumps(head | {"sha256": model.sha256, "predictions": results}, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: error: {r['error']}")
            else:
                top = ", ".join(f"{c} {p:.1%}" for c, p in r["top3"])
                print(f"{r['file']}: {r['class']} ({r['probability']:.1%})  top 3: {top}")
    return 1 if failed else 0
