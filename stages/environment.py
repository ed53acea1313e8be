"""Stage 0, environment: ``python -m stages environment``.

Writes ``reports/environment.json``: what decides the pipeline's numbers and nothing else (Python's
minor version, NumPy, its BLAS and the kernel and threads it runs, NumPy's SIMD targets in use, and
``nn.fingerprint``'s SHA-256 of a fixed float32 computation through training's kernels at the
pipeline's matmul shapes). No hostname, CPU model, path or time: the file is identical wherever the
results are, and where they are not, its diff names the cause. ``problems`` lists why this machine
may not reproduce the committed results (empty when the kernel is pinned).
"""

from __future__ import annotations

import logging

from nn.fingerprint import fingerprint
from pipeline import numerics
from pipeline.files import write_json
from pipeline.paths import REPORTS, ROOT

log = logging.getLogger("stages.environment")

# (m, k, n) of the pipeline's matmuls: the dense net at batch 64 and its weight gradients.
MATMUL_SHAPES = ((64, 784, 512), (64, 512, 256), (64, 256, 10), (784, 64, 512), (512, 64, 256))


def environment_report() -> dict:
    """The contents of ``reports/environment.json`` for this process."""
    info = numerics.loaded()
    problems = numerics.problems(info, ROOT / "requirements.lock")
    info["python"] = ".".join(info["python"].split(".")[:2])  # patch releases don't change floats
    return info | {"fingerprint": fingerprint(MATMUL_SHAPES), "problems": problems}


def main(argv=()) -> None:
    with numerics.deterministic_blas():
        report = environment_report()
    log.info("numerics fingerprint %s (%s kernel)", report["fingerprint"], report["blas_kernel"])
    write_json(REPORTS / "environment.json", report)
