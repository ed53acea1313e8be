"""The sweep runner with real parts: LocalClusters (a hand-started ``dask scheduler`` and
``dask worker`` processes: ``test_sweep_cluster``), a bare git repository as origin, a
local-folder DVC remote, and the real pipeline on tiny params. Every process started here is
stopped here, within bounded time."""

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import BIN, COPY, IDENTITY, copy_project, run, tool_env

from sweep import git, point

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def env(mnist_folder, base):
    """No git identity and an empty HOME: workers and points must not need one."""
    home = base / "home"
    home.mkdir()
    return tool_env(mnist_folder, HOME=str(home))


@pytest.fixture(scope="module")
def project(base, env):
    """A project with its baseline reproduced and pushed: git to origin.git, DVC to store/."""
    proj = copy_project(base / "project", [*COPY, "sweep"])
    me = env | IDENTITY
    run(["git", "init", "-q", "-b", "main"], proj, me)
    run([BIN / "dvc", "init", "-q"], proj, me)
    run(["git", "init", "-q", "--bare", base / "origin.git"], base, me)
    run(["git", "remote", "add", "origin", "../origin.git"], proj, me)
    run([BIN / "dvc", "remote", "add", "-d", "store", base / "store"], proj, me)
    run(["git", "add", "-A"], proj, me)
    run(["git", "commit", "-qm", "init"], proj, me)
    run([BIN / "dvc", "repro", "-q"], proj, me)
    run(["git", "add", "-A"], proj, me)
    run(["git", "commit", "-qm", "baseline"], proj, me)
    run([BIN / "dvc", "push", "-q"], proj, me)
    run(["git", "push", "-q", "origin", "main"], proj, me)
    return proj


def write_sweep(base, name, grid):
    path = base / f"{name}.yaml"
    path.write_text(json.dumps({"name": name, "metric": "dense.accuracy", "grid": grid}))
    return path


def sweep(project, env, path, *args, check_rc=None):
    done = run([BIN / "python", "-m", "sweep", path, "--interval", "2", *args], project, env, False)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stdout + done.stderr
    return done


@contextlib.contextmanager
def background(cmd, cwd, env):
    """A sweep driver running beside the test, killed if it is still running at the end."""
    driver = subprocess.Popen(
        [str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        yield driver
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)


def interrupt_after(cmd, project, env, first: str) -> str:
    """Run a sweep driver until point ``first`` has landed on origin, then Ctrl-C it; its
    output, after checking that it exited as interrupted (130)."""
    with background(cmd, project, env) as driver:
        deadline = time.monotonic() + 180
        while first not in landed(project) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first in landed(project)
        driver.send_signal(signal.SIGINT)
        out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 130, out
    return out


def table(project, name):
    return pd.read_csv(project / "reports" / "sweeps" / f"{name}.csv")


def landed(project):
    return git.landed(project, "origin", head(project))


def head(project):
    return git.git(project, "rev-parse", "HEAD").stdout.strip()


def cache_mb(cache: Path) -> float:
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 1e6


def outputs_in(cache: Path, project: Path) -> set[str]:
    """The cached outputs of the baseline's dvc.lock whose objects are in ``cache``."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    found = set()
    for stage in lock.values():
        for out in stage.get("outs", []):
            md5 = out.get("md5")
            if md5 and (cache / "files" / "md5" / md5[:2] / md5[2:]).exists():
                found.add(out["path"])
    return found


def processes_in(folder: Path, wait: float = 10.0) -> list[int]:
    """PIDs whose working directory is inside ``folder``, after waiting up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                    pids.append(int(proc.name))
            except OSError:
                continue
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def test_a_push_that_did_not_land_is_a_failure(project, env, base):
    baseline = head(project)
    job = {
        "name": "clash",
        "params": {"train_dense.lr": 0.04},
        "set": ["-S", "train_dense.lr=0.04"],
        "origin": str(base / "origin.git"),
        "baseline": baseline,
        "dvc_remote": str(base / "store"),
        "env": {"MNIST_MIRROR": env["MNIST_MIRROR"], "HOME": env["HOME"]},
        "scratch": str(base / "scratch-c"),
    }
    first = point.run(job)
    assert first["status"] == "ok", first
    sha = landed(project)["clash"]
    assert first["sha"] == sha

    # Another experiment under the same name: dvc exp push exits 0, but origin keeps the first.
    other = job | {"params": {"train_dense.lr": 0.06}, "set": ["-S", "train_dense.lr=0.06"]}
    second = point.run(other | {"keep": True})
    assert second["status"] == "failed"
    assert second["error"].startswith(
        "experiment clash did not land on origin: a different experiment of that name is there"
    )
    assert landed(project)["clash"] == sha
    (kept,) = (base / "scratch-c").glob("clash-*/repo")
    pushed = run([BIN / "python", "-m", "dvc", "exp", "push", "origin", "clash"], kept, env)
    assert pushed.returncode == 0 and landed(project)["clash"] == sha

    # A second attempt of the same point (same params) finds the first one landed: that stands.
    again = point.run(job)
    assert again["status"] == "ok" and again["sha"] == sha


def test_a_rerun_after_an_interruption_skips_the_points_already_pushed(project, env, base):
    scratch = base / "scratch-i"
    path = write_sweep(base, "i", {"train_dense.lr": [0.011, 0.012, 0.013]})
    cmd = [BIN / "python", "-m", "sweep", path, "--workers", "1", "--scratch", scratch,
           "--interval", "2"]  # fmt: skip
    out = interrupt_after(cmd, project, env, "i-00")
    assert "interrupted: points that landed are kept" in out
    first = {k: v for k, v in landed(project).items() if k.startswith("i-")}
    assert 1 <= len(first) < 3
    assert not processes_in(scratch)  # nothing of the interrupted run goes on

    again = sweep(project, env, path, "--workers", "2", check_rc=0)
    assert f"{len(first)} point(s) already on origin: skipped" in again.stdout
    after = landed(project)
    assert {k: after[k] for k in first} == first and {"i-00", "i-01", "i-02"} <= set(after)


def test_bad_input_stops_before_anything_runs(project, env, base):
    def fails(path, *args):
        done = sweep(project, env, path, "--workers", "1", *args, check_rc=2)
        assert done.stderr.count("\n") == 1, done.stderr
        return done.stderr.strip()

    typo = base / "typo.yaml"
    typo.write_text(
        json.dumps({"name": "t", "metric": "dense.acc", "grid": {"train_dense.lr": [1]}})
    )
    assert fails(typo).startswith(
        "error: metric: 'dense.acc' is not in reports/metrics.json or the training curves' "
        "metrics.json (they have: conv.accuracy,"
    )
    key = write_sweep(base, "t", {"train_dense.lrr": [0.1]})
    assert fails(key) == f"error: {key}: grid.train_dense.lrr: not a key of params.yaml"
    assert fails(write_sweep(base, "t", {"train_dense.lr": [0.1]}), "--workers", "0") == (
        "error: --workers: 0 must be at least 1"
    )
    run(["git", "commit", "-q", "--allow-empty", "-m", "not pushed"], project, env | IDENTITY)
    try:
        assert "is not on origin: the workers clone it from there (git push origin)" in fails(key)
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], project, env)
    assert not list((project / "reports").glob("sweeps/t.*"))


