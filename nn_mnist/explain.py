"""``nn-mnist explain IMAGE``: what an nn model does inside for one image, as a figure (``-o``,
the page's "Look inside" panels) and/or the API's JSON (``--json``). One line and exit status 1
for a bad image or argument, 2 for a model that cannot be explained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nn_mnist.predict import read_image
from pipeline.errors import PipelineError
from pipeline.explaining import explain_image, parse_request
from pipeline.files import write_bytes
from pipeline.inference import load_classifier


def run(args) -> int:
    try:
        classifier = load_classifier(args.model)
        if classifier.model is None:
            raise PipelineError(f"{args.model}: explanations need an nn model (.npz)")
    except PipelineError as e:
        print(f"nn-mnist explain: {e}", file=sys.stderr)
        return 2
    try:
        if args.output is None and not args.json:
            raise PipelineError("say where the figure goes (-o FIGURE.png) or ask for --json")
        query = {"target": args.target, "steps": args.steps, "unit": args.unit}
        wanted = parse_request(query, len(classifier.class_names))  # the API's checks
        try:
            image = read_image(Path(args.image), classifier.dataset)
        except PipelineError as e:
            raise PipelineError(f"{args.image}: {e}") from None
        answer = explain_image(classifier, image, wanted)
        if args.output is not None:
            from pipeline.figures import explanation_figure, png_bytes

            write_bytes(Path(args.output), png_bytes(explanation_figure(answer), dpi=100))
    except PipelineError as e:
        print(f"nn-mnist explain: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer))
    else:
        c = answer["completeness"]
        print(
            f"{args.image}: {classifier.path.name} predicts "
            f"{answer['class_names'][answer['prediction']]!r}; explained "
            f"{answer['class_names'][answer['target']]!r} in {args.output} (integrated gradients "
            f"sum {c['sum']:.4f}, logit difference {c['expected']:.4f}, gap "
            f"{100 * c['relative_gap']:.2f}%)"
        )
    return 0
