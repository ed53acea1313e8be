"""nn against PyTorch and Keras (CPU) on the same four models, the same data, the same initial
weights, and against the machine's float32 matmul limit.

Models (issue 5):
  A  784-40-10 Tanh (hidden and output), MSE
  B  784-128-10 ReLU, softmax cross-entropy
  C  Conv2D(1->5, 3x3) Sigmoid, Dense(3380, 100) Sigmoid, Dense(100, 10) Sigmoid, binary CE
  D  Conv2D(1->8, 3x3) ReLU, MaxPool2D(2), Dense(1352, 10), softmax cross-entropy
All train with plain SGD (lr 0.1) on the 60,000 MNIST training images, batch sizes 32 and 128.

Each measurement is one process (framework, model, batch size, thread count): it trains one warm-up
epoch, then one timed epoch, then scores the 10,000 test images, and reports its peak RSS. The
processes are interleaved in rounds so machine noise hits every framework alike; the report gives
the median and range over rounds.

Every framework runs at its best settings, each variant tried and the fastest kept per cell and
named in the table: ``nn`` with the numerics the pipeline pins (OpenBLAS ``Haswell``, NumPy's
``X86_V3`` loops; set in the nn processes only) and, on several threads, either BLAS threads
(``nn``) or data-parallel shards with one BLAS thread each (``nn-shards``); PyTorch eager
(``torch``) or ``torch.compile`` (``torch-compile``); Keras as is (``keras``) or with XLA
(``jit_compile=True``) and ``steps_per_execution=32`` (``keras-jit``). Run it with
``OPENBLAS_CORETYPE`` unset (``make bench-peers`` does); each row records the BLAS each side ran.

Usage:
  python bench/bench_peers.py [--rounds 3] [--models ABCD] [--batches 32,128] [--threads 1,2]
         [--frameworks nn,nn-shards,torch,torch-compile,keras,keras-jit]
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

HERE = Path(__file__).resolve().parent

from pipeline.numerics import cpu_flags, pinned_environment  # noqa: E402  (imports no NumPy)

PINNED = pinned_environment(cpu_flags(), __import__("platform").machine())[0]

LR = 0.1
SEED = 0


# --- the models, in nn, with the FLOP count used for the fraction of peak ----------------------


def build_nn(model: str):
    import nn

    if model == "A":
        layers = [
            nn.Flatten(),
            nn.Dense(784, 40, rng=1),
            nn.Tanh(),
            nn.Dense(40, 10, rng=2),
            nn.Tanh(),
        ]
        loss = "mse"
    elif model == "B":
        layers = [nn.Flatten(), nn.Dense(784, 128, rng=1), nn.ReLU(), nn.Dense(128, 10, rng=2)]
        loss = "cross_entropy"
    elif model == "C":
        layers = [
            nn.Conv2D(1, 5, 3, rng=1),
            nn.Sigmoid(),
            nn.Flatten(),
            nn.Dense(3380, 100, rng=2),
            nn.Sigmoid(),
            nn.Dense(100, 10, rng=3),
            nn.Sigmoid(),
        ]
        loss = "binary_cross_entropy"
    elif model == "D":
        layers = [
            nn.Conv2D(1, 8, 3, rng=1),
            nn.ReLU(),
            nn.MaxPool2D(2),
            nn.Flatten(),
            nn.Dense(1352, 10, rng=2),
        ]
        loss = "cross_entropy"
    else:
        raise ValueError(model)
    return nn.Sequential(layers), loss


def train_flops_per_sample(model: str) -> int:
    """Matmul FLOPs of one training step per sample (``common.training_flops``)."""
    from bench.common import matmul_macs, training_flops

    return training_flops(matmul_macs(build_nn(model)[0], (1, 28, 28)))


# --- one measurement (runs in its own process) -------------------------------------------------


VARIANTS = {  # variant -> the framework it belongs to
    "nn": "nn",
    "nn-shards": "nn",
    "torch": "torch",
    "torch-compile": "torch",
    "keras": "keras",
    "keras-jit": "keras",
}


def worker(variant: str, model: str, batch: int, threads: int) -> dict:
    from bench.common import load_mnist

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    ref, loss = build_nn(model)
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

    shards = threads if variant == "nn-shards" else 1
    with threadpool_limits(limits=1 if shards > 1 else threads):
        opt = nn.SGD(LR)
        fit = dict(loss=loss, optimizer=opt, epochs=1, batch_size=batch, shards=shards)
        nn.fit(model, x, y, rng=SEED, **fit)
        t0 = time.perf_counter()
        nn.fit(model, x, y, rng=SEED + 1, **fit)
        seconds = time.perf_counter() - t0
        acc = nn.evaluate(model, xt, yt, loss)["accuracy"]
        info = [d for d in threadpool_info() if d.get("user_api") == "blas"][0]
    return (
        seconds,
        acc,
        f"OpenBLAS {info['architecture']} x{info['num_threads']}, {shards} shard(s)",
    )


def run_torch(model, loss, name, x, y, xt, yt, batch, threads, variant):
    import torch

    torch.set_num_threads(threads)
    T = torch.nn
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            lin = T.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.params["weight"].T.copy()))
                lin.bias.copy_(torch.from_numpy(layer.params["bias"]))
            layers.append(lin)
        elif kind == "Conv2D":
            conv = T.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.params["weight"]))
                conv.bias.copy_(torch.from_numpy(layer.params["bias"]))
            layers.append(conv)
        else:
            layers.append(
                {
                    "Flatten": T.Flatten,
                    "Tanh": T.Tanh,
                    "ReLU": T.ReLU,
                    "Sigmoid": T.Sigmoid,
                    "MaxPool2D": lambda: T.MaxPool2d(2),
                }[kind]()
            )
    net = T.Sequential(*layers)
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
    L = keras.layers
    layers = [keras.Input((28, 28, 1))]
    weights = []
    conv_shape = None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            w = layer.params["weight"]
            if conv_shape is not None and w.shape[0] == int(np.prod(conv_shape)):
                # nn flattens (C, H, W); Keras flattens channels-last (H, W, C): permute the rows.
                c, h, wd = conv_shape
                w = w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(w.shape[0], -1)
                conv_shape = None
            layers.append(L.Dense(layer.out_features))
            weights.append([w, layer.params["bias"]])
        elif kind == "Conv2D":
            layers.append(L.Conv2D(layer.out_channels, layer.kernel_size))
            weights.append([layer.params["weight"].transpose(2, 3, 1, 0), layer.params["bias"]])
            conv_shape = (layer.out_channels, 26, 26)
        elif kind == "MaxPool2D":
            layers.append(L.MaxPooling2D(2))
            conv_shape = (conv_shape[0], 13, 13)
        else:
            layers.append(
                {
                    "Flatten": L.Flatten,
                    "Tanh": lambda: L.Activation("tanh"),
                    "ReLU": L.ReLU,
                    "Sigmoid": lambda: L.Activation("sigmoid"),
                }[kind]()
            )
    net = keras.Sequential(layers)
    trainable = [layer for layer in net.layers if layer.weights]
    for layer, w in zip(trainable, weights):
        layer.set_weights(w)
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
        if not (f == "nn-shards" and t == 1)  # one shard is the nn variant
    ]
    raw: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        if r == 1 and args.prune:
            configs = fastest_variants(configs, raw)
        for fw, m, b, t in configs:
            env = os.environ | {
                "OMP_NUM_THREADS": str(t),
                "OPENBLAS_NUM_THREADS": str(t),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            }
            if VARIANTS[fw] == "nn":  # the kernel and SIMD loops the pipeline pins (faster here)
                env |= {k: v for k, v in PINNED.items() if "THREADS" not in k}
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
            if best is None or r["median_samples_per_s"] > best["median_samples_per_s"]:
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
