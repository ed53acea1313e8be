"""One sweep point, start to finish, in a scratch clone: the work a Dask task hands to a process.

    clone origin at the baseline -> dvc pull (best effort) -> dvc exp run -n NAME -S ...
    -> dvc exp push origin NAME -> check that origin holds exactly this experiment

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

from sweep import git

PR_SET_PDEATHSIG = 1


def run(job: dict) -> dict:
    """The Dask task: clone the baseline into scratch space, then run the rest of the point in a
    child process started from that clone, so the point runs the baseline's own ``sweep`` code
    whatever checkout the worker's environment was installed from. Returns the result dict."""
    start = time.monotonic()
    scratch = Path(job.get("scratch") or tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{job['name']}-", dir=scratch))
    repo = work / "repo"
    try:
        (work / "status").write_text("clone\n")
        clone(job["origin"], job["baseline"], repo)
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
        out, err = proc.communicate(json.dumps(job | {"work": str(work)}))
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            detail = last_line(err) or f"exited with {proc.returncode}"
            return failed(job, f"the point's process failed: {detail}", time.monotonic() - start)
        result = json.loads(lines[-1])
        result["seconds"] = round(time.monotonic() - start, 1)
        return result
    except (PointError, OSError, subprocess.SubprocessError) as e:
        return failed(job, str(e), time.monotonic() - start)
    finally:
        if not job.get("keep"):
            shutil.rmtree(work, ignore_errors=True)


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
        if job.get("dvc_remote"):
            git.dvc(repo, "remote", "add", "--local", "--force", "-d", "sweep", job["dvc_remote"])
        status.write_text("pull\n")
        git.dvc(repo, "pull", "--quiet", check=False)
        status.write_text("run\n")
        done = git.dvc(repo, "exp", "run", "-n", job["name"], *job["set"], check=False)
        if done.returncode != 0:
            return failed(job, error_line(done.stdout + done.stderr), time.monotonic() - start)
        metrics = json.loads((repo / "reports" / "metrics.json").read_text())
        status.write_text("push\n")
        sha = push(repo, job)
        status.write_text("landed\n")
        return {
            "name": job["name"],
            "status": "ok",
            "sha": sha,
            "metrics": metrics,
            "seconds": round(time.monotonic() - start, 1),
            "host": socket.gethostname(),
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
