"""nn against PyTorch and Keras (CPU) on the same four models, the same data, the same initial
weights, and against the machine's float32 matmul limit.

Models: A, B, C, D of ``bench/models.py`` (issue 5), converted to each peer by ``bench/convert.py``.
All train with plain SGD (lr 0.1) on the 60,000 MNIST training images, batch sizes 32 and 128.

Each measurement is one process (framework, model, batch size, thread count): it trains one warm-up
epoch, then one timed epoch, then scores the 10,000 test images, and reports its peak RSS. The
processes are interleaved in rounds so machine noise hits every framework alike; the report gives
the median and range over rounds.

Every framework runs at its best settings, each variant tried and the fastest kept per cell and
named in the table: ``nn`` with the numerics the pipeline pins (OpenBLAS ``Haswell``, NumPy's
``X86_V3`` loops; set in the nn processes only), with the host's own (``nn-native``: OpenBLAS's
and NumPy's picks for this CPU, AVX-512 where it has it), or with the pinned BLAS kernel and
NumPy's own loops (``nn-native-loops``: NumPy's AVX-512 ``tanh`` and ``exp`` are 3x its ``X86_V3``
ones on AVX-512 hosts) - the pipeline pins its numerics for the same bits everywhere, the
library itself pins nothing - and, on several threads, either BLAS threads or data-parallel
shards with one BLAS thread each, in worker processes (``-shards``: ``workers="processes"``, as the
pipeline trains); PyTorch eager
(``torch``) or ``torch.compile`` (``torch-compile``); Keras as is (``keras``) or with XLA
(``jit_compile=True``) and ``steps_per_execution=32`` (``keras-jit``). Run it with
``OPENBLAS_CORETYPE`` unset (``make bench-peers`` does); each row records the BLAS each side ran.

Usage:
  python -m bench.bench_peers [--rounds 3] [--models ABCD] [--batches 32,128] [--threads 1,2]
         [--frameworks nn,nn-shards,nn-native,nn-native-loops,...,torch,torch-compile,...]
         [--out bench/results/peers.json]
Frameworks that are not installed are skipped (pip install -e '.[torch,tensorflow]').
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.convert import to_keras, to_torch
from bench.models import LOSSES, build, train_flops_per_sample
from pipeline.numerics import cpu_flags, pinned_environment

HERE = Path(__file__).resolve().parent

PINNED = pinned_environment(cpu_flags(), __import__("platform").machine())[0]

LR = 0.1
SEED = 0


# --- one measurement (runs in its own process) -------------------------------------------------


VARIANTS = {  # variant -> the framework it belongs to
    "nn": "nn",
    "nn-shards": "nn",
    "nn-native": "nn",
    "nn-native-shards": "nn",
    "nn-native-loops": "nn",
    "nn-native-loops-shards": "nn",
    "torch": "torch",
    "torch-compile": "torch",
    "keras": "keras",
    "keras-jit": "keras",
}


def nn_numerics(variant: str) -> dict:
    """The environment an nn variant runs with: the pipeline's pinned BLAS kernel and NumPy loops
    (``nn``), neither (``nn-native``: what this shell set is dropped too) or the kernel only
    (``nn-native-loops``). Thread variables are the caller's."""
    pins = {k: v for k, v in PINNED.items() if "THREADS" not in k}
    if "native" not in variant:
        return pins
    dropped = {k: "" for k in pins}  # empty: OpenBLAS and NumPy treat it as unset
    if "native-loops" in variant:
        dropped.update((k, v) for k, v in pins.items() if k == "OPENBLAS_CORETYPE")
    return dropped


