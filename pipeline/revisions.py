"""The models of any DVC experiment or git revision of a repository, beside the workspace's.

``dvc exp show`` (DVC's Python API, ``dvc.api.exp_show``) lists the recent commits and the
experiments run from them. A revision's model files are the outputs its ``dvc.lock`` records: the
file is read through DVC's Python API (``dvc.api.read``) from the repository's local cache, and its
MD5 is checked against the lock. A file that is not in the cache is refused in one line naming the
command that brings it (``dvc exp pull origin NAME`` for an experiment, ``dvc fetch --all-commits``
for a commit). Nothing here changes the workspace: no checkout, no ``dvc exp apply``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import threading
import time
from pathlib import Path

import yaml

from pipeline.errors import PipelineError, first_line
from pipeline.inference import classifier_from_bytes
from pipeline.serving import ModelSet, ServedModel, accuracies

__all__ = ["Revision", "list_revisions", "git_show", "RevisionModels"]

LISTING_SECONDS = 5.0  # `dvc exp show` takes about a second: its answer is reused this long
KEEP = 8  # revisions whose models stay loaded


@dataclasses.dataclass(frozen=True)
class Revision:
    """A commit or an experiment: ``name`` as ``dvc exp show`` names it (an experiment's name, a
    branch, or a short commit), ``rev`` its full commit, ``kind`` ``"experiment"`` or
    ``"commit"``, ``baseline`` the commit an experiment was run from (a commit: itself)."""

    name: str
    rev: str
    kind: str
    baseline: str

    def info(self) -> dict:
        return dataclasses.asdict(self)

    def pull_command(self) -> str:
        if self.kind == "experiment":
            return f"dvc exp pull origin {self.name}"
        return "dvc fetch --all-commits"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)}: {first_line(done.stderr) or 'failed'}")
    return done.stdout


def git_show(repo: Path, rev: str, path: str) -> str | None:
    """The text of ``path`` in commit ``rev`` (None where it has none)."""
    try:
        return _git(Path(repo), "show", f"{rev}:{path}")
    except PipelineError:
        return None


def list_revisions(repo, commits: int = 5) -> list[Revision]:
    """The last ``commits`` commits of HEAD's branch and the finished experiments of each, as
    ``dvc exp show`` lists them (newest first)."""
    import dvc.api

    repo = Path(repo)
    try:
        rows = dvc.api.exp_show(repo=str(repo), num=commits)
    except Exception as e:  # DVC's own errors (not a repository, no commits): one line
        raise PipelineError(f"{repo}: cannot list experiments ({first_line(e)})") from None
    out, baseline = [], None
    for row in rows:
        if row.get("rev") == "workspace":
            continue
        name = row.get("Experiment") or row["rev"]
        if row.get("typ") == "baseline":
            kind = "commit"
        elif row.get("State") in (None, "Success") and row.get("Experiment"):
            kind = "experiment"
        else:  # queued, running or failed: no models to read
            continue
        rev = _git(repo, "rev-parse", "--verify", "--quiet", f"{row['rev']}^{{commit}}").strip()
        if kind == "commit":
            baseline = rev[:7]
        out.append(Revision(name, rev, kind, baseline if kind == "experiment" else rev[:7]))
    return out


def _lock_md5(repo: Path, revision: Revision, file: str) -> str:
    """The MD5 that ``revision``'s ``dvc.lock`` records for the output ``file``."""
    lock = yaml.safe_load(git_show(repo, revision.rev, "dvc.lock") or "null")
    for stage in ((lock or {}).get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == file and out.get("md5"):
                return out["md5"]
    raise PipelineError(f"{file} is not an output in dvc.lock of {revision.kind} {revision.name}")


class RevisionModels:
    """The experiments and commits of ``repo`` and, loaded on first use, their models (the
    ``names`` the workspace serves, ``models/<name>.npz``). Safe to call from several threads."""

    def __init__(self, repo, folder: str = "models", fmt: str = "npz"):
        self.repo, self.folder, self.fmt = Path(repo), folder, fmt
        self.lock = threading.Lock()
        self._listing: tuple[float, list[Revision]] | None = None
        self._loaded: dict[str, tuple[Revision, ModelSet]] = {}
        self._oid_to_path = None

    def revisions(self) -> list[Revision]:
        with self.lock:
            now = time.monotonic()
            if self._listing is None or now - self._listing[0] > LISTING_SECONDS:
                self._listing = (now, list_revisions(self.repo))
            return self._listing[1]

    def find(self, name: str) -> Revision:
        """The revision called ``name`` (an experiment, a branch, a short or full commit)."""
        revisions = self.revisions()
        for r in revisions:
            if name in (r.name, r.rev) or (len(name) >= 7 and r.rev.startswith(name)):
                return r
        known = ", ".join(r.name for r in revisions) or "none"
        raise PipelineError(f"rev: no experiment or commit named {name!r} (known: {known})")

    def model_set(self, name: str, names) -> tuple[Revision, ModelSet]:
        """The revision called ``name`` and its models ``names`` (each named ``NAME@REVISION``)."""
        revision = self.find(name)
        with self.lock:
            if revision.rev in self._loaded:
                return self._loaded[revision.rev]
        import dvc.api

        accuracy = accuracies(git_show(self.repo, revision.rev, "reports/metrics.json"))
        models = []
        for stem in names:
            file = f"{self.folder}/{stem}.{self.fmt}"
            md5 = _lock_md5(self.repo, revision, file)
            if not self._cache_path(md5).is_file():
                raise PipelineError(
                    f"{file} of {revision.kind} {revision.name} ({revision.rev[:7]}) is not in "
                    f"the local DVC cache: run `{revision.pull_command()}`"
                )
            data = dvc.api.read(file, repo=str(self.repo), rev=revision.rev, mode="rb")
            if hashlib.md5(data).hexdigest() != md5:
                raise PipelineError(f"{file} of {revision.name}: cached file differs from dvc.lock")
            classifier = classifier_from_bytes(Path(file), data)
            name = f"{stem}@{revision.name}"
            models.append(ServedModel(name, classifier, accuracy.get(stem), revision.info()))
        loaded = (revision, ModelSet(tuple(models), ()))
        with self.lock:
            self._loaded[revision.rev] = loaded
            while len(self._loaded) > KEEP:
                self._loaded.pop(next(iter(self._loaded)))
        return loaded

    def _cache_path(self, md5: str) -> Path:
        """Where the repository's local cache keeps the file of ``md5`` (DVC's own layout; the
        repository is opened once, on first use)."""
        if self._oid_to_path is None:
            from dvc.repo import Repo

            with Repo(str(self.repo)) as repo:
                self._oid_to_path = repo.cache.local.oid_to_path
        return Path(self._oid_to_path(md5))
