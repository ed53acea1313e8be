"""``nn-mnist``: use what the pipeline trained.

    nn-mnist predict IMAGE... [--model PATH] [--json]
    nn-mnist explain IMAGE [--model PATH] [--target K] [--unit LAYER:INDEX] -o FIGURE.png [--json]
    nn-mnist serve [--host 127.0.0.1] [--port 8000] [--models DIR] [--format npz|onnx]

Installed by ``make venv`` as a console script (``.venv/bin/nn-mnist``; also ``python -m
nn_mnist``). Each subcommand is a thin entry point over ``pipeline``: parse, call, print.
"""

from __future__ import annotations

import argparse
import sys

from pipeline import numerics


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nn-mnist", description="Use the models the pipeline trained."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "predict",
        help="classify your own images (PNG or JPEG, any size, either ink colour)",
        description="Classify PNG or JPEG images: each is prepared as MNIST's digits were "
        "(grey, white ink on black, cropped to the ink, 20 px in a 28x28 field, centred by "
        "mass) and run through the model. Exit status: 0, all predicted; 1, some image failed; "
        "2, no model.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--model",
        default="models/conv.npz",
        help="an nn model (.npz, run by nn) or an exported one (.onnx, run by ONNX Runtime); "
        "default: %(default)s",
    )
    p.add_argument("--json", action="store_true", help="one JSON document for scripts")

    e = sub.add_parser(
        "explain",
        help="look inside an nn model for one image: saliency, integrated gradients, layers",
        description="Explain one PNG or JPEG image (prepared as for predict) with an nn model: "
        "every layer's output, the saliency and integrated gradients of a class, Grad-CAM and "
        "a unit's arithmetic; as a figure (-o) and/or the JSON of POST /api/explain (--json). "
        "Exit status: 0, explained; 1, a bad image or argument; 2, no nn model.",
    )
    e.add_argument("image", metavar="IMAGE")
    e.add_argument("--model", default="models/conv.npz", help="an nn model (default: %(default)s)")
    e.add_argument("--target", help="the class index to explain (default: the predicted class)")
    e.add_argument("--steps", default="32", help="integrated-gradient steps (default: %(default)s)")
    e.add_argument("--unit", help="LAYER:INDEX: one unit's arithmetic (in the JSON)")
    e.add_argument("-o", "--output", metavar="FIGURE.png", help="write the figure here")
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")

    s = sub.add_parser(
        "serve",
        help="the draw-a-digit web app over the trained models",
        description="Serve the draw-a-digit page and its API (POST /api/predict, GET /livez, "
        "GET /readyz) over the models in a folder, reloaded when their files change. Exit "
        "status 2 if no model can be loaded at start.",
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: %(default)s, this machine only; 0.0.0.0 opens it to "
        "your network)",
    )
    s.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    s.add_argument("--models", default="models", help="folder of models (default: %(default)s)")
    s.add_argument(
        "--format",
        choices=("npz", "onnx"),
        default="npz",
        help="serve the folder's nn models (npz) or exported ones through ONNX Runtime (onnx); "
        "default: %(default)s",
    )
    s.add_argument(
        "--metrics",
        default="reports/metrics.json",
        help="the test accuracies shown beside each model (default: %(default)s)",
    )
    s.add_argument(
        "--repo",
        default=".",
        help="the DVC repository whose experiments' and commits' models the page can pick "
        "(read from its local cache; default: %(default)s; '' for none)",
    )
    s.add_argument(
        "--jobs", type=int, default=1, help="lab experiments run at once (default: %(default)s)"
    )
    s.add_argument(
        "--max-queued",
        type=int,
        default=4,
        help="lab experiments queued or running at most (default: %(default)s)",
    )
    s.add_argument(
        "--max-epochs",
        type=int,
        default=30,
        help="epochs a lab experiment may ask for (default: %(default)s)",
    )
    s.add_argument(
        "--max-train-size",
        type=int,
        default=55_000,
        help="training images a lab experiment may ask for (default: %(default)s, all)",
    )
    s.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        help="seconds a client may pause while sending a body before it gets 408 "
        "(default: %(default)s)",
    )
    s.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="images classified in one forward pass at most; requests that arrive together "
        "share it (default: %(default)s; 1 turns batching off)",
    )
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    numerics.pin()  # before NumPy loads: the nn model computes as the pipeline did
    if args.command == "serve":
        from nn_mnist.serve import run as serve

        return serve(args)
    if args.command == "explain":
        from nn_mnist.explain import run as explain

        return explain(args)
    from nn_mnist.predict import run

    return run(args.images, args.model, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
