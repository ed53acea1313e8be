"""Fashion-MNIST beside MNIST: fetch by dataset, class names from the data to every report, and
the two datasets' results kept apart. Synthetic IDX files of each dataset's shape; no network."""

import dataclasses
import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest import write_params

import nn
from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError
from pipeline.files import write_npz
from pipeline.idx import FILES, idx_bytes, read_dataset_info
from stages import evaluate, fetch, plot, preprocess, train

TINY = {
    "preprocess.dense.train_size": 200,
    "preprocess.dense.val_size": 50,
    "preprocess.conv.classes": [5, 7, 9],
    "preprocess.conv.train_size": 90,
    "preprocess.conv.val_size": 30,
    "train_dense.epochs": 1,
    "train_dense.hidden": [8],
    "train_dense.dropout": 0.0,
    "train_conv.epochs": 1,
    "train_conv.channels": [2],
    "train_conv.hidden": [],
    "plot.misclassified": 4,
}


def synthetic_files(seed=0) -> dict[str, bytes]:
    """The four IDX files with the real counts: noise images, labels 0-9 in turn."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "test"):
        images_name, labels_name, count = FILES[split]
        out[images_name] = idx_bytes(rng.integers(0, 256, (count, 28, 28)))
        out[labels_name] = idx_bytes(np.arange(count) % 10)
    return out


def project(tmp_path, dataset: str):
    write_params(tmp_path, {"fetch.dataset": dataset, **TINY})


def test_fetch_fashion_from_data_mirror(tmp_path, monkeypatch):
    files = synthetic_files()
    mirror = tmp_path / "mirror" / "fashion_mnist"
    mirror.mkdir(parents=True)
    for name, data in files.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
    fake = dataclasses.replace(
        DATASETS["fashion_mnist"],
        sha256={k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
    )
    monkeypatch.setitem(fetch.DATASETS, "fashion_mnist", fake)
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "nowhere"))  # MNIST's only: not used
    work = tmp_path / "work"
    work.mkdir()
    project(work, "fashion_mnist")
    monkeypatch.chdir(work)
    fetch.main()
    for name, data in files.items():
        assert (work / "data" / "raw" / name).read_bytes() == data
    info = read_dataset_info(work / "data" / "raw")
    assert info["dataset"] == "fashion_mnist" and info["class_names"][7] == "Sneaker"


def test_unknown_dataset_is_one_line(tmp_path, monkeypatch):
    project(tmp_path, "cifar10")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match=r"^fetch.dataset: must be one of mnist, fashion_mnist"):
        fetch.main()


@pytest.fixture
def fashion_run(tmp_path, monkeypatch):
    """preprocess, train (both models), evaluate and plot on synthetic Fashion-MNIST."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name, data in synthetic_files().items():
        (raw / name).write_bytes(data)
    fetch.write_dataset_info(DATASETS["fashion_mnist"], raw)
    project(tmp_path, "fashion_mnist")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOGLEVEL", "WARNING")
    preprocess.main()
    train.main(["dense"])
    train.main(["conv"])
    evaluate.main()
    plot.main()
    return tmp_path


def test_class_names_reach_every_report(fashion_run):
    data = np.load(fashion_run / "data" / "processed" / "conv.npz", allow_pickle=False)
    assert data["class_names"].tolist() == ["Sandal", "Sneaker", "Ankle boot"]
    assert str(data["dataset"]) == "fashion_mnist"
    per_class = json.loads((fashion_run / "reports" / "per_class.json").read_text())
    assert sorted(per_class["conv"]) == ["Ankle boot", "Sandal", "Sneaker"]
    assert "T-shirt/top" in per_class["dense"] and "Bag" in per_class["dense"]
    rows = (fashion_run / "reports" / "confusion" / "conv.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + 3000
    assert {r.split(",")[0] for r in rows[1:]} == {"Sandal", "Sneaker", "Ankle boot"}
    _, meta = nn.load(fashion_run / "models" / "conv.npz", with_metadata=True)
    assert meta["dataset"] == "fashion_mnist"
    assert (fashion_run / "reports" / "figures" / "confusion_conv.png").stat().st_size > 1000


def test_evaluate_refuses_a_model_of_the_other_dataset(fashion_run):
    processed = fashion_run / "data" / "processed" / "conv.npz"
    with np.load(processed, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    write_npz(processed, arrays | {"dataset": np.array("mnist")})
    with pytest.raises(
        PipelineError,
        match=r"^models/conv.npz: trained on fashion_mnist, but data/processed/conv.npz holds "
        r"mnist: rerun the pipeline$",
    ):
        evaluate.evaluate_kind("conv", dict)


def test_a_raw_folder_without_dataset_json_is_mnist(tmp_path):
    assert read_dataset_info(tmp_path)["class_names"] == [str(d) for d in range(10)]
    (tmp_path / "dataset.json").write_text('{"dataset": "svhn"}')
    with pytest.raises(PipelineError, match="dataset.json: expected a dataset name and 10 class"):
        read_dataset_info(tmp_path)
