"""Shared by the suite: the real MNIST folder, the tiny project copy the end-to-end tests run,
commands run with bounded time, and processes stopped within bounded time. Test modules import
the helpers (``from conftest import run``); pytest puts this folder on ``sys.path``."""

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline import numerics

# The suite is an entry point: it pins the numerics before NumPy loads, as `python -m stages` does.
numerics.pin()

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# The same examples on every run and machine: a test suite that passes once passes again.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the environment's scripts: dvc, dask, nn-mnist
sys.path.insert(0, str(ROOT / "examples"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from pipeline.idx import FILES, local_mnist_folder  # noqa: E402

# What a project copy needs to run the pipeline (this working tree's files).
COPY = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    "requirements.lock",
    "stages",
    "pipeline",
    "nn",
    "tools",
]

# Tiny params for the end-to-end tests: a few hundred images, two epochs, narrow models.
TINY = {
    "preprocess.dense.train_size": 300,
    "preprocess.dense.val_size": 100,
    "preprocess.conv.classes": [0, 1, 7],
    "preprocess.conv.train_size": 150,
    "preprocess.conv.val_size": 30,
    "train_dense.epochs": 2,
    "train_dense.hidden": [16],
    "train_dense.lr": 0.01,
    "train_conv.epochs": 2,
    "train_conv.channels": [2],
    "train_conv.hidden": [],
    "train_conv.lr": 0.01,
    "plot.misclassified": 4,
    "plot.mistakes": 4,
    "plot.dpi": 40,  # small figures: plot (every pipeline run here) 2.9 -> 2.2 s
    "robustness.per_class": 10,
}


# `make test` runs the suite on two processes (pytest-xdist, `--dist loadfile`): the tests of a
# file run in one process, in order, sharing its fixtures. These files start first, in this
# order: the longest first (seconds in a one-process run on 2 cores), so that none of them is
# the last to start, and the two sweep files, each with two Dask workers, not at the same time.
# The other files follow in the usual order, on whichever process is free.
LONGEST_FIRST = [
    "test_sweep.py",  # 120 s: LocalClusters, its own project pushed to origin
    "test_lab.py",  # 65 s
    "test_sweep_cluster.py",  # 100 s: a hand-started Dask cluster, its own project
    "test_browser.py",  # 55 s
    "test_docs.py",  # 55 s: the site's build, every lesson run
    "test_pipeline.py",  # 55 s
    "test_tutorials.py",  # 50 s: the lessons as scripts
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # A stable sort: within a file, the tests keep their order.
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def set_params(path: Path, changes: dict):
    """Set dotted keys (``train_conv.lr``) in the params file ``path``."""
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def write_params(folder: Path, changes: dict) -> Path:
    """The project's ``params.yaml`` in ``folder`` with dotted keys ``changes`` set."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    set_params(folder / "params.yaml", changes)
    return folder / "params.yaml"


def copy_project(dest: Path, names=COPY, changes=TINY) -> Path:
    """The project's files (this working tree's) in ``dest``, with params ``changes``."""
    dest.mkdir()
    for name in names:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    set_params(dest / "params.yaml", changes)
    return dest


# A git identity for commits made by the tests (the sweep tests run points without one).
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def tool_env(mnist_folder: Path, **extra) -> dict:
    """This process's environment for the project's commands: no DVC_/GIT_ settings from
    outside, this venv's scripts first on PATH, the real MNIST as the fetch mirror."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        MNIST_MIRROR=str(mnist_folder.resolve()),
        VIRTUAL_ENV=str(BIN.parent),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        LOGLEVEL="WARNING",
    )
    return env | extra


def run(cmd, cwd, env, check=True, timeout=600) -> subprocess.CompletedProcess:
    """Run ``cmd`` to its end (at most ``timeout`` seconds); with ``check``, fail the test with
    its output if it exits non-zero."""
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def stop(procs, grace=15):
    """Stop every process in ``procs``: SIGTERM, then SIGKILL for any still running after
    ``grace`` seconds in all."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@pytest.fixture(scope="session")
def mnist_folder():
    """A local folder with the real MNIST files (CI: MNIST_MIRROR=../shared/data/mnist)."""
    folder = local_mnist_folder(ROOT)
    name = FILES["train"][0]
    if not ((folder / name).exists() or (folder / f"{name}.gz").exists()):
        pytest.fail(
            f"real MNIST not found in {folder}: set MNIST_MIRROR to a folder with the "
            "MNIST .gz files"
        )
    return folder


# --- images and models for predict and the web app ----------------------------------------------


def png(img) -> bytes:
    """A Pillow image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def hand_made() -> dict[str, bytes]:
    """A few images as people make them: a dark bar on a wide white page, a white L on black (RGB),
    a black ring on a transparent background (RGBA)."""
    from PIL import Image, ImageDraw

    bar = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(bar).rectangle([140, 30, 170, 180], fill=0)
    ell = Image.new("RGB", (120, 160), (0, 0, 0))
    ImageDraw.Draw(ell).line([(30, 20), (30, 130), (90, 130)], fill=(250, 250, 250), width=12)
    ring = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(ring).ellipse([60, 40, 200, 220], outline=(0, 0, 0, 255), width=18)
    return {"bar": png(bar), "ell": png(ell), "ring": png(ring)}


