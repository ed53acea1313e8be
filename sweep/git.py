"""The git and DVC commands the sweep runs, and what it reads back from origin's experiment refs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.params import load_yaml, lookup

TIMEOUT = 3600  # seconds for one command: a point's `dvc exp run` trains models


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["git", *args], cwd, check)


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """DVC from this Python's environment (the worker's), whatever is on PATH."""
    return _run([sys.executable, "-m", "dvc", *args], cwd, check)


def file_at(cwd: Path, commit: str):
    """``text_of(path)``: a file's text at ``commit``, or None where the commit has no such
    file."""

    def text_of(path: str) -> str | None:
        shown = git(cwd, "show", f"{commit}:{path}", check=False)
        return shown.stdout if shown.returncode == 0 else None

    return text_of


def _run(cmd: list[str], cwd: Path, check: bool) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    if check and done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise subprocess.SubprocessError(f"{' '.join(cmd[:4])} ...: {detail}")
    return done


def exp_ref(baseline: str, name: str) -> str:
    """Where DVC keeps experiment ``name`` of ``baseline`` (``refs/exps/ab/cdef.../name``)."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def landed(cwd: Path, remote: str, baseline: str) -> dict[str, str]:
    """Experiments of ``baseline`` on git remote ``remote`` (a name or URL): name -> commit."""
    prefix = exp_ref(baseline, "")
    out = git(cwd, "ls-remote", remote, f"{prefix}*").stdout
    refs = (line.split("\t") for line in out.splitlines() if "\t" in line)
    return {ref.removeprefix(prefix): sha for sha, ref in refs if ref.startswith(prefix)}


def remote_file(cwd: Path, remote: str, ref: str, path: str) -> str:
    """A file as committed in ``ref`` on ``remote``."""
    git(cwd, "fetch", "--quiet", "--no-tags", remote, ref)
    return git(cwd, "show", f"FETCH_HEAD:{path}").stdout


def same_params(cwd: Path, remote: str, ref: str, params: dict) -> bool:
    """Whether the experiment at ``ref`` on ``remote`` ran with these ``params.yaml`` values."""
    theirs = load_yaml(remote_file(cwd, remote, ref, "params.yaml"))
    try:
        return all(lookup(theirs, key) == value for key, value in params.items())
    except (KeyError, TypeError):
        return False
