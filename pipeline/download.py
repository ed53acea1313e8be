"""Fetching a dataset's four IDX files: from folders or URLs (mirrors), or through Keras.

Sources, tried in order for each file (``pipeline.datasets.mirrors_for``): ``MNIST_MIRROR`` (MNIST
only), then ``DATA_MIRROR`` (with a subfolder per dataset); where neither is set, the public
mirrors torchvision, TensorFlow Datasets and Keras download from (gzipped IDX). Each download is
retried, decompressed, and its SHA-256 compared with the known value before it is renamed into
place, so a failed fetch leaves no file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.datasets import Dataset
from pipeline.errors import PipelineError
from pipeline.files import write_bytes, write_json
from pipeline.idx import idx_bytes

__all__ = ["read_from_mirror", "fetch_file", "mirror_hint", "fetch_keras", "write_dataset_info"]

log = logging.getLogger("pipeline.download")


def _read_url(url: str, timeout: float, progress: bool) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        chunks = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=url.rsplit("/", 1)[-1],
                file=sys.stderr,
                leave=False,
            )
        while chunk := resp.read(1 << 20):
            chunks.append(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return b"".join(chunks)


def read_from_mirror(mirror: str, name: str, *, timeout: float, progress: bool) -> bytes:
    """The decompressed bytes of ``name`` from ``mirror`` (a folder, or the URL of a folder)."""
    if "://" not in mirror:
        folder = Path(mirror)
        if not folder.is_dir():
            raise OSError(f"{folder} is not a folder")
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.exists():
                data = candidate.read_bytes()
                return gzip.decompress(data) if candidate.suffix == ".gz" else data
        raise FileNotFoundError(f"neither {name}.gz nor {name} in {folder}")
    data = _read_url(mirror.rstrip("/") + f"/{name}.gz", timeout, progress)
    return gzip.decompress(data)


def fetch_file(
    name: str,
    mirrors: list[str],
    dest: Path,
    *,
    sha256: str,
    hint: str = "check the mirror",
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = False,
) -> None:
    """Fetch ``name`` from the first mirror that serves bytes with the right SHA-256."""
    failures = []
    for mirror in mirrors:
        for attempt in range(1, retries + 1):
            try:
                data = read_from_mirror(mirror, name, timeout=timeout, progress=progress)
            except (OSError, EOFError, gzip.BadGzipFile, urllib.error.URLError) as e:
                reason = getattr(e, "reason", None) or e
                log.warning("%s from %s, try %d/%d: %s", name, mirror, attempt, retries, reason)
                if attempt == retries or isinstance(e, FileNotFoundError):
                    failures.append(f"{mirror}: {reason}")
                    break
                time.sleep(backoff * attempt)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                log.warning("%s from %s: checksum mismatch", name, mirror)
                failures.append(
                    f"{mirror}: checksum mismatch (SHA-256 {digest}, expected {sha256})"
                )
                break
            write_bytes(dest / name, data)
            log.info("%s: %d bytes from %s, SHA-256 ok", name, len(data), mirror)
            return
    raise PipelineError(f"could not fetch {name}: " + "; ".join(failures) + f" ({hint})")


def mirror_hint(dataset: Dataset, environ=os.environ) -> str:
    """What to set when no mirror served a file: the variables that apply to ``dataset``."""
    names = ["MNIST_MIRROR", "DATA_MIRROR"] if dataset.name == "mnist" else ["DATA_MIRROR"]
    if any(environ.get(n) for n in names):
        return "check " + " and ".join(n for n in names if environ.get(n))
    if dataset.name == "mnist":
        return (
            "set MNIST_MIRROR to a folder or URL that holds the MNIST .gz files, or "
            "DATA_MIRROR to one with a mnist/ subfolder"
        )
    return f"set DATA_MIRROR to a folder or URL with a {dataset.name}/ subfolder of the .gz files"


def fetch_keras(dataset: Dataset, dest: Path) -> None:
    """Load ``dataset`` through ``keras.datasets`` and write it as the same, checksummed, IDX
    files."""
    try:
        from tensorflow import keras
    except ImportError:
        raise PipelineError(
            "fetch.source: 'keras' needs TensorFlow (pip install -e '.[tensorflow]')"
        ) from None
    loader = getattr(keras.datasets, dataset.name)
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as e:  # Keras raises plain Exceptions for failed downloads and hashes
        message = " ".join(str(e).split())
        hint = (
            " (Keras checks the SHA-256 of its own mnist.npz, so without network use "
            "fetch.source: mirror)"
            if dataset.name == "mnist"
            else ""
        )
        raise PipelineError(
            f"fetch.source: keras.datasets.{dataset.name}.load_data() failed: {message}{hint}"
        ) from None
    files = {}
    for prefix, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte"
            files[name] = idx_bytes(arr)
            if hashlib.sha256(files[name]).hexdigest() != dataset.sha256[name]:
                raise PipelineError(f"{name} from Keras: checksum mismatch ({dataset.title})")
    for name, data in files.items():
        write_bytes(dest / name, data)


def write_dataset_info(dataset: Dataset, dest: Path) -> None:
    """``dataset.json``: which dataset the IDX files beside it hold, and its class names."""
    write_json(
        dest / "dataset.json",
        {"dataset": dataset.name, "title": dataset.title, "class_names": list(dataset.class_names)},
    )