def worker(variant: str, model: str, batch: int, threads: int) -> dict:
    from bench.common import load_mnist

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    ref, loss = build(model, seed=1), LOSSES[model]
    run = {"nn": run_nn, "torch": run_torch, "keras": run_keras}[VARIANTS[variant]]
    seconds, acc, blas = run(ref, loss, model, x, y, xt, yt, batch, threads, variant)
    import resource

    return {
        "seconds_per_epoch": seconds,
        "samples_per_s": len(x) / seconds,
        "test_accuracy": acc,
        "blas": blas,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_nn(model, loss, name, x, y, xt, yt, batch, threads, variant):
    from threadpoolctl import threadpool_info, threadpool_limits

    import nn

    shards = threads if variant.endswith("-shards") else 1
    with threadpool_limits(limits=1 if shards > 1 else threads):
        opt = nn.SGD(LR)
        fit = dict(
            loss=loss, optimizer=opt, epochs=1, batch_size=batch, shards=shards, workers="processes"
        )
        nn.fit(model, x, y, rng=SEED, **fit)
        t0 = time.perf_counter()
        nn.fit(model, x, y, rng=SEED + 1, **fit)
        seconds = time.perf_counter() - t0
        acc = nn.evaluate(model, xt, yt, loss)["accuracy"]
        info = [d for d in threadpool_info() if d.get("user_api") == "blas"][0]
    loops = "X86_V3" if os.environ.get("NPY_DISABLE_CPU_FEATURES") else "native"
    return (
        seconds,
        acc,
        f"OpenBLAS {info['architecture']} x{info['num_threads']}, NumPy {loops} loops, "
        f"{shards} shard(s)" + (" in processes" if shards > 1 else ""),
    )


def run_torch(model, loss, name, x, y, xt, yt, batch, threads, variant):
    import torch

    torch.set_num_threads(threads)
    T = torch.nn
    net = to_torch(model)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    train_net = torch.compile(net) if variant == "torch-compile" else net
    loss_fn = {
        "mse": T.MSELoss(),
        "cross_entropy": T.CrossEntropyLoss(),
        "binary_cross_entropy": T.BCELoss(),
    }[loss]
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    if loss == "cross_entropy":
        ys = ys.argmax(1)

    def epoch(seed):
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(train_net(xs[idx]), ys[idx]).backward()
            opt.step()

    epoch(SEED)
    t0 = time.perf_counter()
    epoch(SEED + 1)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pred = net(torch.from_numpy(xt)).argmax(1).numpy()
    config = torch.__config__.show()
    blas = next((w for w in ("MKL", "OpenBLAS") if f"BLAS_INFO={w.lower()}" in config), "?")
    onednn = "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
    return (
        seconds,
        float(np.mean(pred == yt.argmax(1))),
        f"torch {blas} + {onednn}, {torch.get_num_threads()} thread(s)",
    )


def run_keras(model, loss, name, x, y, xt, yt, batch, threads, variant):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras = tf.keras
    net = to_keras(model)
    keras_loss = {
        "mse": keras.losses.MeanSquaredError(),
        "cross_entropy": keras.losses.CategoricalCrossentropy(from_logits=True),
        "binary_cross_entropy": keras.losses.BinaryCrossentropy(),
    }[loss]
    jit = variant == "keras-jit"
    net.compile(
        optimizer=keras.optimizers.SGD(LR),
        loss=keras_loss,
        jit_compile=jit,
        steps_per_execution=32 if jit else 1,
    )
    xk, xtk = x.transpose(0, 2, 3, 1), xt.transpose(0, 2, 3, 1)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    net.fit(xk, y, batch_size=batch, epochs=2, shuffle=True, verbose=0, callbacks=[Timer()])
    pred = net.predict(xtk, batch_size=1024, verbose=0).argmax(1)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    blas = f"TF {'oneDNN' if onednn else 'Eigen'}{' + XLA' if jit else ''}, {threads} thread(s)"
    return times[-1], float(np.mean(pred == yt.argmax(1))), blas


# --- the orchestrator --------------------------------------------------------------------------


def available(variant: str) -> bool:
    module = {"nn": "nn", "torch": "torch", "keras": "tensorflow"}[VARIANTS[variant]]
    return importlib.util.find_spec(module) is not None


def versions() -> dict:
    out = {"numpy": np.__version__}
    for name, module in (("torch", "torch"), ("tensorflow", "tensorflow")):
        if importlib.util.find_spec(module):
            code = f"import {module}; print({module}.__version__)"
            out[name] = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
            ).stdout.strip()
    return out


def matmul_limit(threads: int) -> float:
    from threadpoolctl import threadpool_limits

    from bench.common import matmul_gflops

    with threadpool_limits(limits=threads):
        return matmul_gflops()


