"""The sweep runner with real parts: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (and LocalClusters), a bare git repository as origin, a local-folder DVC remote, and the
real pipeline on tiny params. Every process started here is stopped here, within bounded time."""

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
from conftest import BIN, COPY, IDENTITY, copy_project, run, stop, tool_env

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


@pytest.fixture(scope="module")
def cluster(base, env):
    """``dask scheduler`` and two ``dask worker`` processes (each with its nanny), as by hand."""
    from distributed import Client

    logs = base / "dask-logs"
    logs.mkdir()
    file = base / "scheduler.json"
    procs = []

    def start(name, *args):
        out = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen([BIN / "dask", *args], env=env, stdout=out, stderr=out))

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(file))  # fmt: skip
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for i in range(2):
            start(f"worker{i}", "worker", address, "--nthreads", "1", "--no-dashboard",
                  "--host", "127.0.0.1", "--name", f"w{i}",
                  "--local-directory", str(base / f"w{i}"))  # fmt: skip
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        stop(procs[1:])
        stop(procs[:1])


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


def test_sweep_on_a_hand_started_cluster_and_on_a_local_cluster(project, cluster, env, base):
    grid = {"train_dense.lr": [0.02, 0.05, -1.0]}
    scratch = base / "scratch-a"
    a = sweep(project, env, write_sweep(base, "a", grid), "--scheduler", cluster, "--scratch",
              scratch, check_rc=1)  # fmt: skip
    out = a.stdout
    assert "3 to run on 2 worker thread(s)" in out
    assert "a-00: landed" in out and "a-01: landed" in out
    assert "a-02: FAILED: train_dense.lr: OneCycle: max_lr must be in (0.0, inf], got -1.0" in out
    assert "finished (2 ran, 0 skipped, 1 failed)" in out and "running" in out
    assert "best: a-" in out and "apply it: dvc exp pull origin a-" in out
    df = table(project, "a")
    assert list(df["status"]) == ["ok", "ok", "failed"]
    assert df["dense.accuracy"].iloc[0] >= df["dense.accuracy"].iloc[1]
    assert df["error"].iloc[2] == "train_dense.lr: OneCycle: max_lr must be in (0.0, inf], got -1.0"
    md = (project / "reports" / "sweeps" / "a.md").read_text()
    assert md.index("a-02") > max(md.index("a-00"), md.index("a-01"))
    assert (project / "reports" / "sweeps" / "a.png").read_bytes()[:4] == b"\x89PNG"

    # Both workers on this host shared one DVC cache: what the points needed (the processed data,
    # the conv model) crossed over once, the raw data never; the rest of the cache is what the
    # points made themselves.
    landed_rows = df[df["status"] == "ok"]
    fetched = sorted(landed_rows["fetched_MB"])
    cache = scratch / "dvc-cache"
    assert fetched[0] == 0 and fetched[1] > 0  # the second point found the first one's pull
    assert fetched[1] <= cache_mb(cache) < fetched[1] + 5
    found = outputs_in(cache, project)
    assert {"data/processed", "models/conv.npz"} <= found and "data/raw" not in found
    for col in ("clone_s", "fetch_s", "run_s", "push_s"):
        assert (landed_rows[col] >= 0).all(), col

    listed = run([BIN / "dvc", "exp", "list", "origin", "--name-only"], project, env).stdout
    assert sorted(listed.split()) == ["a-00", "a-01"]

    # The same points on a LocalCluster give the same metrics.
    b = sweep(project, env, write_sweep(base, "b", grid), "--workers", "2", check_rc=1)
    assert "b-02: FAILED: train_dense.lr: OneCycle: max_lr must be in" in b.stdout
    metrics = [c for c in table(project, "a").columns if c.startswith(("dense.", "conv."))]
    by_a = table(project, "a").set_index("train_dense.lr")[metrics]
    by_b = table(project, "b").set_index("train_dense.lr")[metrics]
    pd.testing.assert_frame_equal(by_a.sort_index(), by_b.sort_index())

    # A fresh clone pulls the experiments, lists them with metrics, and applies one whole.
    fresh = base / "fresh"
    run(["git", "clone", "-q", "-b", "main", base / "origin.git", fresh], base, env)
    run([BIN / "dvc", "exp", "pull", "origin", "a-00", "a-01", "b-00", "b-01"], fresh, env)
    shown = json.dumps(json.loads(run([BIN / "dvc", "exp", "show", "--json"], fresh, env).stdout))
    for name in ("a-00", "a-01", "b-00", "b-01"):
        assert f'"name": "{name}"' in shown
    run([BIN / "dvc", "exp", "apply", "a-00"], fresh, env | IDENTITY)
    applied = json.loads((fresh / "reports" / "metrics.json").read_text())
    row = df.set_index("experiment").loc["a-00"]
    assert applied["dense"]["accuracy"] == row["dense.accuracy"]
    assert (fresh / "models" / "dense.npz").exists()

    # A rerun skips what landed and retries only the failed point.
    before = landed(project)
    again = sweep(project, env, base / "a.yaml", "--scheduler", cluster, check_rc=1)
    assert "2 point(s) already on origin: skipped" in again.stdout
    assert "1 to run" in again.stdout and landed(project) == before


def test_a_worker_killed_mid_point_reruns_it_elsewhere(project, cluster, env, base):
    from distributed import Client

    scratch = base / "scratch-k"
    path = write_sweep(base, "k", {"train_dense.lr": [0.03]})
    cmd = [BIN / "python", "-m", "sweep", path, "--scheduler", cluster, "--scratch", scratch,
           "--interval", "2"]  # fmt: skip
    with background(cmd, project, env) as driver:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            found = [s for s in scratch.glob("k-00-*/status") if s.read_text() == "run\n"]
            if found:
                status = found[0]
                break
            time.sleep(0.05)
        assert status is not None, "the point never reached dvc exp run"
        with Client(cluster, timeout="30s") as client:
            (addr,) = [a for a, ks in client.processing().items() if any("k-00" in k for k in ks)]
            pid = client.run(os.getpid, workers=[addr])[addr]
            os.kill(pid, signal.SIGKILL)
            out, _ = driver.communicate(timeout=300)
            client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    assert driver.returncode == 0, out
    assert "k-00: landed" in out
    # The killed attempt's processes died with the worker (its group), and the rerun removed its
    # clone: only the host's shared DVC cache is left in scratch. It pushed nothing (one k-00).
    killed = status.parent
    assert not killed.exists() and not processes_in(scratch / "dvc-cache")
    assert sorted(p.name for p in scratch.iterdir()) == ["dvc-cache", "dvc-cache.lock"]
    listed = run([BIN / "dvc", "exp", "list", "origin", "--name-only"], project, env).stdout
    assert listed.split().count("k-00") == 1
    fresh = base / "fresh-k"
    run(["git", "clone", "-q", "-b", "main", base / "origin.git", fresh], base, env)
    run([BIN / "dvc", "exp", "pull", "origin", "k-00"], fresh, env)  # refs and cache, whole


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
