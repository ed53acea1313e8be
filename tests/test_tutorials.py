"""Every tutorial in docs/tutorials runs as ``python FILE`` within 90 s, its own assertions
included, reads real MNIST from the mirror, and writes nothing into the repository."""

import subprocess
import sys

import pytest
from conftest import ROOT

TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))


def git_status() -> str:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else ""


@pytest.mark.slow  # a subprocess each: not in make test-fast
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_the_tutorial_runs_and_asserts_what_it_says(path, mnist_folder, monkeypatch):
    monkeypatch.setenv("MNIST_MIRROR", str(mnist_folder))
    before = git_status()
    done = subprocess.run(
        [sys.executable, path], cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert git_status() == before


def test_there_is_a_path_of_tutorials():
    assert [p.name[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, len(TUTORIALS) + 1)]
