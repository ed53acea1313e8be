"""The lab: real DVC experiments of a repository, started, watched, cancelled, compared, applied
and pushed on a learner's behalf (the web app's ``/api/experiments``).

An experiment is queued with ``dvc exp run --queue -n NAME -S key=value ...`` and run by DVC's
own queue worker (``dvc queue start``) in a temporary copy under ``.dvc/tmp/exps``: the
workspace's files and git state are not touched, and what DVC knows (``dvc exp show --json``,
``dvc queue status``) is the one record, so a restarted server shows every finished, failed and
queued experiment. The settings are checked before anything is queued, by the parsers the stages
use (``pipeline.params``) and by building the model and optimizer they describe
(``pipeline.models``), so a bad value is one line naming its key and nothing starts.

While an experiment runs, its training stage writes each epoch's values through DVCLive in the
temporary copy; :func:`curves` reads them from there (the copy's folder is in ``dvc exp show``'s
executor record), from the experiment's commit once it is done.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError, first_line
from pipeline.models import build_model, make_optimizer, params_errors
from pipeline.params import (
    TRAIN_PARAMS,
    FetchParams,
    PlotParams,
    PreprocessParams,
    check_keys,
    load_yaml,
    parse_section,
    set_args,
)
from pipeline.paths import HISTORY_METRICS, MODEL_KINDS
from pipeline.revisions import git_show

__all__ = ["Caps", "check_settings", "queue", "experiments", "curves", "confusion", "DvcCommand"]

SECTIONS = {
    "fetch": FetchParams,
    "preprocess": PreprocessParams,
    "train_dense": TRAIN_PARAMS["dense"],
    "train_conv": TRAIN_PARAMS["conv"],
    "plot": PlotParams,
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # a git ref component, and short
STATES = {None: "done", "success": "done", "queued": "queued", "running": "running"}


@dataclasses.dataclass(frozen=True)
class Caps:
    """What one experiment may ask for, and how many may wait: stated by the server."""

    max_epochs: int = 30
    max_train_size: int = 55_000
    max_queued: int = 4  # queued and running experiments at once
    jobs: int = 1  # experiments run at the same time (DVC queue workers)


def _set(params: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    node = params
    for p in parents:
        node = node[p]
    node[key] = value


def check_settings(params_text: str, settings: dict, caps: Caps) -> dict:
    """The workspace's ``params.yaml`` (its text) with ``settings`` (dotted keys) applied, parsed
    as the stages parse it and checked against ``caps``; PipelineError naming the key otherwise.
    Returns the parsed sections."""
    if not isinstance(settings, dict) or not settings:
        raise PipelineError('"params" must be a non-empty mapping of dotted keys to values')
    params = load_yaml(params_text)
    check_keys("params", settings, params)
    for key, value in settings.items():
        _set(params, key, value)
    parsed = {name: parse_section(cls, params[name], name) for name, cls in SECTIONS.items()}
    for kind in MODEL_KINDS:
        p, subset = parsed[f"train_{kind}"], getattr(parsed["preprocess"], kind)
        if p.epochs > caps.max_epochs:
            raise PipelineError(
                f"train_{kind}.epochs: at most {caps.max_epochs} here (--max-epochs), "
                f"got {p.epochs}"
            )
        size = subset.train_size
        if size is not None and size > caps.max_train_size:
            raise PipelineError(
                f"preprocess.{kind}.train_size: at most {caps.max_train_size} here "
                f"(--max-train-size), got {size}"
            )
        with params_errors(f"train_{kind}"):  # the library's own ranges, as training meets them
            model = build_model(kind, p, len(subset.classes), np.random.default_rng(0))
            make_optimizer(p, 1)
            del model
    return parsed


class DvcCommand:
    """``dvc`` commands in ``repo``, each bounded in time, failures as one line. This Python's
    scripts come first on PATH: DVC's queue workers start ``dvc`` from PATH, and they must run
    this environment's."""

    def __init__(self, repo, timeout: float = 120.0):
        self.repo, self.timeout = Path(repo), timeout
        scripts = str(Path(sys.executable).parent)
        self.env = os.environ | {"PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}

    def __call__(self, *args: str) -> str:
        # Output goes to unnamed files, not pipes: ``dvc queue start`` leaves a worker running
        # that inherits them, and a pipe would stay open (and this call wait) until it exits.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                done = subprocess.run(
                    ["dvc", *args], cwd=self.repo, env=self.env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, timeout=self.timeout, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise PipelineError(f"dvc {args[0]}: no answer in {self.timeout:g} s") from None
            except FileNotFoundError:
                raise PipelineError("dvc: not installed beside this Python (make venv)") from None
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if done.returncode != 0:
            lines = [line for line in stderr.splitlines() if line.startswith("ERROR")]
            detail = lines[0] if lines else first_line(stderr) or f"exit {done.returncode}"
            raise PipelineError(f"dvc {' '.join(args[:2])}: {detail.removeprefix('ERROR: ')}")
        return stdout


def queue(dvc: DvcCommand, name: str | None, settings: dict, jobs: int) -> str:
    """Queue the experiment and make sure ``jobs`` queue workers run; returns its name."""
    if name is not None and not NAME.fullmatch(name):
        raise PipelineError(
            f"name: letters, digits, '-' and '_', at most 40, starting with a letter or digit; "
            f"got {name!r}"
        )
    out = dvc("exp", "run", "--queue", *(["-n", name] if name else []), *set_args(settings))
    match = re.search(r"Queued experiment '([^']+)'", out)
    if not match:
        raise PipelineError(f"dvc exp run --queue: unexpected answer {first_line(out)!r}")
    status = dvc("queue", "status")
    workers = re.search(r"Worker status: (\d+) active, (\d+) idle", status)
    have = int(workers.group(1)) + int(workers.group(2)) if workers else 0
    if have < jobs:
        dvc("queue", "start", "-j", str(jobs - have))
    return match.group(1)


def _flatten(data, prefix="") -> dict:
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for k, v in data.items():
        out |= _flatten(v, f"{prefix}{k}.")
    return {k.rstrip("."): v for k, v in out.items()}


def _params(data: dict) -> dict:
    """An ``exp show`` entry's ``params.yaml`` values under dotted keys."""
    return _flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})


