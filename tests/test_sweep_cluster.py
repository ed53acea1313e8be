"""The sweep runner on a hand-started cluster: a ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, started and stopped here, with the project, git and DVC remotes and
helpers of ``test_sweep`` (a file of its own so that ``make test`` runs it beside that one)."""

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import test_sweep
from conftest import BIN, IDENTITY, run, stop
from test_sweep import (
    background,
    cache_mb,
    landed,
    outputs_in,
    processes_in,
    sweep,
    table,
    write_sweep,
)

# test_sweep's fixtures, set up again for this module: its own project, origin and DVC remote.
base, env, project = test_sweep.base, test_sweep.env, test_sweep.project

pytestmark = pytest.mark.slow


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
    assert not killed.exists() and not processes_in(scratch)
    assert sorted(p.name for p in scratch.iterdir()) == ["dvc-cache", "dvc-cache.lock"]
    listed = run([BIN / "dvc", "exp", "list", "origin", "--name-only"], project, env).stdout
    assert listed.split().count("k-00") == 1
    fresh = base / "fresh-k"
    run(["git", "clone", "-q", "-b", "main", base / "origin.git", fresh], base, env)
    run([BIN / "dvc", "exp", "pull", "origin", "k-00"], fresh, env)  # refs and cache, whole
