"""Load on the web app: ``nn-mnist serve`` over the workspace's models (``make repro`` first), and
concurrent clients on loopback posting MNIST test digits drawn as people draw them (PNG, as the
page sends them) until a fixed number of requests is done; then the server is stopped.

Reports requests/s, latency p50/p90/p99/max, errors, and the server's resident memory (after a
warm-up and at the end, to see that it does not grow). ``--max-batch 1,64`` runs the server once
per value, interleaved over ``--rounds``, to measure what batching concurrent requests into one
forward pass gives. Clients and server share the machine's cores (2 here): the numbers are for the
pair, as a user on one machine would see them.

Usage: ``python -m bench.bench_serve [--clients 16] [--requests 5000] [--max-batch 1,64]
[--rounds 1] [--format npz] [--route /api/predict] [--json bench/results/serve.json]``;
``--route "/api/explain?model=conv"`` measures "Look inside"'s request instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent


def digits(n: int) -> list[bytes]:
    """``n`` MNIST test digits drawn as people do (``tools/render_digits.py``), PNG only."""
    from pipeline.idx import load_mnist_split, local_mnist_folder
    from tools.render_digits import render

    images, _ = load_mnist_split(local_mnist_folder(ROOT), "test")
    rng = np.random.default_rng(0)
    out = []
    i = 0
    while len(out) < n:
        data, suffix = render(images[i], rng)
        i += 1
        if suffix == ".png":
            out.append(data)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, bodies: list[bytes], clients: int, requests: int, route: str) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client():
            for i in counter:
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        route,
                        content=bodies[i % len(bodies)],
                        headers={"Content-Type": "image/png"},
                    )
                    ok = r.status_code == 200
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    key = type(e).__name__
                if key is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {
        "requests": requests,
        "ok": len(latencies),
        "errors": errors,
        "seconds": wall,
        "requests_per_s": requests / wall,
        "latency_ms": {
            "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max()),
        },
    }


def run_server(args, max_batch: int, bodies: list[bytes]) -> dict:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(Path(sys.executable).parent / "nn-mnist"), "serve", "--port", str(port),
        "--models", str(args.models), "--format", args.format, "--max-batch", str(max_batch),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"server did not start: {proc.stderr.read()}")
            time.sleep(0.2)
        start_mb = rss_mb(proc.pid)
        warm = asyncio.run(load(url, bodies, args.clients, args.warmup, args.route))
        warm_mb = rss_mb(proc.pid)
        result = asyncio.run(load(url, bodies, args.clients, args.requests, args.route))
        result["warmup_errors"] = warm["errors"]
        result["rss_mb"] = {"start": start_mb, "after_warmup": warm_mb, "end": rss_mb(proc.pid)}
        result["max_batch"] = max_batch
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--max-batch", default="1,64", help="comma-separated values to compare")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--format", choices=("npz", "onnx"), default="npz")
    ap.add_argument(
        "--route",
        default="/api/predict",
        help="what the clients ask: /api/predict, or /api/explain?model=conv (every layer, "
        "saliency, 32-step integrated gradients, Grad-CAM)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    bodies = digits(200)
    runs: dict[int, list[dict]] = {}
    for _ in range(args.rounds):
        for mb in [int(v) for v in args.max_batch.split(",")]:
            res = run_server(args, mb, bodies)
            runs.setdefault(mb, []).append(res)
            lat = res["latency_ms"]
            print(
                f"max_batch {mb:3d}: {res['requests_per_s']:7.1f} req/s, p50 {lat['p50']:.1f} ms, "
                f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms, errors {res['errors']}, "
                f"RSS MB {res['rss_mb']}",
                file=sys.stderr,
            )
    out = {
        "machine": machine(),
        "clients": args.clients,
        "requests": args.requests,
        "format": args.format,
        "route": args.route,
        "body_bytes_median": statistics.median(len(b) for b in bodies),
        "runs": {str(k): v for k, v in runs.items()},
    }
    print(markdown(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def markdown(result: dict) -> str:
    lines = [
        "| max batch | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | server RSS MB "
        "(start / after warm-up / end) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mb, runs in result["runs"].items():
        for r in runs:
            lat, rss = r["latency_ms"], r["rss_mb"]
            errors = sum(r["errors"].values()) + sum(r["warmup_errors"].values())
            lines.append(
                f"| {mb} | {r['requests_per_s']:.0f} | {lat['p50']:.1f} | {lat['p90']:.1f} | "
                f"{lat['p99']:.1f} | {lat['max']:.0f} | {errors} | "
                f"{rss['start']:.0f} / {rss['after_warmup']:.0f} / {rss['end']:.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
