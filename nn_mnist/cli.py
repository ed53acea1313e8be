"""``nn-mnist``: use what the pipeline trained.

    nn-mnist predict IMAGE... [--model PATH] [--json]

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
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    numerics.pin()  # before NumPy loads: the nn model computes as the pipeline did
    from nn_mnist.predict import run

    return run(args.images, args.model, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