def write_search(base, name, trials=2):
    path = base / f"{name}.yaml"
    path.write_text(
        json.dumps(
            {
                "name": name,
                "metric": "dense.val_accuracy",  # ranked on validation, from the curves
                "set": {"train_dense.epochs": 1},
                "search": {
                    "trials": trials,
                    "seed": 3,
                    "parallel": 1,
                    "startup": 1,  # the second point is the sampler's model of the first
                    "params": {
                        "train_dense.lr": {"loguniform": [0.003, 0.05]},
                        "train_dense.dropout": {"uniform": [0.0, 0.5]},
                    },
                },
            }
        )
    )
    return path


def searched(project, name) -> list[tuple]:
    """The landed points of search ``name``, in order: (experiment, lr, dropout)."""
    df = table(project, name).sort_values("experiment")
    return list(df[["experiment", "train_dense.lr", "train_dense.dropout"]].itertuples(False))


def test_a_search_runs_its_budget_reproducibly_and_resumes_after_an_interruption(
    project, env, base
):
    scratch = base / "scratch-s"
    done = sweep(project, env, write_search(base, "s"), "--workers", "1", "--scratch", scratch,
                 check_rc=0)  # fmt: skip
    assert "2 trial(s) to run, 1 at a time" in done.stdout
    first = searched(project, "s")
    assert [e for e, *_ in first] == ["s-000", "s-001"]
    assert len({(lr, d) for _, lr, d in first}) == 2  # no point repeated
    for _, lr, dropout in first:
        assert 0.003 <= lr <= 0.05 and 0.0 <= dropout <= 0.5
        assert lr == float(f"{lr:.4g}")  # rounded as random: does
    df = table(project, "s")
    assert (df["status"] == "ok").all() and df["dense.accuracy"].notna().all()
    assert df["dense.val_accuracy"].between(0, 1).all() and df["conv.val_loss"].notna().all()
    # A training point fetched the processed data and the conv model, never the raw data.
    found = outputs_in(scratch / "dvc-cache", project)
    assert {"data/processed", "models/conv.npz"} <= found and "data/raw" not in found
    assert df["fetched_MB"].max() > 0

    # The same file under another name, interrupted after its first point landed, then rerun:
    # the optimizer resumes from origin and the sequence is the uninterrupted one.
    path = write_search(base, "r")
    cmd = [BIN / "python", "-m", "sweep", path, "--workers", "1", "--interval", "2"]
    interrupt_after(cmd, project, env, "r-000")
    before = {k: v for k, v in landed(project).items() if k.startswith("r-")}
    assert len(before) == 1
    again = sweep(project, env, path, "--workers", "1", check_rc=0)
    assert f"{len(before)} point(s) of this search already on origin: the optimizer resumes" in (
        again.stdout
    )
    after = landed(project)
    assert {k: after[k] for k in before} == before  # nothing landed twice
    resumed = searched(project, "r")
    assert [(lr, d) for _, lr, d in resumed] == [(lr, d) for _, lr, d in first]
    # Its budget spent, a third run runs nothing.
    spent = sweep(project, env, path, "--workers", "1", check_rc=0)
    assert "the budget of 2 trials is spent" in spent.stdout
