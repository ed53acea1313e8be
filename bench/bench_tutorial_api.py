"""The video's three scripts on ``tutorial/`` against the video's own per-sample code: the
seconds of each script's ``train`` call (the per-sample loop; the data loading and the imports
are left out), interleaved in rounds, medians, as a ratio (video / ``tutorial/``: above 1 means
``tutorial/`` is faster). Issue 26's target: at least 1 on every script, and far above it on the
conv example. (``tests/test_tutorial_api.py`` checks that both print the same.)

Needs the MNIST files (``MNIST_MIRROR``, or ``data/raw/mnist``). Usage:
``python -m bench.bench_tutorial_api [--rounds 5] [--json bench/results/tutorial_api.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.common import machine
from bench.video_tutorial import LOAD, ORACLE, SCRIPTS, run_script, write

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"xor.py": 4 * 10000, "mnist.py": 1000 * 10, "mnist_conv.py": 200 * 20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    mnist = Path(os.environ.get("MNIST_MIRROR", ROOT / "data" / "raw" / "mnist"))
    with tempfile.TemporaryDirectory() as tmp:
        scripts = write(Path(tmp) / "scripts", SCRIPTS | {"load.py": LOAD})
        libraries = {"tutorial": ROOT / "tutorial", "video": write(Path(tmp) / "video", ORACLE)}
        seconds = {(s, lib): [] for s in SAMPLES for lib in libraries}
        for r in range(args.rounds):
            for script in SAMPLES:
                for lib, folder in libraries.items():
                    _, s = run_script(script, folder, scripts, mnist, timed=True)
                    seconds[(script, lib)].append(s)
                    print(f"round {r + 1}: {script} on {lib}: {s:.3f} s")
    rows = []
    for script, n in SAMPLES.items():
        ours, video = (statistics.median(seconds[(script, lib)]) for lib in libraries)
        rows.append(
            {"script": script, "samples": n, "seconds_tutorial": ours, "seconds_video": video,
             "us_per_sample_tutorial": ours / n * 1e6, "us_per_sample_video": video / n * 1e6,
             "ratio": video / ours,
             "all": {lib: seconds[(script, lib)] for lib in libraries}}
        )  # fmt: skip
        print(
            f"{script}: tutorial/ {ours / n * 1e6:.1f} us per sample, the video's "
            f"{video / n * 1e6:.1f}: {video / ours:.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
