# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Experiments: change a setting, compare, share
#
# Everything so far ran in one Python process. The project's pipeline runs the same library as
# stages that DVC tracks: `params.yaml` holds every setting, `dvc repro` reruns what a change
# touches, `dvc exp run -S key=value` tries a setting as an *experiment* without editing the
# file, `dvc exp show` and `dvc metrics diff` compare, and `dvc exp push` shares. This lesson does
# all of it in a scratch copy of the repository (a temporary folder; nothing here changes), on a
# small subset so that it runs in a minute.

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

places = [Path.cwd(), *Path.cwd().parents]
if "__file__" in globals():
    places.append(Path(__file__).resolve().parents[2])
ROOT = next(p for p in places if (p / "dvc.yaml").is_file() and (p / "nn").is_dir())
BIN = Path(sys.executable).parent  # this environment's dvc
scratch = Path(tempfile.mkdtemp(prefix="nn-lesson-"))
repo = scratch / "repo"
repo.mkdir()
for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "requirements.lock",
             "stages", "pipeline", "nn"):  # fmt: skip
    src = ROOT / name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / name)
identity = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
            for what, value in (("NAME", "learner"), ("EMAIL", "learner@example.org"))}  # fmt: skip
env = os.environ | identity | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                               "DVC_NO_ANALYTICS": "1"}  # fmt: skip
if "MNIST_MIRROR" not in env:  # the real MNIST files, beside the repository
    from pipeline.idx import local_mnist_folder

    env["MNIST_MIRROR"] = str(local_mnist_folder(ROOT).resolve())


def sh(*cmd):
    """Run a command in the scratch repository and return what it printed."""
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# %% [markdown]
# ## The settings, and a baseline
#
# Each stage reads its section of `params.yaml`. We shrink the data, the models and the set of
# traced digits the models are also scored on, so the whole pipeline (fetch, preprocess, trace
# the digits, two trainings, evaluate, export, plot) takes seconds, and commit that as our
# baseline.

# %%
params = yaml.safe_load((repo / "params.yaml").read_text())
params["preprocess"]["dense"].update(train_size=2000, val_size=500)
params["preprocess"]["conv"].update(classes=[0, 1, 7], train_size=600, val_size=100)
params["train_dense"].update(epochs=3, hidden=[64])
params["train_conv"].update(epochs=2, channels=[4], hidden=[])
params["plot"].update(misclassified=4, mistakes=4)
params["robustness"].update(per_class=50)  # 500 traced digits, not 5,000
(repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
sh("git", "init", "-q", "-b", "main")
sh(BIN / "dvc", "init", "-q")
sh("git", "add", "-A")
sh("git", "commit", "-qm", "the project, small settings")
print(sh(BIN / "dvc", "repro", "-q") or "dvc repro: done")
sh("git", "add", "-A")
sh("git", "commit", "-qm", "baseline")
baseline = json.loads((repo / "reports" / "metrics.json").read_text())
print("baseline test accuracy:", {k: round(v["accuracy"], 4) for k, v in baseline.items()})

# %% [markdown]
# ## An experiment: one setting changed
#
# `dvc exp run -S train_dense.hidden=[256]` runs the pipeline with that value. DVC sees that
# only the dense model's section changed: it reruns `train_dense` and what reads its model, and
# skips the rest.

# %%
out = sh(BIN / "dvc", "exp", "run", "-n", "wider", "-S", "train_dense.hidden=[256]")
print("\n".join(line for line in out.splitlines() if "stage" in line))
assert "Running stage 'train_dense'" in out and "Running stage 'train_conv'" not in out

# %% [markdown]
# ## Compare
#
# `dvc metrics diff` compares the workspace (now the experiment's results) with the commit;
# `dvc exp show` lists every experiment with its params and metrics.

# %%
print(sh(BIN / "dvc", "metrics", "diff", "--md"))
shown = json.loads(sh(BIN / "dvc", "exp", "show", "--json"))
experiment = next(
    e["revs"][0] for row in shown for e in (row.get("experiments") or []) if e["name"] == "wider"
)
dense = experiment["data"]["metrics"]["reports/metrics.json"]["data"]["dense"]["accuracy"]
hidden = experiment["data"]["params"]["params.yaml"]["data"]["train_dense"]["hidden"]
print(f"wider: hidden {hidden}, dense test accuracy {dense:.4f} "
      f"(baseline {baseline['dense']['accuracy']:.4f})")  # fmt: skip
assert hidden == [256]

# %% [markdown]
# ## Share
#
# An experiment is a git ref plus DVC-cached files. Push both, to a git remote and a DVC remote
# (here two folders; a server or a bucket works the same), and anyone can pull it, rerun it and
# get the same bits.

# %%
sh("git", "checkout", "--", ".")  # the workspace back to the baseline
sh(BIN / "dvc", "checkout", "-q")
sh("git", "init", "-q", "--bare", str(scratch / "origin.git"))
sh("git", "remote", "add", "origin", str(scratch / "origin.git"))
sh(BIN / "dvc", "remote", "add", "-d", "storage", str(scratch / "storage"))
sh("git", "commit", "-qam", "remote")
sh("git", "push", "-q", "origin", "main")
sh(BIN / "dvc", "exp", "push", "origin", "wider")
refs = subprocess.run(["git", "ls-remote", str(scratch / "origin.git")], capture_output=True,
                      text=True, check=True).stdout  # fmt: skip
assert "/wider" in refs
print("pushed: the experiment's ref to origin, its models to the DVC remote")
print("a colleague: git clone …; dvc exp pull origin wider; dvc exp apply wider")

# %%
shutil.rmtree(scratch)  # the lesson leaves nothing behind
