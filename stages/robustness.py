"""Stage 3, robustness: ``python -m stages robustness``: ``data/handwriting.npz``, digits that
MNIST's writers did not write (``pipeline.handwriting``), for the evaluate stage to score each
MNIST model on: ``images`` uint8 ``(N, 28, 28)`` white on black, framed as MNIST's, and ``labels``.
"""

from __future__ import annotations

import logging

from pipeline.files import write_npz
from pipeline.handwriting import robustness_set
from pipeline.params import RobustnessParams, load_params
from pipeline.paths import HANDWRITING

log = logging.getLogger("stages.robustness")


def main(argv=()) -> None:
    p = load_params("robustness", RobustnessParams)
    images, labels = robustness_set(p.per_class, p.seed)
    write_npz(HANDWRITING, {"images": images, "labels": labels})
    log.info("%d traced digits, %d of each class", len(labels), p.per_class)
