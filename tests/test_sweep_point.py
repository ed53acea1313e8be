"""Removing what a killed sweep point left in its host's scratch space (``sweep.point``), with
real processes: a point's group still writing into its clone, a task still alive, another host."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from sweep.point import OWNER, claim, remove_stale

HOST = socket.gethostname()


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()  # reaped: no process has this PID now
    return done.pid


def folder(scratch, name, *owner):
    """A point's scratch folder as ``sweep.point.run`` makes it, owned by ``owner``."""
    work = scratch / name
    (work / "repo" / ".dvc").mkdir(parents=True)
    (work / "repo" / ".dvc" / "config.local").write_text("[core]\n")
    (work / "status").write_text("run\n")
    own(work, *owner)
    return work


def own(work, *fields):
    (work / OWNER).write_text(" ".join(map(str, fields)) + "\n")


def group(work, script):
    """A process group of its own, its working directory in the clone (as the point's)."""
    return subprocess.Popen(["sh", "-c", script], cwd=work / "repo", start_new_session=True)


def zombie() -> subprocess.Popen:
    """A process that has exited and that its parent (this one) has not reaped yet: a killed
    worker before its nanny reaps it."""
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while (Path("/proc") / str(proc.pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_a_killed_points_folder_goes_only_once_its_group_has_stopped_writing(tmp_path):
    worker = zombie()
    work = folder(tmp_path, "k-00-a", HOST, worker.pid)
    # Like dvc exp run dying a second after its worker: it still makes folders in the clone.
    writer = group(work, "sleep 1; mkdir -p late/dir && echo x > late/dir/file")
    own(work, HOST, worker.pid, writer.pid)
    start = time.monotonic()
    remove_stale(tmp_path)
    # The writer exited (a zombie until we reap it: that counts as ended) before the removal.
    assert writer.poll() == 0 and time.monotonic() - start >= 0.9
    assert not work.exists()
    worker.wait()
    writer.wait()


def test_live_tasks_other_hosts_and_groups_that_outlive_the_wait_keep_their_folders(tmp_path):
    live = folder(tmp_path, "a-00-x", HOST, os.getpid())
    elsewhere = folder(tmp_path, "a-01-x", "another-host", dead_pid())
    unreadable = folder(tmp_path, "a-02-x", HOST)
    stuck = folder(tmp_path, "a-03-x")
    sleeper = group(stuck, "exec sleep 30")
    own(stuck, HOST, dead_pid(), sleeper.pid)
    cloning = folder(tmp_path, "a-04-x", HOST, dead_pid())  # killed before its point began
    try:
        remove_stale(tmp_path, wait=0.3)
        assert live.exists() and elsewhere.exists() and unreadable.exists()
        assert (stuck / OWNER).exists() and (stuck / "repo").exists()  # left for a later point
        assert not cloning.exists()
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)
        sleeper.wait()
    remove_stale(tmp_path, wait=0.3)  # the later point: the group has ended now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-00-x", "a-01-x", "a-02-x"]


def test_a_claim_names_this_task_and_then_its_points_group(tmp_path):
    claim(tmp_path)
    assert (tmp_path / OWNER).read_text() == f"{HOST} {os.getpid()}\n"
    claim(tmp_path, 4242)
    assert (tmp_path / OWNER).read_text() == f"{HOST} {os.getpid()} 4242\n"
    assert [p.name for p in tmp_path.iterdir()] == [OWNER]
