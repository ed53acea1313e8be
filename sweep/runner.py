"""Run a sweep on Dask: plan the points, submit one task per point, follow them, tabulate.

Every point is an ordinary DVC experiment of the current commit (the baseline), run in a scratch
clone of the git remote on whichever worker Dask picks and pushed back to that remote, so
``dvc exp show``, ``dvc exp apply``, VS Code and Studio see it like any other. The remote is the
single record of what is done: a rerun of the same sweep skips the points that landed there.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.datasets import absolute_mirrors
from pipeline.params import load_yaml, lookup
from sweep import git, metrics, point, report, search, spec


class SweepError(Exception):
    """A problem with the project or the command line; the message says what to do."""


@dataclass
class Project:
    """Where the sweep runs from (the user's clone) and where its points go."""

    root: Path
    baseline: str
    remote: str
    origin: str  # the remote's URL, absolute if it is a local path
    dvc_remote: str | None
    params: dict


def project(cwd: Path, remote: str) -> Project:
    top = git.git(cwd, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0:
        raise SweepError(f"{cwd}: not inside a git repository")
    root = Path(top.stdout.strip())
    baseline = git.git(root, "rev-parse", "HEAD").stdout.strip()
    url = git.git(root, "remote", "get-url", remote, check=False)
    if url.returncode != 0:
        raise SweepError(f"no git remote {remote!r}: add one (git remote add {remote} URL)")
    origin = absolute_url(url.stdout.strip(), root)
    fetched = git.git(root, "fetch", "--quiet", remote, check=False)
    if fetched.returncode != 0:
        raise SweepError(f"git fetch {remote} failed: {point.last_line(fetched.stderr)}")
    on_remote = git.git(
        root, "for-each-ref", "--contains", baseline, f"refs/remotes/{remote}", check=False
    )
    if not on_remote.stdout.strip():
        raise SweepError(
            f"the baseline {baseline[:12]} (HEAD) is not on {remote}: the workers clone it from "
            f"there (git push {remote})"
        )
    params = load_yaml(git.git(root, "show", f"{baseline}:params.yaml").stdout)
    return Project(root, baseline, remote, origin, default_dvc_remote(root), params)


def absolute_url(url: str, root: Path) -> str:
    """Local paths made absolute (workers run elsewhere); URLs as they are."""
    if "://" in url or (":" in url and not url.startswith(("/", "."))):
        return url
    return str((root / url).resolve())


def default_dvc_remote(root: Path) -> str | None:
    """The URL of the project's default DVC remote (local config included), if there is one."""
    name = git.dvc(root, "remote", "default", check=False).stdout.strip()
    if not name:
        return None
    url = git.dvc(root, "config", f"remote.{name}.url", check=False).stdout.strip()
    if not url:
        return None
    if "://" in url or os.path.isabs(url):
        return url
    # A relative path is relative to the config file that set it; both live in .dvc/.
    return str((root / ".dvc" / url).resolve())


@dataclass
class Progress:
    """Counts and a time-left estimate: the rounds left (points not finished over worker slots)
    times the mean point time, less the time since the last point finished."""

    total: int
    slots: int
    start: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: list[float] = field(default_factory=list)
    last: float | None = None  # when a point last finished

    def record(self, result: dict, now: float | None = None):
        if result["status"] == "ok":
            self.done += 1
            self.seconds.append(result["seconds"])
            self.last = time.monotonic() if now is None else now
        elif result["status"] == "skipped":
            self.skipped += 1
        else:
            self.failed += 1

    def eta(self, now: float) -> float | None:
        left = self.total - self.done - self.failed - self.skipped
        if not self.seconds or not left:
            return None
        mean = sum(self.seconds) / len(self.seconds)
        return max(math.ceil(left / max(self.slots, 1)) * mean - (now - self.last), 0.0)

    def line(self, running: int, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        left = self.total - self.done - self.failed - self.skipped
        queued = max(left - running, 0)
        eta = self.eta(now)
        text = (
            f"{self.done + self.skipped + self.failed}/{self.total} finished "
            f"({self.done} ran, {self.skipped} skipped, {self.failed} failed), "
            f"{running} running, {queued} queued; {duration(now - self.start)} elapsed"
        )
        return text + (f", about {duration(eta)} left" if eta is not None else "")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def plan(proj: Project, sweep: spec.Sweep, say) -> tuple[list[spec.Point], list[dict]]:
    """Split the points into those to run and results for those already settled on the remote:
    landed with the same params (skipped), or a different experiment under the same name."""
    landed = git.landed(proj.root, proj.origin, proj.baseline)
    todo, settled = [], []
    for p in sweep.points():
        if p.name not in landed:
            todo.append(p)
            continue
        ref = git.exp_ref(proj.baseline, p.name)
        if git.same_params(proj.root, proj.origin, ref, p.params):
            settled.append({"name": p.name, "status": "skipped", "sha": landed[p.name]})
        else:
            error = (
                f"{proj.remote} has a different experiment named {p.name} (other params): "
                f"remove it (dvc exp remove -g {proj.remote} {p.name}) or rename the sweep"
            )
            settled.append({"name": p.name, "status": "failed", "error": error, "seconds": 0.0})
    if settled:
        skipped = sum(r["status"] == "skipped" for r in settled)
        say(f"{skipped} point(s) already on {proj.remote}: skipped")
    return todo, settled


def job(proj: Project, p: spec.Point, scratch: str | None) -> dict:
    env = absolute_mirrors()
    return {
        "name": p.name,
        "params": p.params,
        "set": p.set_args(),
        "origin": proj.origin,
        "baseline": proj.baseline,
        "dvc_remote": proj.dvc_remote,
        "env": env,
        "scratch": scratch,
    }


def connect(scheduler: str | None, workers: int | None):
    """A client of the given scheduler, or of a LocalCluster: one single-threaded worker process
    per core (the stages pin one BLAS thread each)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except OSError as e:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    return Client(cluster), cluster


def execute(
    client, jobs: list[dict], progress: Progress, say, interval: float, more=None, done=None
) -> list[dict]:
    """Submit one task per job and report as they finish; a task that raised counts as failed.
    A search passes ``more()`` (the next job, or None: the budget is spent), called whenever a
    task finishes, and ``done(result)``, called for each finished task before that."""
    from distributed import wait

    token = uuid.uuid4().hex[:8]
    futures, keys = {}, set()

    def submit(j):
        f = client.submit(point.run, j, key=f"{j['name']}-{token}", pure=False)
        futures[f] = j
        keys.add(f.key)
        return f

    pending, results, last = {submit(j) for j in jobs}, [], 0.0
    try:
        while pending:
            try:
                finished = wait(pending, timeout=interval, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                finished = set()
            for f in sorted(finished, key=lambda f: futures[f]["name"]):
                pending.discard(f)
                result = task_result(f, futures[f])
                results.append(result)
                progress.record(result)
                say(describe(result))
                if done is not None:
                    done(result)
                if more is not None and (j := more()) is not None:
                    pending.add(submit(j))
            now = time.monotonic()
            if finished or now - last >= interval:
                # Workers take tasks ahead of time: at most one runs per worker thread.
                assigned = sum(k in keys for ks in client.processing().values() for k in ks)
                say(progress.line(min(assigned, len(pending), progress.slots), now))
                last = now
    except KeyboardInterrupt:
        client.cancel(list(pending))
        raise
    return results


def task_result(future, j: dict) -> dict:
    try:
        return future.result()
    except Exception as e:  # KilledWorker, a lost scheduler, a worker without our code
        message = point.last_line(str(e)) or type(e).__name__
        return point.failed(j, f"{type(e).__name__}: {message}", 0.0)


def describe(result: dict) -> str:
    where = f" on {result['host']}" if result.get("host") else ""
    if result["status"] == "ok":
        return f"{result['name']}: landed ({duration(result['seconds'])}{where})"
    return f"{result['name']}: FAILED: {result['error']}"


def gather(
    proj: Project, sweep: spec.Sweep, points: list[spec.Point], results: list[dict]
) -> list[dict]:
    """Every point's row, its metrics read back from the remote (the record of what landed);
    the landed experiments are then fetched so that ``dvc exp show`` lists them here."""
    by_name = {r["name"]: r for r in results}
    landed = git.landed(proj.root, proj.origin, proj.baseline)
    names = [p.name for p in points if p.name in landed]
    if names:
        refs = [git.exp_ref(proj.baseline, n) for n in names]
        git.git(proj.root, "fetch", "--quiet", "--no-tags", proj.origin, *refs)
    rows = []
    for p in points:
        r = dict(by_name.get(p.name, {"name": p.name, "status": "failed", "error": "not run"}))
        r["params"] = p.params
        if r["status"] in ("ok", "skipped"):
            if p.name in landed:
                r["metrics"] = metrics.read(git.file_at(proj.root, landed[p.name]))
            else:
                r |= {"status": "failed", "error": f"not on {proj.remote} after the sweep"}
        rows.append(r)
    if names:
        git.dvc(proj.root, "exp", "pull", "--no-cache", proj.remote, *names, check=False)
    return rows


def landed_search_points(proj: Project, sweep: spec.Sweep, say) -> list[tuple[int, dict, float]]:
    """The search's points on the remote, ``(number, params, metric)``: the optimizer's record.
    A point of this name with other fixed (``set``) values is a different sweep: an error."""
    landed = git.landed(proj.root, proj.origin, proj.baseline)
    ours = {n: sha for n, sha in landed.items() if search.index_of(sweep, n) is not None}
    if not ours:
        return []
    refs = [git.exp_ref(proj.baseline, n) for n in ours]
    git.git(proj.root, "fetch", "--quiet", "--no-tags", proj.origin, *refs)
    out = []
    for name, sha in sorted(ours.items()):
        params = load_yaml(git.git(proj.root, "show", f"{sha}:params.yaml").stdout)
        if any(lookup(params, k) != v for k, v in sweep.fixed.items()):
            raise SweepError(
                f"{proj.remote} has an experiment named {name} with other `set` values: remove "
                f"it (dvc exp remove -g {proj.remote} {name}) or rename the sweep"
            )
        value = metrics.read(git.file_at(proj.root, sha)).get(sweep.metric)
        values = {k: lookup(params, k) for k in sweep.distributions}
        out.append((search.index_of(sweep, name), values, value))
    say(f"{len(out)} point(s) of this search already on {proj.remote}: the optimizer resumes")
    return out


def run_points(proj, sweep, args, say) -> list[dict]:
    """A grid and/or random sweep: run the points not on the remote yet; every point's row."""
    points = sweep.points()
    todo, settled = plan(proj, sweep, say)
    results = list(settled)
    if todo:
        client, cluster = connect(args.scheduler, args.workers)
        try:
            slots = sum(client.nthreads().values())
            say(f"{len(todo)} to run on {slots} worker thread(s) ({client.scheduler.address})")
            progress = Progress(len(points), slots)
            for r in settled:
                progress.record(r)
            jobs = [job(proj, p, args.scratch) for p in todo]
            results += execute(client, jobs, progress, say, args.interval)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return gather(proj, sweep, points, results)


def run_search(proj, sweep, args, say) -> tuple[list[spec.Point], list[dict]]:
    """Ask, run and tell until the budget is spent; returns every point (landed before, and
    asked now) and this run's results."""
    study = search.Search(sweep)
    before = landed_search_points(proj, sweep, say)
    study.resume(before)
    points = [
        spec.Point(f"{sweep.name}-{n:0{study.width()}d}", sweep.fixed | values)
        for n, values, _ in sorted(before, key=lambda t: t[0])
    ]
    left = sweep.search.trials - len(before)
    results = [{"name": p.name, "status": "skipped"} for p in points]
    if left <= 0:
        say(f"the budget of {sweep.search.trials} trials is spent")
        return points, results
    client, cluster = connect(args.scheduler, args.workers)
    try:
        slots = sum(client.nthreads().values())
        parallel = min(sweep.search.parallel or slots, left)
        say(f"{left} trial(s) to run, {parallel} at a time ({client.scheduler.address})")
        progress = Progress(sweep.search.trials, min(parallel, slots))
        for r in results:
            progress.record(r)
        asked = []

        def more():
            if len(asked) >= left:
                return None
            p = study.ask()
            asked.append(p)
            points.append(p)
            return job(proj, p, args.scratch)

        def done(result):
            measured = metrics.flatten(result.get("metrics") or {})
            ok = result["status"] == "ok"
            study.tell(result["name"], measured.get(sweep.metric) if ok else None)

        first = [more() for _ in range(parallel)]
        results += execute(client, first, progress, say, args.interval, more, done)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return points, results


def check_metric(proj: Project, sweep: spec.Sweep):
    """The target metric must be one the baseline's metrics files have, when it has them."""
    known = metrics.read(git.file_at(proj.root, proj.baseline))
    if known and sweep.metric not in known:
        raise SweepError(
            f"metric: {sweep.metric!r} is not in {metrics.METRICS} or the training curves' "
            f"metrics.json (they have: {', '.join(sorted(known))})"
        )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m sweep",
        description="Run a sweep file's points as DVC experiments on Dask, pushed to a git remote.",
    )
    ap.add_argument("sweep_file", help="a sweep file, e.g. sweeps/lr.yaml")
    ap.add_argument("--scheduler", help="a running Dask scheduler, e.g. tcp://host:8786")
    ap.add_argument("--workers", type=int, help="LocalCluster workers (default: one per core)")
    ap.add_argument("--remote", default="origin", help="git remote to push to (origin)")
    ap.add_argument("--scratch", help="where workers clone points (default: their temp dir)")
    ap.add_argument("--out", default="reports/sweeps", help="folder for the result tables")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between updates")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    # Ctrl-C, and SIGTERM from a batch system or `timeout`, stop the sweep cleanly (also when the
    # shell started us with SIGINT ignored, as it does for background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def say(message: str):
        print(f"sweep: {message}", flush=True)

    try:
        proj = project(Path.cwd(), args.remote)
        sweep = spec.load(args.sweep_file, proj.params)
        check_metric(proj, sweep)
        if args.workers is not None and args.workers < 1:
            raise SweepError(f"--workers: {args.workers} must be at least 1")
        if args.interval <= 0:
            raise SweepError(f"--interval: {args.interval} must be positive (seconds)")
        dirty = git.git(proj.root, "status", "--porcelain", "--untracked-files=no").stdout
        if dirty.strip():
            say(f"uncommitted changes are not part of the sweep: points run {proj.baseline[:12]}")
        count = sweep.search.trials if sweep.search else len(sweep.points())
        say(
            f"{sweep.name}: {count} points of {proj.baseline[:12]}, pushed to {proj.remote} "
            f"({proj.origin}); DVC remote: {proj.dvc_remote or 'none (stages run from scratch)'}"
        )
        if sweep.search is not None:
            points, results = run_search(proj, sweep, args, say)
            rows = gather(proj, sweep, points, results)
        else:
            rows = run_points(proj, sweep, args, say)
    except (SweepError, spec.SpecError, subprocess.SubprocessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("interrupted: points that landed are kept; run the same command to do the rest")
        return 130

    df = report.table(sweep, rows)
    out = Path(args.out)
    if not out.is_absolute():
        out = proj.root / out
    paths = report.write(sweep, df, out)
    say("wrote " + ", ".join(os.path.relpath(p, proj.root) for p in paths))
    top = report.best(sweep, df)
    failed = int((df["status"] == "failed").sum())
    if top is not None:
        values = ", ".join(f"{k}={top[k]}" for k in sweep.swept)
        say(f"best: {top['experiment']} ({values}): {sweep.metric} = {top[sweep.metric]:.6g}")
        say(
            f"apply it: dvc exp pull {proj.remote} {top['experiment']} && "
            f"dvc exp apply {top['experiment']}"
        )
    if failed:
        say(f"{failed} point(s) failed (see the error column); rerun to retry them")
    return 1 if failed else 0
