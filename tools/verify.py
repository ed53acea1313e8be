"""``make verify``: does this machine reproduce the committed results?

Clones the current commit into a temporary folder, runs the whole pipeline there from nothing
(``dvc repro --force --no-run-cache``: no cache, no run-cache, every stage computes), then compares
every output's hash with the committed ``dvc.lock`` and the fresh ``reports/environment.json`` with
the committed one. Prints one line per differing output (and per differing file inside a differing
folder, where both folder listings are at hand) plus the lines of the environment that differ, and
exits 1; or prints one line and exits 0 when everything matches.

Usage: ``python tools/verify.py [--repo PATH] [--keep]``. Set ``MNIST_MIRROR`` (or ``DATA_MIRROR``)
as for ``make repro`` where there is no internet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.datasets import absolute_mirrors

ENVIRONMENT = "reports/environment.json"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def lock_outputs(lock: dict) -> dict[str, str]:
    """``{path: md5}`` of every output in a parsed ``dvc.lock``."""
    return {
        out["path"]: out.get("md5", "")
        for stage in (lock or {}).get("stages", {}).values()
        for out in stage.get("outs", [])
    }


def dir_listing(repo: Path, md5: str) -> dict[str, str] | None:
    """``{relpath: md5}`` of a folder output from DVC's cache in ``repo``, or None if absent."""
    if not md5.endswith(".dir"):
        return None
    path = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    try:
        return {e["relpath"]: e["md5"] for e in json.loads(path.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compare_outputs(committed: dict, fresh: dict, committed_dirs=None, fresh_dirs=None) -> list:
    """One line per output whose hash differs (or that only one side has)."""
    lines = []
    for path in sorted(set(committed) | set(fresh)):
        old, new = committed.get(path), fresh.get(path)
        if old == new:
            continue
        if old is None or new is None:
            where = "committed only" if new is None else "not in the committed dvc.lock"
            lines.append(f"differs: {path} ({where})")
            continue
        lines.append(f"differs: {path} (committed {old[:12]}, here {new[:12]})")
        before = (committed_dirs or {}).get(path)
        after = (fresh_dirs or {}).get(path)
        if before is not None and after is not None:
            for rel in sorted(set(before) | set(after)):
                if before.get(rel) != after.get(rel):
                    lines.append(f"differs: {path}/{rel}")
    return lines


def compare_environment(committed: dict | None, fresh: dict | None) -> list:
    """One line per key of ``reports/environment.json`` whose value differs."""
    if committed is None or fresh is None:
        return [] if committed == fresh else [f"environment: {ENVIRONMENT} missing on one side"]
    return [
        f"environment: {key}: committed {committed.get(key)!r}, here {fresh.get(key)!r}"
        for key in sorted(set(committed) | set(fresh))
        if committed.get(key) != fresh.get(key)
    ]


def committed_file(repo: Path, commit: str, path: str) -> str | None:
    try:
        return git(repo, "show", f"{commit}:{path}")
    except subprocess.CalledProcessError:
        return None


def verify(repo: Path, keep: bool = False) -> list[str]:
    """Rerun the pipeline of ``repo``'s HEAD in a temporary clone; the differing lines."""
    commit = git(repo, "rev-parse", "HEAD").strip()
    if git(repo, "status", "--porcelain", "--untracked-files=no").strip():
        print(f"verify: checking commit {commit[:10]}; uncommitted changes are not part of it")
    committed_lock = yaml.safe_load(committed_file(repo, commit, "dvc.lock") or "{}")
    committed_env_text = committed_file(repo, commit, ENVIRONMENT)
    committed_env = json.loads(committed_env_text) if committed_env_text else None

    tmp = Path(tempfile.mkdtemp(prefix="nn-verify-"))
    clone = tmp / "repo"
    try:
        git(tmp, "clone", "-q", "--no-hardlinks", str(repo), str(clone))
        git(clone, "checkout", "-q", commit)
        bin_dir = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
        env.update(
            VIRTUAL_ENV=str(bin_dir.parent), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        )
        env.update(absolute_mirrors())  # the clone runs elsewhere: ../shared/... must still work
        print(f"verify: rerunning the pipeline of {commit[:10]} from nothing in {clone}")
        dvc = shutil.which("dvc", path=str(bin_dir)) or "dvc"
        result = subprocess.run([dvc, "repro", "--force", "--no-run-cache"], cwd=clone, env=env)
        if result.returncode != 0:
            return [f"dvc repro failed in {clone} (exit {result.returncode})"]
        fresh_lock = yaml.safe_load((clone / "dvc.lock").read_text())
        env_path = clone / ENVIRONMENT
        fresh_env = json.loads(env_path.read_text()) if env_path.exists() else None
        committed, fresh = lock_outputs(committed_lock), lock_outputs(fresh_lock)
        lines = compare_outputs(
            committed,
            fresh,
            {p: dir_listing(repo, m) for p, m in committed.items()},
            {p: dir_listing(clone, m) for p, m in fresh.items()},
        )
        if lines or fresh_env != committed_env:
            lines += compare_environment(committed_env, fresh_env)
        return lines
    finally:
        if keep:
            print(f"verify: kept {clone}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="the project (default: .)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args(argv)
    try:
        lines = verify(args.repo.resolve(), keep=args.keep)
    except subprocess.CalledProcessError as e:
        print(f"verify: error: {' '.join(map(str, e.cmd))} failed: {e.stderr.strip()}")
        return 2
    if lines:
        for line in lines:
            print(f"verify: {line}")
        print(f"verify: FAILED: {len(lines)} difference(s) from the committed results")
        return 1
    print("verify: passed: every output matches the committed dvc.lock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
