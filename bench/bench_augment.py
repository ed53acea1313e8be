"""Training time with augmentation against without: the pipeline's dense and conv models, one
epoch each on the same training images, with ``params.yaml``'s augmentation (shifts) and with it
plus the keys given (``--set train_conv.augment_rotate=10 ...`` or a recipe's), interleaved in
rounds in one process, medians. Issue 28's budget: at most 1.15x for the same epochs.

Needs ``data/processed`` (``make repro``). Usage: ``python -m bench.bench_augment --set
KEY=VALUE... [--images 16384] [--rounds 3] [--json bench/results/augment.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="train_*.augment_*")
    ap.add_argument("--images", type=int, default=16384, help="training images per epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    from pipeline import allocator, numerics

    numerics.pin()  # before NumPy loads, as the stages do
    allocator.keep_freed_memory()  # as the stages do
    import yaml

    from bench.common import machine
    from pipeline.data import load_dataset
    from pipeline.numerics import deterministic_blas
    from pipeline.params import TRAIN_PARAMS, load_params
    from pipeline.paths import PROCESSED
    from pipeline.training import train

    extra: dict[str, dict] = {"dense": {}, "conv": {}}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        extra[section.removeprefix("train_")][name] = yaml.safe_load(value)
    runs, data = {}, {}
    for kind in ("dense", "conv"):
        base = dataclasses.replace(load_params(f"train_{kind}", TRAIN_PARAMS[kind]), epochs=1)
        full = load_dataset(PROCESSED / f"{kind}.npz")
        data[kind] = full | {"x_train": full["x_train"][: args.images],
                             "y_train": full["y_train"][: args.images],
                             "x_val": full["x_val"][:0], "y_val": full["y_val"][:0]}  # fmt: skip
        runs[(kind, "params.yaml")] = base
        runs[(kind, "with the keys")] = dataclasses.replace(base, **extra[kind])
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
        base = statistics.median(seconds[(kind, "params.yaml")])
        aug = statistics.median(seconds[(kind, "with the keys")])
        rows.append({"kind": kind, "keys": extra[kind], "seconds_params": base,
                     "seconds_with_keys": aug, "ratio": aug / base,
                     "all": {k[1]: v for k, v in seconds.items() if k[0] == kind}})  # fmt: skip
        print(f"{kind}: {base:.2f} s -> {aug:.2f} s per epoch of {args.images} images: "
              f"{aug / base:.3f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
