"""Parse the IDX files of MNIST and Fashion-MNIST with header validation.

IDX format: a 4-byte magic ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
the data. Both datasets use dtype ``0x08`` (uint8): images ``(n, 28, 28)`` and labels ``(n,)``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError

__all__ = [
    "parse_idx",
    "idx_bytes",
    "load_mnist_split",
    "local_mnist_folder",
    "read_dataset_info",
    "FILES",
]

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}


def parse_idx(data: bytes, *, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """The uint8 array stored in IDX ``data``; raise PipelineError naming ``name`` if malformed."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise PipelineError(f"{name}: not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    if data[2] != 0x08:
        raise PipelineError(f"{name}: IDX data type 0x{data[2]:02x} is not uint8 (0x08)")
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise PipelineError(f"{name}: expected {ndim} dimensions, header says {dims}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise PipelineError(f"{name}: truncated header")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=dims, offset=4))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != size:
        raise PipelineError(
            f"{name}: header says {shape} ({size} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def idx_bytes(arr) -> bytes:
    """``arr`` (uint8) as an IDX file."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">u4").tobytes() + arr.tobytes()


def load_mnist_split(raw_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (n, 28, 28) uint8, labels (n,) uint8)`` of ``split`` ("train" or "test")."""
    images_name, labels_name, count = FILES[split]
    arrays = []
    for fname, ndim in ((images_name, 3), (labels_name, 1)):
        path = Path(raw_dir) / fname
        gz = path.with_name(fname + ".gz")
        if not path.exists() and gz.exists():
            path, data = gz, gzip.decompress(gz.read_bytes())
        else:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise PipelineError(f"{path}: not found (run the fetch stage first)") from None
        arrays.append(parse_idx(data, name=str(path), ndim=ndim))
    images, labels = arrays
    if images.shape[1:] != (28, 28):
        raise PipelineError(f"{images_name}: images are {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels) or len(images) != count:
        raise PipelineError(
            f"{split}: {len(images)} images and {len(labels)} labels, expected {count} of each"
        )
    if labels.max(initial=0) > 9:
        raise PipelineError(f"{labels_name}: label {labels.max()} is not a class 0-9")
    return images, labels


def read_dataset_info(raw_dir) -> dict:
    """``{"dataset", "title", "class_names"}`` from the fetch stage's ``dataset.json`` in
    ``raw_dir``; a folder without one (the MNIST files alone) holds MNIST."""
    path = Path(raw_dir) / "dataset.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        mnist = DATASETS["mnist"]
        return {"dataset": "mnist", "title": mnist.title, "class_names": list(mnist.class_names)}
    except ValueError as e:
        raise PipelineError(f"{path}: not valid JSON ({e})") from None
    if (
        not isinstance(info, dict)
        or info.get("dataset") not in DATASETS
        or not isinstance(info.get("class_names"), list)
        or len(info["class_names"]) != 10
    ):
        raise PipelineError(f"{path}: expected a dataset name and 10 class names, got {info!r}")
    return info


def local_mnist_folder(root: Path | str = ".") -> Path:
    """Where examples and benchmarks read MNIST: ``<root>/data/raw`` once the pipeline fetched it,
    else ``MNIST_MIRROR`` (a local folder of the ``.gz`` files), else
    ``<root>/../shared/data/mnist``."""
    root = Path(root)
    if (root / "data" / "raw" / FILES["train"][0]).exists():
        return root / "data" / "raw"
    mirror = os.environ.get("MNIST_MIRROR", "").split(",")[0].strip()
    if mirror and "://" not in mirror:
        return Path(mirror)
    return root.resolve().parent / "shared" / "data" / "mnist"
