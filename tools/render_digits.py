"""Render MNIST test digits the way people write them, to try ``nn-mnist predict`` on:

    python tools/render_digits.py 300 /tmp/digits    # then: nn-mnist predict /tmp/digits/*

Each digit is enlarged 5-10x, drawn dark on light paper (some grey, some tinted), placed off
centre on a larger page, and saved as PNG or as an RGB JPEG; the file name carries the true label
(``0042-label7.png``), so ``predict --json`` output can be scored against it.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np


def render(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """One 28x28 uint8 MNIST digit (white on black) as a person's image: ``(bytes, suffix)``."""
    from PIL import Image

    scale = int(rng.integers(5, 11))
    side = 28 * scale
    big = Image.fromarray(digit, mode="L").resize((side, side), Image.Resampling.BICUBIC)
    ink = np.asarray(big, np.float32) / 255
    page_h, page_w = side + int(rng.integers(20, 200)), side + int(rng.integers(20, 200))
    top, left = int(rng.integers(0, page_h - side + 1)), int(rng.integers(0, page_w - side + 1))
    paper = np.array([rng.uniform(0.85, 1.0)] * 3, np.float32)
    pen = np.array(rng.uniform(0.0, 0.25, 3), np.float32)
    page = np.ones((page_h, page_w, 3), np.float32) * paper
    region = page[top : top + side, left : left + side]
    region[...] = region * (1 - ink[..., None]) + pen * ink[..., None]
    img = Image.fromarray((page * 255).round().astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    if rng.random() < 0.4:
        img.save(buf, "JPEG", quality=int(rng.integers(70, 95)))
        return buf.getvalue(), ".jpg"
    (img if rng.random() < 0.5 else img.convert("L")).save(buf, "PNG")
    return buf.getvalue(), ".png"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("count", type=int)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from pipeline.idx import load_mnist_split, local_mnist_folder

    images, labels = load_mnist_split(local_mnist_folder(root), "test")
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        data, suffix = render(images[i], rng)
        (args.out / f"{i:04d}-label{labels[i]}{suffix}").write_bytes(data)
    print(f"{args.count} digits in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