def fastest_variants(configs: list, raw: dict) -> list:
    """The configs whose variant was its framework's fastest in its cell in the runs so far."""
    best: dict[tuple, tuple[float, str]] = {}
    for fw, m, b, t in configs:
        sps = statistics.median(x["samples_per_s"] for x in raw[f"{fw}|{m}|{b}|{t}"])
        cell = (VARIANTS[fw], m, b, t)
        if cell not in best or sps > best[cell][0]:
            best[cell] = (sps, fw)
    return [c for c in configs if best[(VARIANTS[c[0]], *c[1:])][1] == c[0]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="ABCD")
    ap.add_argument("--batches", default="32,128")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--frameworks", default=",".join(VARIANTS), help="variants to run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "peers.json")
    ap.add_argument("--table", action="store_true", help="print the table of --out and exit")
    ap.add_argument(
        "--prune",
        action="store_true",
        help="after the first round, run only each framework's fastest variant in each cell",
    )
    ap.add_argument(
        "--worker",
        nargs=4,
        metavar=("FRAMEWORK", "MODEL", "BATCH", "THREADS"),
        help=argparse.SUPPRESS,
    )
    args = ap.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    if args.worker:
        fw, model, batch, threads = args.worker
        print(json.dumps(worker(fw, model, int(batch), int(threads))))
        return

    from bench.common import blas_info, machine, run_worker

    frameworks = [f for f in args.frameworks.split(",") if available(f)]
    threads = sorted({int(t) for t in args.threads.split(",")})
    batches = [int(b) for b in args.batches.split(",")]
    configs = [
        (f, m, b, t)
        for t in threads
        for m in args.models
        for b in batches
        for f in frameworks
        if not (f.endswith("-shards") and t == 1)  # one shard is the variant without
    ]
    raw: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        if r == 1 and args.prune:
            configs = fastest_variants(configs, raw)
        for fw, m, b, t in configs:
            blas_threads = 1 if fw.endswith("-shards") else t  # a shard worker inherits it
            env = os.environ | {
                "OMP_NUM_THREADS": str(blas_threads),
                "OPENBLAS_NUM_THREADS": str(blas_threads),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            }
            if VARIANTS[fw] == "nn":
                env |= nn_numerics(fw)
            res = run_worker(__file__, [fw, m, b, t], env, f"{fw} {m} batch {b} threads {t}")
            raw.setdefault(f"{fw}|{m}|{b}|{t}", []).append(res)
            print(
                f"round {r + 1} {fw:5s} {m} batch {b:3d} threads {t}: "
                f"{res['samples_per_s']:>9,.0f} samples/s, acc {res['test_accuracy']:.4f}",
                file=sys.stderr,
            )
    limits = {t: matmul_limit(t) for t in threads}
    rows = []
    for key, runs in raw.items():
        fw, m, b, t = key.split("|")
        sps = sorted(x["samples_per_s"] for x in runs)
        med = statistics.median(sps)
        flops = train_flops_per_sample(m)
        rows.append(
            {
                "framework": VARIANTS[fw],
                "variant": fw,
                "blas": runs[-1]["blas"],
                "model": m,
                "batch": int(b),
                "threads": int(t),
                "median_samples_per_s": med,
                "min_samples_per_s": sps[0],
                "max_samples_per_s": sps[-1],
                "median_seconds_per_epoch": statistics.median(x["seconds_per_epoch"] for x in runs),
                "test_accuracy": runs[-1]["test_accuracy"],
                "peak_rss_mb": max(x["peak_rss_mb"] for x in runs),
                "gflops": med * flops / 1e9,
                "fraction_of_matmul_peak": med * flops / 1e9 / limits[int(t)],
                "rounds": len(runs),
            }
        )
    result = {
        "machine": machine(),
        "versions": versions(),
        "blas": blas_info(),
        "matmul_gflops_by_threads": limits,
        "lr": LR,
        "flops_per_sample": {m: train_flops_per_sample(m) for m in args.models},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def rank(row: dict) -> tuple:
    """How a framework's variants in one cell compare: the most rounds first (with ``--prune``
    that is the variant round 1 found fastest, timed in every round since; the others ran once,
    and one lucky round must not win over a median), then the median."""
    return row.get("rounds", 1), row["median_samples_per_s"]


def markdown(result: dict) -> str:
    """The table in bench/README.md: medians (range), nn's ratio to the best peer, GFLOP/s."""
    rows = result["rows"]

    def cell(r):
        if r is None:
            return "-"
        variant = f" `{r['variant']}`" if "variant" in r else ""
        return (
            f"{r['median_samples_per_s']:,.0f} ({r['min_samples_per_s']:,.0f}–"
            f"{r['max_samples_per_s']:,.0f}){variant}"
        )

    def fmt(r, key, spec):
        return "-" if r is None else format(r[key], spec)

    lines = [
        "| model | batch | threads | nn | PyTorch | Keras | nn ÷ best peer | nn GFLOP/s (% of "
        "matmul limit) | test acc nn / torch / keras | peak RSS MB nn / torch / keras |",
        "| --- " * 10 + "|",
    ]
    for key in sorted({(r["model"], r["batch"], r["threads"]) for r in rows}):
        by: dict[str, dict] = {}  # framework -> its fastest variant in this cell
        for r in rows:
            if (r["model"], r["batch"], r["threads"]) != key:
                continue
            best = by.get(r["framework"])
            if best is None or rank(r) > rank(best):
                by[r["framework"]] = r
        n, t, k = by.get("nn"), by.get("torch"), by.get("keras")
        peers = [r["median_samples_per_s"] for r in (t, k) if r is not None]
        ratio = f"**{n['median_samples_per_s'] / max(peers):.2f}×**" if n and peers else "-"
        gflops = f"{n['gflops']:.1f} ({100 * n['fraction_of_matmul_peak']:.0f}%)" if n else "-"
        acc = " / ".join(fmt(r, "test_accuracy", ".4f") for r in (n, t, k))
        rss = " / ".join(fmt(r, "peak_rss_mb", ".0f") for r in (n, t, k))
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {cell(n)} | {cell(t)} | {cell(k)} | "
            f"{ratio} | {gflops} | {acc} | {rss} |"
        )
    lim = ", ".join(
        f"{t} thread(s): {g:.0f} GFLOP/s" for t, g in result["matmul_gflops_by_threads"].items()
    )
    lines.append(f"\nfloat32 matmul limit (2048^3): {lim}.")
    return "\n".join(lines)


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
