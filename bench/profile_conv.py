"""Where the time of one training step goes: the pipeline's conv net, or a peer benchmark net A-D.

Times every layer's forward and backward (wrapped with a timer), the loss, the optimizer step and
the augmentation, on real MNIST batches of the pipeline's size, one BLAS thread, one shard's rows
per step (the work one thread does). Conv2D is split further: its matmuls are timed again on
their own at the same shapes, and the rest of the layer's time is im2col (forward: the window
copies) or col2im (backward: the scatter-add), plus the bias and layout handling.

Usage: ``python -m bench.profile_conv [--steps 60] [--set key=value ...]``, ``--set`` overriding
``train_conv`` params as ``dvc exp run -S`` does (``--set batch_norm=false --set shards=1``);
``--model A`` to ``--model D``: the peer benchmark's net (``bench/models.py``) at ``--batch`` rows
(128), no optimizer and no augmentation, as issue 29 profiled it. The last lines give the step's
matmul GFLOP/s against this machine's float32 matmul limit on one thread (2048^3, measured here).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from pipeline import numerics

numerics.pin()  # before NumPy loads, as the stages do

# isort: split
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import nn  # noqa: E402
from bench.common import (  # noqa: E402
    ROOT,
    load_mnist,
    machine,
    matmul_gflops,
    matmul_macs,
    training_flops,
)
from bench.models import LOSSES, NAMES, build  # noqa: E402
from pipeline.models import build_model, make_optimizer  # noqa: E402
from pipeline.params import ConvParams, parse_section  # noqa: E402
from pipeline.training import augmentation  # noqa: E402


def timed(table, key, f):
    def wrapper(*args):
        t0 = time.perf_counter()
        out = f(*args)
        table[key] += time.perf_counter() - t0
        return out

    return wrapper


def conv_matmul_seconds(conv: nn.Conv2D, n: int, repeats: int) -> tuple[float, float]:
    """Forward and backward matmul seconds of ``conv`` at batch ``n``, timed on their own."""
    c, o = conv.in_channels, conv.out_channels
    kh, kw = conv.kernel_size
    cols = np.ones((c * kh * kw, conv._cols.shape[3] * conv._cols.shape[4] * n), np.float32)
    w2 = conv.params["weight"].reshape(o, -1)
    g = np.ones((o, cols.shape[1]), np.float32)
    gw = np.empty_like(w2)
    t0 = time.perf_counter()
    for _ in range(repeats):
        w2 @ cols
    fwd = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        np.matmul(g, cols.T, out=gw)
        if conv.input_grad:
            w2.T @ g
    return fwd, (time.perf_counter() - t0) / repeats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--model", choices=["pipeline", *NAMES], default="pipeline")
    ap.add_argument("--batch", type=int, default=128, help="rows a step, for models A-D")
    args = ap.parse_args(argv)
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["train_conv"]
    for item in args.set:
        key, value = item.split("=", 1)
        section[key] = yaml.safe_load(value)
    p = parse_section(ConvParams, section, "train_conv")
    x, y = load_mnist("train")
    rows = -(-p.batch_size // p.shards)  # one shard's rows: the work of one thread
    model = build_model("conv", p, 10, np.random.default_rng(0))
    loss_name, opt = p.loss, make_optimizer(p, 400)
    augment = augmentation(p, np.random.default_rng(0))  # params.yaml's, as the stage's
    if args.model != "pipeline":
        rows, model, loss_name, augment, opt = (
            args.batch,
            build(args.model),
            LOSSES[args.model],
            None,
            None,
        )
    model.input_grad = False
    model.train()
    table: dict[str, float] = defaultdict(float)
    for i, layer in enumerate(model.layers):
        name = f"{i:2d} {type(layer).__name__}"
        layer.forward = timed(table, (name, "forward"), layer.forward)
        layer.backward = timed(table, (name, "backward"), layer.backward)
    loss_fn, loss_prime = nn.losses.get(
        loss_name, label_smoothing=0.0 if opt is None else p.label_smoothing
    )
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):
        for step in range(args.steps + 5):
            if step == 5:  # warm-up done
                table.clear()
                t_start = time.perf_counter()
            idx = rng.integers(0, len(x), rows)
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = timed(table, ("augment", ""), augment)(xb)
            out = model.forward(xb)
            t0 = time.perf_counter()
            loss_fn(yb, out)
            grad = loss_prime(yb, out)
            table[("loss", "")] += time.perf_counter() - t0
            model.backward(grad)
            if opt is not None:
                timed(table, ("optimizer", ""), opt.step)(model)
        total = time.perf_counter() - t_start
        convs = [(i, layer) for i, layer in enumerate(model.layers) if isinstance(layer, nn.Conv2D)]
        for i, conv in convs:
            fwd, bwd = conv_matmul_seconds(conv, rows, args.steps)
            name = f"{i:2d} Conv2D"
            table[(name, "forward")] -= fwd * args.steps
            table[(name, "backward")] -= bwd * args.steps
            table[(name, "forward matmul")] = fwd * args.steps
            table[(name, "backward matmuls")] = bwd * args.steps
    what = f"train_conv with {', '.join(args.set) or 'params.yaml'}"
    print(f"{what if args.model == 'pipeline' else 'model ' + args.model}: {rows} rows a step")
    avx512 = "avx512f" in (numerics.cpu_flags() or ())
    print(f"host: {machine()['cpu']} ({'AVX-512' if avx512 else 'no AVX-512'})")
    print("| part | ms per step | share |\n| --- | --- | --- |")
    groups: dict[str, float] = defaultdict(float)
    for (name, what), seconds in sorted(table.items()):
        label = f"{name} {what}".strip()
        if "Conv2D" in name:
            label += {"forward": " (im2col, bias)", "backward": " (col2im, bias)"}.get(what, "")
        print(f"| {label} | {1e3 * seconds / args.steps:.3f} | {100 * seconds / total:.1f}% |")
        if "matmul" in what or "Dense" in name:
            kind = "matmuls"
        elif "Conv2D" in name:
            kind = "im2col/col2im"
        elif "MaxPool" in name:
            kind = "pooling"
        elif name in ("augment", "optimizer"):
            kind = name
        else:
            kind = "element-wise"
        groups[kind] += seconds
    other = total - sum(table.values())
    print(
        f"| Python and batch gathering | {1e3 * other / args.steps:.3f} | "
        f"{100 * other / total:.1f}% |"
    )
    print(f"| **total** | {1e3 * total / args.steps:.3f} | 100% |")
    print("\n" + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(groups.items())))
    flop = training_flops(matmul_macs(model, x.shape[1:])) * rows
    with threadpool_limits(limits=1):
        limit = matmul_gflops()
    gflops = flop * args.steps / total / 1e9
    print(f"matmul work {gflops:.1f} GFLOP/s: {100 * gflops / limit:.0f}% of this host's "
          f"one-thread float32 limit, {limit:.1f} GFLOP/s")  # fmt: skip


if __name__ == "__main__":
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()  # every implementation timed here runs with freed memory kept (its best)
    main()
