"""``tools/recipe.py``: a recipe file (dotted params.yaml keys -> values) as ``dvc exp run -S``."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from pipeline.errors import PipelineError
from pipeline.params import parse_section
from tools.recipe import command

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_is_valid_for_params_yaml(recipe):
    values = yaml.safe_load(recipe.read_text())
    if recipe.stem == "fashion_mnist":
        assert values["fetch.dataset"] == "fashion_mnist"
        assert values["train_conv.augment_rotate"] == 0  # tuned without the handwriting recipe
    cmd = command(recipe, ROOT / "params.yaml", ["-n", "fm"])
    assert cmd[:3] == ["dvc", "exp", "run"] and cmd[-2:] == ["-n", "fm"]
    assert cmd.count("-S") == len(values)
    # Applied to params.yaml, every section still parses (types and ranges as the stages check).
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in values.items():
        section, *path, last = key.split(".")
        node = params[section]
        for p in path:
            node = node[p]
        node[last] = value
    from pipeline.params import ConvParams, TrainParams

    parse_section(TrainParams, params["train_dense"], "train_dense")
    parse_section(ConvParams, params["train_conv"], "train_conv")


def test_values_and_bad_keys(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train_conv: {lr: 0.01, channels: [16, 32]}\nfetch: {dataset: mnist}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train_conv.channels: [24, 48]\nfetch.dataset: fashion_mnist\n")
    assert command(recipe, params, []) == [
        "dvc", "exp", "run", "-S", "train_conv.channels=[24, 48]", "-S",
        "fetch.dataset=fashion_mnist",
    ]  # fmt: skip
    recipe.write_text("train_conv.lrr: 0.1\n")
    with pytest.raises(PipelineError, match=r"r.yaml: recipe.train_conv.lrr: not a key"):
        command(recipe, params, [])
    recipe.write_text("- a list\n")
    with pytest.raises(PipelineError, match="expected a mapping"):
        command(recipe, params, [])


def test_print_shows_the_command():
    done = subprocess.run(
        [sys.executable, "tools/recipe.py", "recipes/fashion_mnist.yaml", "--print"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dvc exp run -S fetch.dataset=fashion_mnist")
