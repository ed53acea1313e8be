"""Run one stage: ``python -m stages <name> [args]`` (what ``stages/run.sh`` and so DVC call).

First thing, before NumPy loads, it pins what decides the float results (``pipeline.numerics.pin``:
one OpenBLAS kernel, one BLAS thread, one set of NumPy SIMD loops) and keeps freed memory in the
process (``pipeline.allocator``: speed only). Then it runs ``stages.<name>.main(args)``; a
``PipelineError`` (a user mistake) becomes one ``error:`` line and exit status 2.
"""

import importlib
import logging
import os
import sys

from pipeline import allocator, numerics
from pipeline.errors import PipelineError

STAGES = (
    "environment", "fetch", "preprocess", "robustness", "train", "evaluate", "export", "plot",
)  # fmt: skip


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in STAGES:
        print(f"usage: python -m stages {{{'|'.join(STAGES)}}} [args]", file=sys.stderr)
        return 2
    numerics.pin()
    allocator.keep_freed_memory()
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(name)s: %(message)s", stream=sys.stderr
    )
    stage = importlib.import_module(f"stages.{argv[0]}")
    try:
        stage.main(argv[1:])
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
