"""Same params, same bytes: a tiny model trained by ``python -m stages train`` in subprocesses under
different BLAS environments and core counts gives byte-identical model files."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_params

from pipeline import numerics
from pipeline.files import write_npz

BLAS_VARIABLES = ("OPENBLAS_", "OMP_", "MKL_", "GOTO", "NPY_")
TINY_CONV = {
    "seed": 3,
    "shards": 2,
    "batch_norm": True,
    "dropout": 0.2,
    "augment_shift": 1,
    "augment_rotate": 10.0,
    "augment_scale": 0.1,
    "augment_shear": 15.0,
    "augment_elastic": 8.0,
    "augment_stroke": 0.3,
    "augment_blur": 0.7,
    "schedule": "onecycle",
    "epochs": 2,
    "batch_size": 64,
    "channels": [4],
    "hidden": [32],
    "kernel_size": 5,
    "lr": 0.01,
}
# OpenBLAS's AVX-512 kernel: a different kernel from the pinned one, where the CPU can run it.
ALTERNATIVE = "SkylakeX"
ALTERNATIVE_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")


def cpu_runs_alternative() -> bool:
    flags = numerics.cpu_flags() or set()
    return platform.machine() == "x86_64" and all(f in flags for f in ALTERNATIVE_FLAGS)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder with params.yaml and a small synthetic ``data/processed/conv.npz``."""
    path = tmp_path_factory.mktemp("determinism")
    write_params(path, {f"train_conv.{k}": v for k, v in TINY_CONV.items()})
    rng = np.random.default_rng(0)

    def split(n):
        x = rng.random((n, 1, 28, 28), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
        return x, y

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(384), split(64), split(64)
    write_npz(
        path / "data" / "processed" / "conv.npz",
        dict(
            x_train=x_train,
            y_train=y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_test,
            y_test=y_test,
            classes=np.arange(10),
        ),
    )
    return path


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(BLAS_VARIABLES)}
    env["PYTHONPATH"] = str(ROOT)
    env["LOGLEVEL"] = "WARNING"
    return env


def train(project: Path, out: Path, env: dict, *, prefix=(), unpinned=False) -> bytes:
    """Train in a copy of ``project``; the bytes of the model file. ``unpinned``: import NumPy
    before the runner pins, so the kernel OpenBLAS picks from the environment stays (the
    control)."""
    work = out / "work"
    shutil.copytree(project, work)
    if unpinned:
        code = "import numpy, sys, stages.__main__ as m; sys.exit(m.run(['train', 'conv']))"
        cmd = [*prefix, sys.executable, "-c", code]
    else:
        cmd = [*prefix, sys.executable, "-m", "stages", "train", "conv"]
    result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    if not unpinned:
        assert "results may differ" not in result.stderr, result.stderr
    return (work / "models" / "conv.npz").read_bytes()


@pytest.fixture(scope="module")
def reference(project, tmp_path_factory):
    """The model trained with no BLAS variables set, on every core."""
    if numerics.pinned_environment(numerics.cpu_flags(), platform.machine())[1] is not None:
        pytest.skip("this CPU cannot run the pinned kernel, so results may differ by design")
    return train(project, tmp_path_factory.mktemp("reference"), clean_env())


@pytest.mark.slow
@pytest.mark.parametrize(
    "variables, cores",
    [
        ({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}, None),
        ({"OPENBLAS_CORETYPE": ALTERNATIVE}, None),
        ({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"}, None),
        ({}, "0"),
        ({"OPENBLAS_CORETYPE": ALTERNATIVE, "OPENBLAS_NUM_THREADS": "2"}, "0"),
    ],
    ids=["threads-2", "other-kernel", "user-haswell", "one-core", "other-kernel-one-core"],
)
def test_model_bytes_do_not_depend_on_blas_variables_or_cores(
    project, reference, tmp_path, variables, cores
):
    if variables.get("OPENBLAS_CORETYPE") == ALTERNATIVE and not cpu_runs_alternative():
        pytest.skip(f"this CPU cannot run OpenBLAS's {ALTERNATIVE} kernel")
    prefix = ()
    if cores is not None:
        if not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
            pytest.skip("needs taskset and a machine with two or more cores")
        prefix = ("taskset", "-c", cores)
    assert train(project, tmp_path, clean_env() | variables, prefix=prefix) == reference


def test_the_control_differs_without_the_pin(project, tmp_path):
    """Without the pin the kernel changes the bytes: the test above could fail."""
    if not cpu_runs_alternative():
        pytest.skip(f"this CPU cannot run OpenBLAS's {ALTERNATIVE} kernel")
    base = clean_env()
    haswell = train(project, tmp_path / "h", base | {"OPENBLAS_CORETYPE": "Haswell"}, unpinned=True)
    other = train(project, tmp_path / "o", base | {"OPENBLAS_CORETYPE": ALTERNATIVE}, unpinned=True)
    assert haswell != other


def test_pinned_environment_per_cpu():
    v3 = set(numerics.V3_FLAGS)
    variables, failure = numerics.pinned_environment(v3 | {"avx512f"}, "x86_64")
    assert failure is None and variables["OPENBLAS_CORETYPE"] == "Haswell"
    assert (
        variables["OPENBLAS_NUM_THREADS"] == "1"
        and "X86_V4" in variables["NPY_DISABLE_CPU_FEATURES"]
    )
    variables, failure = numerics.pinned_environment(v3 - {"avx2"}, "x86_64")
    assert "OPENBLAS_CORETYPE" not in variables and failure == (
        "the CPU lacks avx2 (x86-64-v3: AVX2 + FMA)"
    )
    variables, failure = numerics.pinned_environment({"asimd"}, "aarch64")
    assert "OPENBLAS_CORETYPE" not in variables and failure.startswith("aarch64 CPU")
    assert variables["OMP_NUM_THREADS"] == "1"


def test_this_process_is_pinned():
    """conftest pins before NumPy loads, so the suite itself runs pinned."""
    info = numerics.loaded()
    if numerics.pin_failure() is not None:
        pytest.skip(numerics.pin_failure())
    assert info["blas_kernel"] == "Haswell" and "X86_V4" not in info["numpy_simd"]
    assert numerics.problems(info) == []


@pytest.mark.parametrize(
    "python, want", [((3, 10), "2.2.6"), ((3, 11), "2.4.6"), ((3, 13), "2.5.5")]
)
def test_lock_pin_follows_python_markers(tmp_path, python, want):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "numpy==2.2.6 ; python_full_version < '3.11' \\\n"
        "numpy==2.4.6 ; python_full_version == '3.11.*' \\\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n"
    )
    assert numerics.lock_pin("numpy", lock, python) == want
