"""Run ``dvc exp run`` with a recipe: a YAML file that maps dotted ``params.yaml`` keys to values.

    python tools/recipe.py recipes/fashion_mnist.yaml                 # dvc exp run -S key=value ...
    python tools/recipe.py recipes/fashion_mnist.yaml -n fm-seed1 -S train_conv.seed=1
    python tools/recipe.py recipes/fashion_mnist.yaml --print         # only print the command

Every key is checked against ``params.yaml`` first (one line naming a key that is not there); the
arguments after the file are passed on to ``dvc exp run`` after the recipe's, so a later ``-S``
wins.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import check_keys, read_yaml_file, set_args


def command(recipe: Path, params: Path, extra: list[str]) -> list[str]:
    """``dvc exp run -S key=value ... EXTRA`` for the recipe; PipelineError naming a bad key."""
    values = read_yaml_file(recipe)  # a mapping, or PipelineError
    if not values:
        raise PipelineError(f"{recipe}: expected a mapping of params.yaml keys to values")
    try:
        check_keys("recipe", values, read_yaml_file(params))
    except PipelineError as e:
        raise PipelineError(f"{recipe}: {e}") from None
    return ["dvc", "exp", "run", *set_args(values), *extra]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    printing = "--print" in argv
    rest = [a for a in argv[1:] if a != "--print"]
    try:
        cmd = command(Path(argv[0]), Path("params.yaml"), rest)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(shlex.join(cmd), file=sys.stderr if not printing else sys.stdout)
    if printing:
        return 0
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    os.execv(dvc, [dvc, *cmd[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
