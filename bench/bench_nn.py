"""Training throughput of ``nn`` next to the same math in bare NumPy and the tutorial's style.

Models of ``bench/models.py``, on real MNIST (issue 2): B (784-128-10 ReLU, runs named ``a_*``)
and D (Conv2D(1->8) ReLU MaxPool2D Dense, runs named ``b_*``) at batch 128, next to bare NumPy;
and the tutorial's own nets A (784-40-10 Tanh/MSE) and C (with 2 outputs: digits 0 and 1, BCE) in
its per-sample style, next to ``nn`` at batch 1.

All runs use one BLAS thread, interleaved and repeated (median); ratios compare implementations
timed in the same run. Usage: ``python -m bench.bench_nn [--repeats 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import nn
from bench.common import blas_info, interleaved, load_mnist, machine, peak_rss_mb
from bench.models import build
from bench.reference_impls import BareConvPool, BareMLP, TutorialConv, TutorialMLP

BATCH = 128
LR = 0.01


def epoch_runner(step, x, y, batches, seed=0):
    """A runner that trains ``batches`` mini-batches drawn like ``nn.fit`` does."""
    rng = np.random.default_rng(seed)

    def run():
        order = rng.permutation(len(x))
        for b in range(batches):
            idx = order[b * BATCH : (b + 1) * BATCH]
            step(x[idx], y[idx])
        return batches * BATCH

    return run


def nn_step(model, loss="cross_entropy", lr=LR):
    loss_prime = nn.losses.get(loss)[1]
    opt = nn.SGD(lr)
    model.input_grad = False

    def step(xb, yb):
        out = model.forward(xb)
        model.backward(loss_prime(yb, out))
        opt.step(model)

    return step


def per_sample_runner(train_sample, x, y, n):
    def run():
        for i in range(n):
            train_sample(x[i], y[i])
        return n

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=150, help="mini-batches per timed run")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    x, y = load_mnist("train")
    results = {"machine": machine()}
    with threadpool_limits(limits=1):
        results["blas"] = blas_info()
        a, b = build("B"), build("D")
        pa, pb = a.params, b.params
        bare_a = BareMLP(pa["1.weight"], pa["1.bias"], pa["3.weight"], pa["3.bias"], lr=LR)
        bare_b = BareConvPool(pb["0.weight"], pb["0.bias"], pb["4.weight"], pb["4.bias"], lr=LR)
        # What Dropout and BatchNorm cost: (a) with Dropout(0.2) after its ReLU, (b) with
        # BatchNorm(8) between its Conv2D and ReLU.
        a_drop = build("B")
        a_drop.layers.insert(3, nn.Dropout(0.2, rng=0))
        b_bn = build("D")
        b_bn.layers.insert(1, nn.BatchNorm(8))
        runs = {
            "a_nn": epoch_runner(nn_step(a), x, y, args.batches),
            "a_bare": epoch_runner(bare_a.step, x, y, args.batches),
            "a_nn_dropout": epoch_runner(nn_step(a_drop), x, y, args.batches),
            "b_nn": epoch_runner(nn_step(b), x, y, args.batches),
            "b_bare": epoch_runner(bare_b.step, x, y, args.batches),
            "b_nn_batchnorm": epoch_runner(nn_step(b_bn), x, y, args.batches),
        }
        # The tutorial's nets at batch 1: its per-sample code and nn with the same layers.
        t_dense = build("A")
        pd = t_dense.params
        tut_dense = TutorialMLP(
            [pd["1.weight"], pd["3.weight"]], [pd["1.bias"], pd["3.bias"]], lr=0.1
        )
        mask = y[:, :2].sum(1) > 0  # digits 0 and 1
        x01 = x[mask].astype(np.float64)
        y01 = y[mask][:, :2].astype(np.float64)
        t_conv = build("C", classes=2)
        pc = t_conv.params
        tut_conv = TutorialConv(
            pc["0.weight"].astype(np.float64),
            pc["0.bias"].astype(np.float64),
            [pc["3.weight"].astype(np.float64), pc["5.weight"].astype(np.float64)],
            [pc["3.bias"].astype(np.float64), pc["5.bias"].astype(np.float64)],
            lr=0.1,
        )
        xd = x.astype(np.float64)
        yd = y.astype(np.float64)
        t_dense64 = build("A", dtype=np.float64)
        t_conv64 = build("C", classes=2, dtype=np.float64)
        s_dense = nn_step(t_dense64, "mse", 0.1)
        s_conv = nn_step(t_conv64, "binary_cross_entropy", 0.1)
        runs.update(
            {
                "tutorial_dense_per_sample": per_sample_runner(
                    tut_dense.train_sample, xd, yd, 3000
                ),
                "tutorial_dense_nn_batch1": per_sample_runner(
                    lambda xi, yi: s_dense(xi[None], yi[None]), xd, yd, 3000
                ),
                "tutorial_conv_per_sample": per_sample_runner(tut_conv.train_sample, x01, y01, 300),
                "tutorial_conv_nn_batch1": per_sample_runner(
                    lambda xi, yi: s_conv(xi[None], yi[None]), x01, y01, 300
                ),
            }
        )
        results["runs"] = interleaved(runs, args.repeats)
    r = results["runs"]
    results["ratios"] = {
        "a_nn_time_over_bare": r["a_bare"]["samples_per_s"] / r["a_nn"]["samples_per_s"],
        "b_nn_time_over_bare": r["b_bare"]["samples_per_s"] / r["b_nn"]["samples_per_s"],
        "a_dropout_time_over_a": r["a_nn"]["samples_per_s"] / r["a_nn_dropout"]["samples_per_s"],
        "b_batchnorm_time_over_b": r["b_nn"]["samples_per_s"]
        / r["b_nn_batchnorm"]["samples_per_s"],
        "tutorial_dense_nn_speedup": r["tutorial_dense_nn_batch1"]["samples_per_s"]
        / r["tutorial_dense_per_sample"]["samples_per_s"],
        "tutorial_conv_nn_speedup": r["tutorial_conv_nn_batch1"]["samples_per_s"]
        / r["tutorial_conv_per_sample"]["samples_per_s"],
    }
    results["peak_rss_mb"] = peak_rss_mb()
    for name, v in r.items():
        print(
            f"{name:28s} {v['samples_per_s']:>12,.0f} samples/s "
            f"(range {v['min_samples_per_s']:,.0f}-{v['max_samples_per_s']:,.0f})"
        )
    for name, v in results["ratios"].items():
        print(f"{name:28s} {v:.2f}")
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