def _error_line(log: str | None) -> str | None:
    """The stage's one-line error in a queue worker's log (``error: key: ...``), else DVC's."""
    if not log or not os.path.isfile(log):
        return None
    lines = Path(log).read_text(errors="replace").splitlines()
    ours = [line for line in lines if line.startswith("error: ")]
    theirs = [line for line in lines if line.startswith("ERROR: ")]
    return (ours or theirs or [None])[-1]


def experiments(dvc: DvcCommand) -> list[dict]:
    """The experiments of the workspace's commit, newest first: ``name``, ``rev``, ``state``
    (queued, running, done, failed), ``error`` (a failure's line), ``params`` (the values that
    differ from the commit's), ``metrics`` (``reports/metrics.json``), ``log`` and ``root`` (a
    queued or running one's log and folder), ``started`` (when it began running)."""
    for attempt in range(4):  # DVC fails now and then while a worker sets up its temp copy
        try:
            rows = json.loads(dvc("exp", "show", "--json", "--num", "1"))
            break
        except PipelineError:
            if attempt == 3:
                raise
            time.sleep(0.5)
    base = next((r for r in rows if r.get("rev") != "workspace"), None)
    if base is None:
        return []
    baseline = _params(base.get("data") or {})
    out = []
    for exp in base.get("experiments") or []:
        rev = (exp.get("revs") or [{}])[0]
        data = rev.get("data") or {}
        executor = exp.get("executor") or {}
        local = executor.get("local") or {}
        state = STATES.get(executor.get("state"), "failed")
        params = _params(data)
        metrics = (data.get("metrics") or {}).get("reports/metrics.json", {}).get("data", {})
        log = local.get("log")
        pid = log and Path(log).with_suffix(".pid")  # written once, as the run starts
        started = pid.stat().st_mtime if pid and pid.is_file() else None
        out.append(
            {
                "name": exp.get("name") or rev.get("name"),
                "rev": rev.get("rev"),
                "state": state,
                "error": _error_line(log) if state == "failed" else None,
                "params": {k: v for k, v in params.items() if baseline.get(k) != v},
                "metrics": metrics if state == "done" else {},
                "log": log if state in ("queued", "running") else None,
                "root": local.get("root") if state == "running" else None,
                "started": started,
                "elapsed": round(time.time() - started, 1)
                if started and state == "running"
                else None,
                "baseline": base.get("rev"),
            }
        )
    return out


def _rows(text: str) -> list[list[float]]:
    """``step<TAB>value`` rows of a DVCLive ``.tsv``, as ``[epoch, value]``."""
    out = []
    for row in list(csv.reader(io.StringIO(text), delimiter="\t"))[1:]:
        if len(row) == 2:
            out.append([int(row[0]) + 1, float(row[1])])
    return out


def curves(repo, exp: dict) -> dict:
    """``{model: {metric: [[epoch, value], ...]}}`` for ``exp`` (an :func:`experiments` entry):
    a running one's from its folder, for the models whose training stage has started (before
    that, the folder holds the commit's old files); a done one's from its commit."""
    repo = Path(repo)
    out: dict = {}
    log = Path(exp["log"]).read_text(errors="replace") if exp.get("log") else ""
    for kind in MODEL_KINDS:
        folder = f"reports/live/{kind}/plots/metrics"
        series = {}
        for name in HISTORY_METRICS:
            if exp["state"] == "running":
                if exp["root"] is None or f"Running stage 'train_{kind}'" not in log:
                    continue
                path = Path(exp["root"]) / folder / f"{name}.tsv"
                text = path.read_text() if path.is_file() else None
            elif exp["state"] == "done":
                text = git_show(repo, exp["rev"], f"{folder}/{name}.tsv")
            else:
                text = None
            if text:
                series[name] = _rows(text)
        if series:
            out[kind] = series
    return out


def confusion(repo, rev: str) -> dict:
    """``{model: {"classes": [...], "matrix": [[count]]}}`` from the commit's
    ``reports/confusion/<model>.csv``."""
    out = {}
    for kind in MODEL_KINDS:
        text = git_show(Path(repo), rev, f"reports/confusion/{kind}.csv")
        if not text:
            continue
        rows = list(csv.DictReader(io.StringIO(text)))
        classes = _in_order({r["actual"] for r in rows} | {r["predicted"] for r in rows})
        index = {c: i for i, c in enumerate(classes)}
        m = np.zeros((len(classes), len(classes)), np.int64)
        for r in rows:
            m[index[r["actual"]], index[r["predicted"]]] += 1
        out[kind] = {"classes": classes, "matrix": m.tolist()}
    return out


def _in_order(names: set) -> list[str]:
    """Class names in their dataset's order (the digits: 0-9)."""
    for dataset in DATASETS.values():
        if names <= set(dataset.class_names):
            return [c for c in dataset.class_names if c in names]
    return sorted(names)
