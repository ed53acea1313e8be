"""Stage 1, fetch: the four MNIST IDX files into ``data/raw/``, checksummed.

Sources, tried in order for each file: the mirrors torchvision and TensorFlow Datasets download from
(gzipped IDX), or ``MNIST_MIRROR`` instead: a local folder or a base URL (several may be given,
separated by commas). Each download is retried, decompressed, and its SHA-256 compared with the
published value before it is renamed into place, so a failed fetch leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from stages.common import RAW, StageError, load_params, run_stage, write_bytes

log = logging.getLogger("stages.fetch")

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets
    "http://yann.lecun.com/exdb/mnist/",  # the original
)

# SHA-256 of the decompressed files.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@dataclasses.dataclass
class FetchParams:
    source: str = "mirror"  # "mirror" (HTTP mirrors or MNIST_MIRROR) or "keras" (TensorFlow)
    retries: int = 3
    timeout: float = 60.0

    def validate(self, section):
        if self.source not in ("mirror", "keras"):
            raise StageError(f"{section}.source: must be 'mirror' or 'keras', got {self.source!r}")
        if self.retries < 1:
            raise StageError(f"{section}.retries: must be at least 1, got {self.retries}")
        if self.timeout <= 0:
            raise StageError(f"{section}.timeout: must be positive, got {self.timeout}")


def mirrors_from_env() -> list[str]:
    env = os.environ.get("MNIST_MIRROR", "").strip()
    return [m.strip() for m in env.split(",") if m.strip()] if env else list(MIRRORS)


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
            if digest != SHA256[name]:
                log.warning("%s from %s: checksum mismatch", name, mirror)
                failures.append(
                    f"{mirror}: checksum mismatch (SHA-256 {digest}, expected {SHA256[name]})"
                )
                break
            write_bytes(dest / name, data)
            log.info("%s: %d bytes from %s, SHA-256 ok", name, len(data), mirror)
            return
    hint = (
        "set MNIST_MIRROR to a folder or URL that holds the MNIST .gz files"
        if "MNIST_MIRROR" not in os.environ
        else "check MNIST_MIRROR"
    )
    raise StageError(f"could not fetch {name}: " + "; ".join(failures) + f" ({hint})")


def fetch_keras(dest: Path) -> None:
    """Load MNIST through ``tf.keras.datasets`` and write it as the same IDX files."""
    try:
        from tensorflow import keras
    except ImportError:
        raise StageError(
            "fetch.source: 'keras' needs TensorFlow (pip install -e '.[tensorflow]')"
        ) from None
    import numpy as np

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    for prefix, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            arr = np.ascontiguousarray(arr, dtype=np.uint8)
            header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
            data = header + arr.tobytes()
            name = f"{prefix}-{kind}-ubyte"
            if hashlib.sha256(data).hexdigest() != SHA256[name]:
                raise StageError(f"{name} from Keras: checksum mismatch")
            write_bytes(dest / name, data)


def main() -> None:
    params = load_params("fetch", FetchParams)
    if params.source == "keras":
        fetch_keras(RAW)
        return
    mirrors = mirrors_from_env()
    for name in SHA256:
        fetch_file(
            name,
            mirrors,
            RAW,
            retries=params.retries,
            timeout=params.timeout,
            progress=sys.stderr.isatty(),
        )


if __name__ == "__main__":
    run_stage(main)
