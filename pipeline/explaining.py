"""What "Look inside" shows, without the web: for one prepared 28x28 image and one ``nn`` model,
every layer's output, the saliency, gradient x input and integrated gradients of a class, Grad-CAM
and the first conv layer's filters (conv models), and optionally one unit's arithmetic, as one
JSON-ready mapping. ``POST /api/explain`` and ``nn-mnist explain`` both answer with it; the
numbers are ``nn.explain``'s (checked against finite differences and the forward pass in
``tests/test_explain.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

import nn
from nn import explain
from pipeline.errors import PipelineError
from pipeline.inference import Classifier

__all__ = ["ExplainRequest", "parse_request", "explain_image", "MAX_STEPS", "DEFAULT_STEPS"]

DEFAULT_STEPS = 32
MAX_STEPS = 256  # integrated-gradient steps go through the model as one batch: bounded
DECIMALS = 6


@dataclasses.dataclass(frozen=True)
class ExplainRequest:
    """What to explain: the class (None: the predicted one), the integrated-gradient steps, and
    optionally one unit ``(layer, index)``."""

    target: int | None = None
    steps: int = DEFAULT_STEPS
    unit: tuple[int, int] | None = None


def _int(name: str, text: str) -> int:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise PipelineError(f"{name} must be an integer, got {text!r}") from None


def parse_request(query, n_classes: int) -> ExplainRequest:
    """An :class:`ExplainRequest` from query strings (``target``, ``steps``, ``unit`` as
    ``LAYER:INDEX``); PipelineError naming the key and the value otherwise. The unit's layer and
    index are checked against the model when it is explained."""
    target = steps = unit = None
    if query.get("target") not in (None, ""):
        target = _int("target", query["target"])
        if not 0 <= target < n_classes:
            raise PipelineError(f"target must be a class index in [0, {n_classes}), got {target}")
    steps = DEFAULT_STEPS
    if query.get("steps") not in (None, ""):
        steps = _int("steps", query["steps"])
        if not 1 <= steps <= MAX_STEPS:
            raise PipelineError(f"steps must be in [1, {MAX_STEPS}], got {steps}")
    if query.get("unit") not in (None, ""):
        text = query["unit"]
        layer, sep, index = text.partition(":")
        if not sep:
            raise PipelineError(f"unit must be LAYER:INDEX (two integers), got {text!r}")
        unit = (_int("unit's layer", layer), _int("unit's index", index))
    return ExplainRequest(target, steps, unit)


def _values(a) -> list:
    return np.round(np.asarray(a, np.float64), DECIMALS).tolist()


def _describe(layer: nn.Layer) -> dict:
    """What the page says of a layer beside its output: its settings, and for BatchNorm the
    affine it applies at inference, for Dropout that it is off."""
    info: dict = {"config": layer.config()}
    if isinstance(layer, nn.BatchNorm):
        var, mean = layer.buffers["running_var"], layer.buffers["running_mean"]
        scale = layer.params["gamma"] / np.sqrt(var + layer.eps)
        info["affine"] = {
            "scale": _values(scale),
            "shift": _values(layer.params["beta"] - mean * scale),
        }
    if isinstance(layer, nn.Dropout):
        info["active"] = False  # evaluation mode: y = x
    return info


def explain_image(
    classifier: Classifier, image: np.ndarray, request: ExplainRequest = ExplainRequest()
) -> dict:
    """Everything "Look inside" shows for ``image`` ``(28, 28)`` in [0, 1] under ``classifier``
    (an ``nn`` model); PipelineError for a model run by another runtime or a bad unit."""
    model = classifier.model
    if model is None:
        raise PipelineError(
            f"{classifier.path.name} runs on {classifier.runtime}: explanations need the nn "
            "model (.npz; serve --format npz)"
        )
    x = np.asarray(image, np.float32).reshape(1, 1, 28, 28)
    outputs, grads = explain.gradients(model, x, request.target)  # None: the predicted class
    logits = outputs[-1][0].astype(np.float64)
    target = int(logits.argmax()) if request.target is None else request.target
    probabilities = classifier.probabilities_of(outputs[-1])[0]
    ig, completeness = explain.integrated_gradients(model, x, target, steps=request.steps)
    answer = {
        "model": classifier.path.stem,
        "file": classifier.path.name,
        "sha256": classifier.sha256,
        "class_names": classifier.class_names,
        "target": target,
        "prediction": int(probabilities.argmax()),
        "image": _values(x[0, 0]),
        "logits": _values(logits),
        "probabilities": _values(probabilities),
        "layers": [
            {
                "index": i,
                "type": type(layer).__name__,
                "shape": list(out.shape[1:]),
                "values": _values(out[0]),
                **_describe(layer),
            }
            for i, (layer, out) in enumerate(zip(model.layers, outputs, strict=True))
        ],
        "saliency": _values(grads[0][0, 0]),
        "gradient_x_input": _values(grads[0][0, 0] * x[0, 0]),
        "integrated_gradients": _values(ig[0, 0]),
        "completeness": dataclasses.asdict(completeness) | {"steps": request.steps},
    }
    convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
    if convs:
        answer["filters"] = _values(convs[0].params["weight"])
        answer["grad_cam"] = _values(explain.grad_cam(model, x, target)[0])
    if request.unit is not None:
        try:
            answer["unit"] = explain.unit(model, x, *request.unit)
        except ValueError as e:
            raise PipelineError(str(e)) from None
    return answer
