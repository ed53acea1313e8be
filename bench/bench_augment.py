"""Training time with the handwriting augmentation against without it: the pipeline's dense and
conv models, ``--epochs`` on the training and validation images the stages use, once with
``params.yaml`` as it is and once with its warp, stroke and blur keys at 0 (the defaults before
issue 28: shifts only), interleaved in rounds in one process, medians. Issue 28's budget: at most
1.15x for the same epochs.

Needs ``data/processed`` (``make repro``). Usage: ``python -m bench.bench_augment [--epochs 1]
[--rounds 3] [--json bench/results/augment.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

OFF = {f"augment_{k}": 0.0 for k in ("rotate", "scale", "shear", "elastic", "stroke", "blur")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    from pipeline import allocator, numerics

    numerics.pin()  # before NumPy loads, as the stages do
    allocator.keep_freed_memory()  # as the stages do

    from bench.common import machine
    from pipeline.data import load_dataset
    from pipeline.numerics import deterministic_blas
    from pipeline.params import TRAIN_PARAMS, load_params
    from pipeline.paths import PROCESSED
    from pipeline.training import train

    runs, data = {}, {}
    for kind in ("dense", "conv"):
        p = dataclasses.replace(
            load_params(f"train_{kind}", TRAIN_PARAMS[kind]), epochs=args.epochs
        )
        data[kind] = load_dataset(PROCESSED / f"{kind}.npz")
        runs[(kind, "without")] = dataclasses.replace(p, **OFF)
        runs[(kind, "with")] = p
    seconds = {run: [] for run in runs}
    with deterministic_blas():
        for r in range(args.rounds):
            for (kind, label), p in runs.items():
                t0 = time.perf_counter()
                train(kind, p, data[kind])
                seconds[(kind, label)].append(time.perf_counter() - t0)
                print(f"round {r + 1}: {kind}, {label}: {seconds[(kind, label)][-1]:.2f} s")
    rows = []
    for kind in ("dense", "conv"):
        without = statistics.median(seconds[(kind, "without")])
        with_ = statistics.median(seconds[(kind, "with")])
        keys = {k: getattr(runs[(kind, "with")], k) for k in OFF}
        rows.append(
            {"kind": kind, "keys": keys, "epochs": args.epochs, "seconds_without": without,
             "seconds_with": with_, "ratio": with_ / without,
             "all": {label: seconds[(kind, label)] for label in ("without", "with")}}
        )  # fmt: skip
        print(f"{kind}: {without:.2f} s without, {with_:.2f} s with: {with_ / without:.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