def bomb() -> bytes:
    """A small PNG that declares 20,000 x 20,000 pixels."""
    from PIL import Image

    return png(Image.new("1", (20_000, 20_000), 0))


def _blank_page() -> bytes:
    from PIL import Image

    return png(Image.new("L", (50, 50), 255))


def _too_many_pixels() -> bytes:
    from PIL import Image

    return png(Image.new("1", (8000, 6000), 0))


# Files that are not a usable image: name -> (a function making the bytes, what the error says).
BAD_IMAGES = {
    "text": (lambda: b"hello, not an image", "not a PNG or JPEG image"),
    "gif": (lambda: b"GIF89a" + bytes(64), "not a PNG or JPEG image"),  # only PNG, JPEG decoded
    "truncated": (lambda: hand_made()["bar"][:400], "truncated"),
    "blank": (_blank_page, "no ink found"),
    "bomb": (bomb, "more than 40,000,000 pixels (a decompression bomb?)"),
    "huge": (_too_many_pixels, "8000x6000 is 48,000,000 pixels, more than the 40"),
}


@pytest.fixture(scope="session")
def trained(mnist_folder, tmp_path_factory):
    """``(conv model, folder)``: a small conv net and a small dense net trained on 12,000 real
    MNIST images, saved as the pipeline saves them (``conv.npz``, ``dense.npz``), exported to
    ONNX (``conv.onnx``, ``dense.onnx``), with their test accuracies in ``metrics.json``."""
    import nn
    from pipeline import export
    from pipeline.data import one_hot, scale
    from pipeline.idx import load_mnist_split

    images, labels = load_mnist_split(mnist_folder, "train")
    x, y = scale(images[:12_000]), one_hot(labels[:12_000], list(range(10)))
    test_images, test_labels = load_mnist_split(mnist_folder, "test")
    rng = np.random.default_rng(0)
    conv = nn.Sequential(
        [
            nn.Conv2D(1, 8, 5, rng=rng),
            nn.MaxPool2D(2),
            nn.ReLU(),
            nn.Conv2D(8, 16, 5, rng=rng),
            nn.MaxPool2D(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dense(256, 10, rng=rng),
        ]
    )
    dense = nn.Sequential(
        [nn.Flatten(), nn.Dense(784, 64, rng=rng), nn.ReLU(), nn.Dense(64, 10, rng=rng)]
    )
    folder = tmp_path_factory.mktemp("model")
    metrics = {}
    for kind, model in (("conv", conv), ("dense", dense)):
        nn.fit(
            model, x, y, loss="cross_entropy", optimizer=nn.Adam(3e-3), epochs=2, batch_size=64,
            rng=0,
        )  # fmt: skip
        meta = {"kind": kind, "dataset": "mnist", "classes": list(range(10)),
                "loss": "cross_entropy"}  # fmt: skip
        nn.save(model, folder / f"{kind}.npz", metadata=meta)
        names = [str(c) for c in range(10)]
        onnx_model = export.to_onnx(model, 10, export.metadata_of(meta, names))
        (folder / f"{kind}.onnx").write_bytes(export.onnx_bytes(onnx_model))
        predicted = nn.predict(model, scale(test_images)).argmax(axis=1)
        metrics[kind] = {"accuracy": float(np.mean(predicted == test_labels))}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return conv, folder


@pytest.fixture(scope="session")
def rendered(mnist_folder, tmp_path_factory):
    """300 real MNIST test digits drawn as people do (5-10x, dark on light, off centre, PNG or RGB
    JPEG), named with their labels."""
    from pipeline.idx import load_mnist_split
    from tools.render_digits import render

    images, labels = load_mnist_split(mnist_folder, "test")
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for i in range(300):
        data, suffix = render(images[i], rng)
        (folder / f"{i:04d}-label{labels[i]}{suffix}").write_bytes(data)
    return folder, images[:300], labels[:300]


# --- the tiny pipeline in a real git + DVC repository ------------------------------------------


@pytest.fixture(scope="session")
def e2e_env(mnist_folder):
    return tool_env(mnist_folder) | IDENTITY


@pytest.fixture(scope="session")
def e2e_repo(tmp_path_factory, e2e_env):
    """The project (TINY params) in a new git repository with DVC initialised, committed."""
    env = e2e_env
    path = copy_project(tmp_path_factory.mktemp("pipeline") / "repo")
    run(["git", "init", "-q", "-b", "main"], path, env)
    run([BIN / "dvc", "init", "-q"], path, env)
    run([BIN / "dvc", "config", "core.analytics", "false"], path, env)
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")
    run([BIN / "dvc", "config", "plots.html_template", "plots/offline.html"], path, env)
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "init"], path, env)
    return path


@pytest.fixture(scope="session")
def reproduced(e2e_repo, e2e_env):
    """One real ``dvc repro`` of the tiny pipeline, committed; the end-to-end tests (pipeline,
    lab) share it, and each one that changes the repository puts it back."""
    run([BIN / "dvc", "repro"], e2e_repo, e2e_env)
    run(["git", "add", "-A"], e2e_repo, e2e_env)
    run(["git", "commit", "-qm", "baseline"], e2e_repo, e2e_env)
    return e2e_repo
