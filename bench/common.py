"""Shared benchmark helpers: MNIST loading, interleaved timing, machine facts."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.data import one_hot, scale
from pipeline.idx import load_mnist_split, local_mnist_folder

ROOT = Path(__file__).resolve().parent.parent


def load_mnist(split="train"):
    """``(x (N, 1, 28, 28) float32 in [0, 1], y (N, 10) one-hot float32)``, read from
    ``pipeline.idx.local_mnist_folder`` (data/raw, else MNIST_MIRROR, else ../shared/data/mnist)."""
    images, labels = load_mnist_split(local_mnist_folder(ROOT), split)
    return scale(images), one_hot(labels, list(range(10)))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [
        {k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for d in threadpool_info()
    ]


def machine() -> dict:
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def interleaved(runners: dict, repeats: int) -> dict:
    """Run every ``runners[name]()`` (returns samples processed) ``repeats`` times, interleaved so
    machine noise hits all alike; returns ``{name: {"samples_per_s", ...}}`` (medians)."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            n = run()
            times[name].append((time.perf_counter() - t0) / n)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {
            "samples_per_s": 1 / med,
            "min_samples_per_s": 1 / max(ts),
            "max_samples_per_s": 1 / min(ts),
            "repeats": len(ts),
        }
    return out


def matmul_macs(model, image_shape) -> list[int]:
    """Multiply-adds of each Conv2D and Dense layer of ``model`` for one image, in layer order
    (read off a forward pass of one blank image in evaluation mode)."""
    import nn

    was_training = model.training
    model.eval()
    x, macs = np.zeros((1, *image_shape), np.float32), []
    try:
        for layer in model.layers:
            y = layer.forward(x)
            if isinstance(layer, nn.Conv2D):
                kh, kw = layer.kernel_size
                macs.append(y[0].size * layer.in_channels * kh * kw)
            elif isinstance(layer, nn.Dense):
                macs.append(layer.in_features * layer.out_features)
            x = y
    finally:
        model.train(was_training)
    return macs


def training_flops(macs: list[int]) -> int:
    """Matmul FLOPs of one training step per sample: 2 per multiply-add, forward + weight
    gradient of every layer, + input gradient of all but the first (nothing uses it)."""
    return sum(2 * m * (2 if i == 0 else 3) for i, m in enumerate(macs))


def matmul_gflops(n=2048, repeats=3) -> float:
    """float32 ``(n x n) @ (n x n)`` GFLOP/s (2 n^3 FLOP), best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), np.float32)
    b = rng.random((n, n), np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def run_worker(script, args: list[str], env: dict, label: str) -> dict:
    """Run ``python -m bench.<script's name> --worker <args>`` (a measurement in a fresh process,
    so that its BLAS kernel and threads are its own) and return the JSON object it prints last;
    exit naming ``label`` with the end of its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{Path(script).stem}", "--worker", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
