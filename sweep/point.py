"""One sweep point, start to finish, in a scratch clone: the work a Dask task hands to a process.

    clone origin at the baseline -> pull only what the stages that rerun need -> dvc exp run
    -n NAME -S ... -> dvc exp push origin NAME -> check that origin holds exactly this experiment

What a point pulls: the stages it will rerun are those whose params sections it changes, and every
stage downstream of them (read from ``dvc.yaml``); it pulls the cached outputs of the other stages
that those read, and nothing else (``needed_outputs``), then runs with ``--allow-missing`` so the
stages it skips stay skipped without their data. Points on one host share one DVC cache
(``SCRATCH/dvc-cache``, files linked into each clone), and pull under a host-wide lock: a file
crosses the network once per host. Each point reports its seconds in clone, fetch, run and push,
and the bytes its pull brought into the cache.

``run(job)`` (the Dask task) clones, then starts ``python -m sweep.point`` from the clone (the
baseline's own code) in a session of its own and waits for its one line of JSON. That process asks
the kernel for SIGTERM when the task's thread dies, and on SIGTERM kills its whole process group
(git, dvc, the stage it is running): a worker killed mid-point leaves nothing behind that could
still push. Nothing is pushed before the experiment is complete, and the push is checked against
origin, so a point either landed whole or not at all, and Dask's rerun of it elsewhere starts from
a clean clone.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from configobj import ConfigObj

from pipeline.params import has_key, load_yaml, lookup
from sweep import git
from sweep.metrics import read as read_metrics

PR_SET_PDEATHSIG = 1


def run(job: dict) -> dict:
    """The Dask task: clone the baseline into scratch space, then run the rest of the point in a
    child process started from that clone, so the point runs the baseline's own ``sweep`` code
    whatever checkout the worker's environment was installed from. Returns the result dict."""
    start = time.monotonic()
    scratch = Path(job.get("scratch") or tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    remove_stale(scratch)
    work = Path(tempfile.mkdtemp(prefix=f"{job['name']}-", dir=scratch))
    repo = work / "repo"
    try:
        claim(work)
        (work / "status").write_text("clone\n")
        clone(job["origin"], job["baseline"], repo)
        cloned = time.monotonic() - start
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweep.point", str(os.getpid())],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=point_env(job.get("env", {})),
            start_new_session=True,
        )
        claim(work, proc.pid)  # its session's group: git, dvc and the stage it runs
        cache = str(scratch / "dvc-cache")
        out, err = proc.communicate(json.dumps(job | {"work": str(work), "cache": cache}))
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            detail = last_line(err) or f"exited with {proc.returncode}"
            return failed(job, f"the point's process failed: {detail}", time.monotonic() - start)
        result = json.loads(lines[-1])
        result["seconds"] = round(time.monotonic() - start, 1)
        if "timing" in result:
            result["timing"]["clone"] = round(cloned, 2)
        return result
    except (PointError, OSError, subprocess.SubprocessError) as e:
        return failed(job, str(e), time.monotonic() - start)
    finally:
        if not job.get("keep"):
            shutil.rmtree(work, ignore_errors=True)


OWNER = "owner"  # in a point's scratch folder: "HOST PID [GROUP]", the task and its point's group


def claim(work: Path, group: int | None = None) -> None:
    """Mark ``work`` as this task's (and, once started, its point process's group's), in one
    write: a reader sees the old line or the new one, never half of one."""
    line = f"{socket.gethostname()} {os.getpid()}" + (f" {group}" if group else "")
    (work / f"{OWNER}.tmp").write_text(line + "\n")
    os.replace(work / f"{OWNER}.tmp", work / OWNER)


def remove_stale(scratch: Path, wait: float = 30.0) -> None:
    """Remove the scratch folders of points whose task died on this host (a worker killed
    mid-point leaves its clone: the next attempt or the next sweep on this host removes it).

    The point's processes die with the task (``die_with_parent``) but not at once: the rerun can
    start here within milliseconds of the kill, while the old ``dvc exp run`` still writes into
    its clone. So a folder is removed only once its point's process group has ended (waiting up
    to ``wait`` s, else left for a later point), and its owner file goes last: a removal cut
    short leaves a folder that the next point still finds."""
    host = socket.gethostname()
    for owner in scratch.glob(f"*/{OWNER}"):
        try:
            where, task, *group = owner.read_text().split()
            task, group = int(task), int(group[0]) if group else None
        except (OSError, ValueError):
            continue
        if where == host and not alive(task) and (group is None or ended(group, wait)):
            remove_owner_last(owner)


def remove_owner_last(owner: Path) -> None:
    """Remove the folder of ``owner``, that file last, and only once nothing else is left in it.
    Another point on this host may be removing it too: whatever is already gone is skipped."""
    folder = owner.parent
    try:
        for child in folder.iterdir():
            if child.name == OWNER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if [child.name for child in folder.iterdir()] == [OWNER]:
            owner.unlink()
            folder.rmdir()
    except OSError:
        pass  # removed by another point meanwhile, or left for the next one


