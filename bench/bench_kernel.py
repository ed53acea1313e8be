"""What the pinned kernel costs: the pipeline's two default models trained under the numerics that
the stages pin (OpenBLAS ``Haswell``, NumPy's ``X86_V3`` loops, one BLAS thread) against the kernel
and loops OpenBLAS and NumPy pick by themselves (also one BLAS thread, as the pipeline runs).

The kernel is chosen when OpenBLAS loads, so every measurement is its own process; sides alternate
within each round (interleaved) and the medians are compared as a ratio. Run it with
``OPENBLAS_CORETYPE`` unset (``make bench-kernel`` does: ``env -u OPENBLAS_CORETYPE``), so that the
unpinned side gets OpenBLAS's own pick; each side records the kernel it ran.

Usage: ``python -m bench.bench_kernel [--rounds 5] [--json bench/results/kernel.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIDES = ("pinned", "auto")
MODELS = ("dense", "conv")
SAMPLES = {"dense": 12_800, "conv": 6_400}  # per timed run; one warm-up run of 1/8 of it first


def worker(side: str, kind: str) -> dict:
    """Train ``kind``'s default model (params.yaml) on real MNIST; samples/s and the kernel."""
    if side == "pinned":
        from pipeline import numerics

        numerics.pin()  # before NumPy loads, as the stages do
    import numpy as np  # noqa: F401  (auto: loaded first, nothing pinned)
    from threadpoolctl import threadpool_limits

    import nn
    from bench.common import load_mnist
    from pipeline import numerics
    from pipeline.models import build_model
    from pipeline.params import TRAIN_PARAMS as PARAMS
    from pipeline.params import load_params

    p = load_params(f"train_{kind}", PARAMS[kind], ROOT / "params.yaml")
    x, y = load_mnist("train")
    n = SAMPLES[kind]
    with threadpool_limits(limits=1):
        model = build_model(kind, p, 10, np.random.default_rng(0))
        opt = nn.Adam(p.lr)
        fit = dict(loss=p.loss, optimizer=opt, batch_size=p.batch_size, rng=0)
        nn.fit(model, x[: n // 8], y[: n // 8], **fit)
        t0 = time.perf_counter()
        nn.fit(model, x[:n], y[:n], **fit)
        seconds = time.perf_counter() - t0
        info = numerics.loaded()
    return {
        "samples_per_s": n / seconds,
        "blas_kernel": info["blas_kernel"],
        "numpy_simd": info["numpy_simd"],
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", nargs=2, metavar=("SIDE", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if "OPENBLAS_CORETYPE" in os.environ:
        sys.exit("unset OPENBLAS_CORETYPE for this command (make bench-kernel does)")
    from bench.common import run_worker  # here, not at the top: a worker must pin first

    env = os.environ | {"PYTHONPATH": str(ROOT)}
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for kind in MODELS:
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                res = run_worker(__file__, [side, kind], env, f"{side} {kind}")
                runs.setdefault((kind, side), []).append(res)
                print(
                    f"round {r + 1} {kind:5s} {side:6s} {res['blas_kernel']:9s} "
                    f"{res['samples_per_s']:>9,.0f} samples/s",
                    file=sys.stderr,
                )
    rows = []
    for kind in MODELS:
        med = {s: statistics.median(x["samples_per_s"] for x in runs[(kind, s)]) for s in SIDES}
        rows.append(
            {
                "model": kind,
                "pinned_samples_per_s": med["pinned"],
                "auto_samples_per_s": med["auto"],
                "pinned_over_auto": med["pinned"] / med["auto"],
                "pinned_kernel": runs[(kind, "pinned")][0]["blas_kernel"],
                "pinned_numpy_simd": runs[(kind, "pinned")][0]["numpy_simd"],
                "auto_kernel": runs[(kind, "auto")][0]["blas_kernel"],
                "auto_numpy_simd": runs[(kind, "auto")][0]["numpy_simd"],
                "rounds": args.rounds,
            }
        )
    lines = [
        "| model | pinned samples/s (kernel) | auto samples/s (kernel) | pinned / auto |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['pinned_samples_per_s']:,.0f} ({r['pinned_kernel']}) | "
            f"{r['auto_samples_per_s']:,.0f} ({r['auto_kernel']}) | "
            f"**{r['pinned_over_auto']:.2f}×** |"
        )
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
