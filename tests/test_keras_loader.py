"""``fetch.source: keras`` for real, where TensorFlow is installed (``make test-keras``): Keras's
dataset cache is seeded with files made from the mirror, so nothing is downloaded."""

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_params

from pipeline.datasets import DATASETS
from pipeline.idx import FILES

pytest.importorskip("tensorflow", reason="TensorFlow is not installed (make test-keras)")


def read_idx(folder: Path, name: str) -> bytes:
    gz = folder / f"{name}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.exists() else (folder / name).read_bytes()


def run_fetch(tmp_path, dataset: str, keras_home: Path):
    work = tmp_path / "work"
    write_params(work, {"fetch.dataset": dataset, "fetch.source": "keras"})
    env = {k: v for k, v in os.environ.items() if not k.endswith("_MIRROR")}
    env.update(KERAS_HOME=str(keras_home), PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "stages", "fetch"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, work / "data" / "raw"


def test_keras_loads_fashion_mnist_from_a_seeded_cache(tmp_path):
    mirror = Path(os.environ.get("DATA_MIRROR", "/nonexistent")) / "fashion_mnist"
    if not (mirror / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("needs the real Fashion-MNIST .gz files in $DATA_MIRROR/fashion_mnist")
    cache = tmp_path / "keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in DATASETS["fashion_mnist"].sha256:
        shutil.copy(mirror / f"{name}.gz", cache / f"{name}.gz")
    result, raw = run_fetch(tmp_path, "fashion_mnist", tmp_path / "keras")
    assert result.returncode == 0, result.stderr
    assert "Downloading" not in result.stdout + result.stderr
    for name, sha in DATASETS["fashion_mnist"].sha256.items():
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == sha
        assert (raw / name).read_bytes() == gzip.decompress((mirror / f"{name}.gz").read_bytes())
    assert '"dataset": "fashion_mnist"' in (raw / "dataset.json").read_text()


def test_keras_mnist_cache_cannot_be_seeded_offline(tmp_path, mnist_folder):
    """Keras pins the SHA-256 of its own mnist.npz: one made from the mirror's files fails that
    check, Keras tries to download it, and offline the stage stops with one line that says so."""
    arrays = {}
    for split, prefix in (("train", "x_train"), ("test", "x_test")):
        images, labels, _ = FILES[split]
        read = [read_idx(mnist_folder, n) for n in (images, labels)]
        arrays[prefix] = np.frombuffer(read[0], np.uint8, offset=16).reshape(-1, 28, 28)
        arrays["y" + prefix[1:]] = np.frombuffer(read[1], np.uint8, offset=8)
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", **arrays)
    result, raw = run_fetch(tmp_path, "mnist", tmp_path / "keras")
    if result.returncode == 0:  # this machine reached the network: then the files must match
        for name, sha in DATASETS["mnist"].sha256.items():
            assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == sha
        return
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: fetch.source: keras.datasets.mnist.load_data() failed: ")
    assert last.endswith("so without network use fetch.source: mirror)")
    assert not raw.exists() or not any(raw.iterdir())
