"""Stage 0, environment: ``python -m stages.environment``.

Writes ``reports/environment.json``: what decides the pipeline's numbers and nothing else (Python's
minor version, NumPy, its BLAS and the kernel and threads it runs, NumPy's SIMD targets in use, and
``nn.fingerprint``'s SHA-256 of a fixed float32 computation through training's kernels). No
hostname, CPU model, path or time: the file is identical wherever the results are, and where they
are not, its diff names the cause. ``problems`` lists why this machine may not reproduce the
committed results (empty when the kernel is pinned).
"""

from __future__ import annotations

import logging

from nn.fingerprint import fingerprint
from stages import numerics
from stages.common import REPORTS, ROOT, deterministic_blas, run_stage, write_json

log = logging.getLogger("stages.environment")


def environment_report() -> dict:
    """The contents of ``reports/environment.json`` for this process."""
    info = numerics.loaded()
    problems = numerics.problems(info, ROOT / "requirements.lock")
    info["python"] = ".".join(info["python"].split(".")[:2])  # patch releases don't change floats
    return info | {"fingerprint": fingerprint(), "problems": problems}


def main() -> None:
    with deterministic_blas():
        report = environment_report()
    log.info("numerics fingerprint %s (%s kernel)", report["fingerprint"], report["blas_kernel"])
    write_json(REPORTS / "environment.json", report)


if __name__ == "__main__":
    run_stage(main)
