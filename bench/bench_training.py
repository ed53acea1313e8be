"""The pipeline's training stages with their shard count against one shard (and the shards on
worker processes, as the stages run them, against threads), and the matmul work they do as a
fraction of this machine's float32 matmul limit.

Each run is its own process that does what the ``train_dense`` / ``train_conv`` stage does (the
pinned numerics, ``params.yaml``, ``data/processed/<kind>.npz``, ``pipeline.training.train``)
with ``shards`` (and ``workers``) overridden, and writes nothing; the runs are interleaved in
rounds (their validation accuracies must agree: the workers never change a bit), and the
matmul limit (2048^3 float32, on one thread and on as many as the shards get, the pinned kernel)
is measured in the same invocation. GFLOP/s count the matmul work only, as
``bench_peers.py`` does: 2 FLOP per multiply-add; per training image the forward product and
weight gradient of every Conv2D and Dense, and the input gradient of all but the first; per
validation image the forward products.

Needs ``data/processed`` (``make repro`` or ``dvc repro preprocess``).

Usage: ``python -m bench.bench_training [--kinds conv,dense] [--shards 1] [--rounds 2]
[--workers processes,threads] [--json bench/results/training.json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(kind: str, shards: int, workers: str) -> dict:
    from pipeline import numerics

    numerics.pin()  # before NumPy loads, as the stages do
    from pipeline.data import load_dataset
    from pipeline.numerics import deterministic_blas
    from pipeline.params import TRAIN_PARAMS as PARAMS
    from pipeline.params import load_params
    from pipeline.paths import PROCESSED
    from pipeline.training import train

    # isort: split
    from bench.common import matmul_macs, training_flops

    p = dataclasses.replace(load_params(f"train_{kind}", PARAMS[kind]), shards=shards)
    data = load_dataset(PROCESSED / f"{kind}.npz")
    with deterministic_blas():
        t0 = time.perf_counter()
        model, history = train(kind, p, data, workers=workers)
        seconds = time.perf_counter() - t0
    macs = matmul_macs(model, data["x_train"].shape[1:])
    per_train_image = training_flops(macs)
    epochs = len(history)
    flop = epochs * (len(data["x_train"]) * per_train_image + len(data["x_val"]) * 2 * sum(macs))
    return {
        "kind": kind,
        "shards": shards,
        "workers": workers,
        "seconds": seconds,
        "epochs": epochs,
        "train_images": len(data["x_train"]),
        "flop_per_train_image": per_train_image,
        "gflop": flop / 1e9,
        "val_accuracy": history[-1].get("val_accuracy"),
    }


def limit_worker(threads: int) -> dict:
    from pipeline import numerics

    numerics.pin()  # before NumPy loads, as the stages do

    # isort: split
    from threadpoolctl import threadpool_limits

    from bench.common import blas_info, matmul_gflops

    with threadpool_limits(limits=threads):
        return {"threads": threads, "gflops": matmul_gflops(), "blas": blas_info()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="conv,dense")
    ap.add_argument("--shards", type=int, default=1, help="the count compared with params.yaml's")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--workers", default="processes", help="what runs the shards, comma-separated (nn.fit)"
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker[0] == "limit":
            print(json.dumps(limit_worker(int(args.worker[1]))))
        else:
            print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.worker[2])))
        return

    from bench.common import machine, run_worker
    from nn.parallel import available_cores
    from pipeline.params import TRAIN_PARAMS, load_params

    env = dict(os.environ)
    kinds = args.kinds.split(",")
    configured = {k: load_params(f"train_{k}", TRAIN_PARAMS[k]).shards for k in kinds}
    workers = args.workers.split(",")
    runs = [
        (k, s, w)
        for k in kinds
        for s in dict.fromkeys([configured[k], args.shards])
        for w in (workers if s > 1 else ["threads"])  # one shard: no second worker at all
    ]
    results: dict = {run: [] for run in runs}
    threads = {s: min(s, available_cores()) for _, s, _ in runs}  # what fit gives the shards
    limits = {
        t: run_worker(__file__, ["limit", t], env, f"limit {t}")
        for t in sorted({1, *threads.values()})
    }
    for r in range(args.rounds):
        for kind, shards, how in runs:
            label = f"{kind}, {shards} shard(s) on {how}"
            out = run_worker(__file__, [kind, shards, how], env, label)
            results[(kind, shards, how)].append(out)
            print(f"round {r + 1}: {label}: {out['seconds']:.1f} s", flush=True)
    rows = []
    for (kind, shards, how), outs in results.items():
        seconds = statistics.median(o["seconds"] for o in outs)
        gflops = outs[0]["gflop"] / seconds
        limit = limits[threads[shards]]["gflops"]
        rows.append(
            {
                "kind": kind,
                "shards": shards,
                "workers": how,
                "seconds": seconds,
                "all_seconds": [o["seconds"] for o in outs],
                "gflops": gflops,
                "matmul_limit_gflops": limit,
                "fraction_of_limit": gflops / limit,
                "speedup_over_1_shard": None,
                **{k: outs[0][k] for k in ("epochs", "train_images", "flop_per_train_image")},
                "val_accuracy": outs[0]["val_accuracy"],
            }
        )
    for row in rows:
        one = next((r for r in rows if r["kind"] == row["kind"] and r["shards"] == 1), None)
        if one is not None:
            row["speedup_over_1_shard"] = one["seconds"] / row["seconds"]
    result = {"machine": machine(), "matmul_limits": limits, "rows": rows}
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def markdown(result: dict) -> str:
    lim = result["matmul_limits"]
    lines = [
        "| stage | shards | on | seconds (median; runs) | vs 1 shard | matmul GFLOP/s | "
        "% of limit | val accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        runs = ", ".join(f"{s:.1f}" for s in r["all_seconds"])
        speedup = f"{r['speedup_over_1_shard']:.2f}×" if r["speedup_over_1_shard"] else "–"
        lines.append(
            f"| train_{r['kind']} | {r['shards']} | {r['workers'] if r['shards'] > 1 else '–'} | "
            f"{r['seconds']:.1f} ({runs}) | {speedup} | {r['gflops']:.1f} | "
            f"{100 * r['fraction_of_limit']:.0f}% of {r['matmul_limit_gflops']:.0f} | "
            f"{r['val_accuracy']:.4f} |"
        )
    limits = ", ".join(f"{v['gflops']:.1f} GFLOP/s on {t} thread(s)" for t, v in lim.items())
    kernel = next(iter(lim.values()))["blas"][0]["architecture"]
    lines.append(f"\nfloat32 matmul limit (2048^3, OpenBLAS {kernel}): {limits}.")
    return "\n".join(lines)


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