def ended(group: int, wait: float) -> bool:
    """Whether process group ``group`` has ended, waiting up to ``wait`` s for that."""
    deadline = time.monotonic() + wait
    while running(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def running(group: int) -> bool:
    """Whether a process of group ``group`` still runs (a zombie does not: see ``alive``)."""
    if not PROC.is_dir():
        return signal_reaches(os.killpg, group)
    return any(pgrp == group and state != "Z" for state, pgrp in map(stat, PROC.glob("[0-9]*")))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. On Linux a zombie (dead, not yet reaped by its parent)
    does not count: a killed worker stays one until its nanny reaps it, which can be after Dask
    has started the point again; and an orphan whose init reaps nothing (a container's) stays
    one for ever. Elsewhere, any process counts."""
    if not PROC.is_dir():
        return signal_reaches(os.kill, pid)
    return stat(PROC / str(pid))[0] not in ("", "Z")


PROC = Path("/proc")


def stat(proc: Path) -> tuple[str, int]:
    """``(state, process group)`` of a ``/proc/PID`` folder; ``("", 0)`` if it has gone."""
    try:  # "PID (COMMAND) STATE PPID PGRP ...": COMMAND may hold spaces and parentheses
        state, _, pgrp = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        return state, int(pgrp)
    except (OSError, IndexError, ValueError):
        return "", 0


def signal_reaches(send, target: int) -> bool:
    """Whether signal 0 sent by ``send`` (``os.kill`` or ``os.killpg``) finds ``target``."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # running, as another user
    return True


def needed_outputs(repo: Path, params: dict) -> tuple[list[str], list[str]]:
    """``(rerun, pull)``: the stages a point with these ``params.yaml`` values reruns (those whose
    params sections it changes, and everything downstream of them), and the cached outputs of the
    other stages that those read: what the point must pull, and all it must pull."""
    stages = load_yaml((repo / "dvc.yaml").read_text())["stages"]
    baseline = load_yaml((repo / "params.yaml").read_text())
    changed = {
        k.split(".")[0]
        for k, v in params.items()
        if not has_key(baseline, k) or lookup(baseline, k) != v
    }

    def sections(stage):
        out = set()
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else [k for ks in entry.values() for k in ks]
            out |= {k.split(".")[0] for k in ([keys] if isinstance(keys, str) else keys)}
        return out

    def outs(stage, cached_only):
        paths = []
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                if not cached_only or (opts or {}).get("cache", kind == "outs"):
                    paths.append(path)
        return paths

    def overlaps(a, b):
        return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")

    rerun = {name for name, st in stages.items() if sections(st) & changed}
    grew = True
    while grew:  # downstream: a stage reading an output of a stage that reruns reruns too
        made = [p for name in rerun for p in outs(stages[name], cached_only=False)]
        more = {
            name
            for name, st in stages.items()
            if name not in rerun and any(overlaps(d, p) for d in st.get("deps", []) for p in made)
        }
        grew = bool(more)
        rerun |= more
    pull = []
    for name, st in stages.items():
        if name in rerun:
            continue
        for path in outs(st, cached_only=True):
            needed = any(overlaps(d, path) for r in rerun for d in stages[r].get("deps", []))
            if needed and path not in pull:
                pull.append(path)
    return sorted(rerun), pull


def configure_dvc(repo: Path, remote: str, cache: Path) -> None:
    """The clone's ``.dvc/config.local``: the sweep's DVC remote as its default and the host's
    shared cache, files linked from it. Written in one go with configobj, DVC's own config
    format, instead of three ``dvc`` calls (a DVC start-up each, most of a point's fixed cost)."""
    config = ConfigObj(encoding="utf-8", indent_type="    ")
    config.filename = str(repo / ".dvc" / "config.local")
    config["core"] = {"remote": "sweep"}
    config["cache"] = {"dir": str(cache), "type": "reflink,hardlink,copy"}
    config['remote "sweep"'] = {"url": remote}
    config.write()


def text_or_none(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def cache_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())


def pull(repo: Path, cache: Path, targets: list[str]) -> tuple[bool, int]:
    """Pull ``targets`` into the host's shared cache (one pull at a time on this host, so a file
    is fetched once) and link them into the clone; ``(ok, bytes the cache received)``."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / "dvc-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = cache_bytes(cache)
        done = git.dvc(repo, "pull", "--quiet", *targets, check=False)
        return done.returncode == 0, cache_bytes(cache) - before


def point_env(extra: dict) -> dict:
    """The environment of a point: this Python's venv first on PATH (the stages' run.sh uses it),
    no DVC analytics, plus the job's variables (data mirrors). The stages pin their own numerics."""
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def failed(job: dict, error: str, seconds: float) -> dict:
    return {
        "name": job["name"],
        "status": "failed",
        "error": error,
        "seconds": round(seconds, 1),
        "host": socket.gethostname(),
    }


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def error_line(output: str) -> str:
    """The one line that says why ``dvc exp run`` failed: a stage's ``error:`` line if it printed
    one, else DVC's ``ERROR:`` line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("error: ", "ERROR: "):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[-1].removeprefix(prefix)
    return lines[-1] if lines else "no output"


class PointError(Exception):
    pass


def execute(job: dict) -> dict:
    """In the point's process, in the clone: pull, run, push and check; never raises."""
    start = time.monotonic()
    work = Path(job["work"])
    repo, status = work / "repo", work / "status"
    try:
        # DVC commits the experiment: a worker without a git identity gets one for this clone.
        for key, value in (("user.name", "dvc sweep"), ("user.email", "sweep@localhost")):
            if git.git(repo, "config", key, check=False).returncode != 0:
                git.git(repo, "config", key, value)
        timing, fetched, rerun, allow_missing = {}, 0, [], []
        t0 = time.monotonic()
        status.write_text("pull\n")
        if job.get("dvc_remote"):
            cache = Path(job.get("cache") or work / "cache")
            configure_dvc(repo, job["dvc_remote"], cache)
            rerun, targets = needed_outputs(repo, job["params"])
            ok, fetched = pull(repo, cache, targets) if targets else (True, 0)
            # Skip the stages that do not rerun without their data; if the pull failed, they
            # rerun from scratch instead.
            allow_missing = ["--allow-missing"] if ok else []
        timing["fetch"] = round(time.monotonic() - t0, 2)
        status.write_text("run\n")
        t0 = time.monotonic()
        done = git.dvc(
            repo, "exp", "run", *allow_missing, "-n", job["name"], *job["set"], check=False
        )
        timing["run"] = round(time.monotonic() - t0, 2)
        if done.returncode != 0:
            return failed(job, error_line(done.stdout + done.stderr), time.monotonic() - start)
        metrics = read_metrics(lambda path: text_or_none(repo / path))
        status.write_text("push\n")
        t0 = time.monotonic()
        sha = push(repo, job)
        timing["push"] = round(time.monotonic() - t0, 2)
        status.write_text("landed\n")
        return {
            "name": job["name"],
            "status": "ok",
            "sha": sha,
            "metrics": metrics,
            "seconds": round(time.monotonic() - start, 1),
            "host": socket.gethostname(),
            "timing": timing,
            "fetched_bytes": fetched,
            "rerun": rerun,
        }
    except (PointError, OSError, subprocess.SubprocessError, ValueError) as e:
        return failed(job, str(e), time.monotonic() - start)


def clone(origin: str, baseline: str, repo: Path):
    done = git.git(repo.parent, "clone", "--quiet", "--no-checkout", origin, str(repo), check=False)
    if done.returncode != 0:
        raise PointError(f"git clone {origin} failed: {last_line(done.stderr)}")
    done = git.git(repo, "checkout", "--quiet", "--detach", baseline, check=False)
    if done.returncode != 0:
        raise PointError(f"baseline {baseline[:12]} is not on {origin}: push it first")


def push(repo: Path, job: dict) -> str:
    """``dvc exp push`` and check that origin now holds this very experiment. ``dvc exp push`` can
    exit 0 having pushed nothing ("No experiments to push") when origin has a same-named
    experiment that diverged, so the check compares commits, not exit codes. If origin has one of
    the same name and the same params (another attempt of this point landed first), that one
    stands: the runs are deterministic, so it holds the same results."""
    name, baseline = job["name"], job["baseline"]
    ref = git.exp_ref(baseline, name)
    local = git.git(repo, "rev-parse", "--verify", "--quiet", ref, check=False).stdout.strip()
    if not local:
        raise PointError(f"dvc exp run made no experiment ref {ref}")
    pushed = git.dvc(repo, "exp", "push", job["origin"], name, check=False)
    remote = git.landed(repo, job["origin"], baseline).get(name)
    if remote == local:
        return local
    if remote and git.same_params(repo, job["origin"], ref, job["params"]):
        return remote
    if remote:
        raise PointError(
            f"experiment {name} did not land on origin: a different experiment of that name is "
            f"there (remove it with `dvc exp remove -g origin {name}`, or rename the sweep)"
        )
    raise PointError(
        f"experiment {name} did not land on origin: {error_line(pushed.stdout + pushed.stderr)}"
    )


def die_with_parent(parent: int):
    """Get SIGTERM when the task's thread dies (Linux), and answer it by killing the process
    group: git, dvc and the running stage go with us."""
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    die_with_parent(int(argv[0]))
    job = json.loads(sys.stdin.read())
    print(json.dumps(execute(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
