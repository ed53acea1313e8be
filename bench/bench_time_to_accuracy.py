"""Wall time to 99.0% test accuracy with the pipeline's conv recipe, in nn, PyTorch and Keras.

The same network (``train_conv`` in params.yaml, layer for layer as ``build_model`` builds it:
Conv2D(1->16, 5x5), BatchNorm, MaxPool2D(2), ReLU, Conv2D(16->32, 5x5), BatchNorm, MaxPool2D(2),
ReLU, Dense(512, 128), BatchNorm, ReLU, Dense(128, 10)), the same initial weights (drawn by ``nn``
and copied), the same optimizer (Adam, betas (0.9, 0.999), eps 1e-8) and one-cycle schedule (peak
0.01, warm-up 25%, PyTorch's ``OneCycleLR`` formula without momentum cycling), batch 128, the same
batch order, no augmentation, on the pipeline's data (``data/processed/conv.npz``: 55,000 training
and 10,000 test images). Each framework trains ``--epochs`` epochs (the schedule spans them all)
on all cores, at its fastest settings in ``bench.bench_peers`` for conv models (``nn``: two
shards; PyTorch eager; Keras as is), and scores the test set after every epoch; the time to
99.0% is the training time (not scoring) until the first epoch that reaches it. Every framework
runs in its own process, ``--rounds`` times, interleaved.

Usage: ``python -m bench.bench_time_to_accuracy [--epochs 2] [--rounds 2] [--json out.json]``
(needs PyTorch and TensorFlow: ``make bench-time-to-accuracy`` runs it in ``.venv-bench`` with
``OPENBLAS_CORETYPE`` unset).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.convert import to_keras, to_torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TARGET = 0.99
BATCH = 128
PEAK_LR, WARMUP, DIV, FINAL_DIV = 0.01, 0.25, 25.0, 1e4


def reference_model():
    """The recipe's network in nn with its initial weights (seed 0)."""
    from pipeline.models import build_model
    from pipeline.params import ConvParams, load_params

    p = load_params("train_conv", ConvParams, ROOT / "params.yaml")
    return build_model("conv", p, 10, np.random.default_rng(0).spawn(1)[0])


def orders(n: int, epochs: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.permutation(n) for _ in range(epochs)]


def run_nn(data, epochs):
    import nn

    model = reference_model()
    steps = -(-len(data["x_train"]) // BATCH) * epochs
    opt = nn.Adam(PEAK_LR, schedule=nn.schedules.OneCycle(PEAK_LR, steps, pct_start=WARMUP))
    times, accs = [], []
    from nn.parallel import ShardedStep

    model.input_grad = False
    loss_fn, loss_prime = nn.losses.get("cross_entropy")
    with ShardedStep(model, loss_fn, loss_prime, shards=2) as step:
        for order in orders(len(data["x_train"]), epochs):
            model.train()
            t0 = time.perf_counter()
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                step(data["x_train"][idx], data["y_train"][idx])
                opt.step(model)
            times.append(time.perf_counter() - t0)
            pred = nn.predict(model, data["x_test"], threads=2)
            accs.append(float(np.mean(pred.argmax(1) == data["y_test"].argmax(1))))
    return times, accs, "nn, 2 shards, OpenBLAS Haswell x1 each"


def run_torch(data, epochs):
    import torch

    torch.set_num_threads(os.cpu_count())
    T = torch.nn
    net = to_torch(reference_model())
    steps = -(-len(data["x_train"]) // BATCH) * epochs
    opt = torch.optim.Adam(net.parameters(), lr=PEAK_LR, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=PEAK_LR,
        total_steps=steps,
        pct_start=WARMUP,
        div_factor=DIV,
        final_div_factor=FINAL_DIV,
        cycle_momentum=False,
    )
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"].argmax(1))
    xt, yt = torch.from_numpy(data["x_test"]), data["y_test"].argmax(1)
    loss_fn = T.CrossEntropyLoss()
    times, accs = [], []
    for order in orders(len(x), epochs):
        net.train()
        order = torch.from_numpy(order)
        t0 = time.perf_counter()
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(xt[i : i + 1024]) for i in range(0, len(xt), 1024)])
        accs.append(float(np.mean(pred.argmax(1).numpy() == yt)))
    return times, accs, f"PyTorch eager, {torch.get_num_threads()} threads"


def run_keras(data, epochs):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras = tf.keras
    net = to_keras(reference_model())
    steps = -(-len(data["x_train"]) // BATCH) * epochs

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            start, end = PEAK_LR / DIV, PEAK_LR / DIV / FINAL_DIV
            warm = max(1.0, WARMUP * steps - 1)
            rest = max(1.0, steps - 1 - warm)
            t1 = step / warm
            t2 = tf.minimum(1.0, (step - warm) / rest)
            up = PEAK_LR + (start - PEAK_LR) * (1 + tf.cos(math.pi * t1)) / 2
            down = end + (PEAK_LR - end) * (1 + tf.cos(math.pi * t2)) / 2
            return tf.where(step <= warm, up, down)

    net.compile(
        optimizer=keras.optimizers.Adam(OneCycle(), beta_1=0.9, beta_2=0.999, epsilon=1e-8),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    x = data["x_train"].transpose(0, 2, 3, 1)
    xt = data["x_test"].transpose(0, 2, 3, 1)
    times, accs = [], []
    for order in orders(len(x), epochs):
        xe, ye = x[order], data["y_train"][order]
        t0 = time.perf_counter()
        net.fit(xe, ye, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        times.append(time.perf_counter() - t0)
        pred = net.predict(xt, batch_size=1024, verbose=0)
        accs.append(float(np.mean(pred.argmax(1) == data["y_test"].argmax(1))))
    return times, accs, "Keras (TF oneDNN), all threads"


RUNNERS = {"nn": run_nn, "torch": run_torch, "keras": run_keras}


def worker(framework: str, epochs: int) -> dict:
    if framework == "nn":
        from pipeline import numerics

        numerics.pin()  # before NumPy loads, as the stages do
    from pipeline.data import load_dataset

    data = load_dataset(ROOT / "data" / "processed" / "conv.npz")
    times, accs, setup = RUNNERS[framework](data, epochs)
    reached = next((i for i, a in enumerate(accs) if a >= TARGET), None)
    return {
        "epoch_seconds": times,
        "test_accuracy": accs,
        "seconds_to_target": None if reached is None else sum(times[: reached + 1]),
        "setup": setup,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs)))
        return
    from bench.common import run_worker

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    env.pop("OPENBLAS_CORETYPE", None)
    from pipeline.numerics import cpu_flags, pinned_environment

    pinned = pinned_environment(cpu_flags(), __import__("platform").machine())[0]
    results: dict[str, list[dict]] = {f: [] for f in RUNNERS}
    for r in range(args.rounds):
        for fw in RUNNERS if r % 2 == 0 else list(RUNNERS)[::-1]:
            fw_env = env | ({k: v for k, v in pinned.items()} if fw == "nn" else {})
            res = run_worker(__file__, [fw, "--epochs", args.epochs], fw_env, fw)
            results[fw].append(res)
            print(f"round {r + 1} {fw:6s} {res}", file=sys.stderr)
    print("| framework | setup | test accuracy per epoch | seconds per epoch | time to 99.0% |")
    print("| --- | --- | --- | --- | --- |")
    for fw, runs in results.items():
        hit = [x["seconds_to_target"] for x in runs if x["seconds_to_target"] is not None]
        to_target = (
            f"**{statistics.median(hit):.1f} s**" if len(hit) == len(runs) else "not reached"
        )
        accs = " / ".join(f"{a:.4f}" for a in runs[-1]["test_accuracy"])
        secs = " / ".join(
            f"{statistics.median(x['epoch_seconds'][i] for x in runs):.1f}"
            for i in range(args.epochs)
        )
        print(f"| {fw} | {runs[-1]['setup']} | {accs} | {secs} | {to_target} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
