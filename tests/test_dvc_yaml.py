"""dvc.yaml covers what each stage runs: every module it can import (followed through the
project's own packages, imports inside functions included) lies under one of its ``deps``, and
every params section it reads is one of its ``params``, named whole (so a field added to a params
dataclass can never leave a stage stale)."""

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from pipeline.errors import PipelineError

PACKAGES = ("nn", "pipeline", "stages")
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def project_imports(path: Path) -> set[str]:
    """The project's modules that ``path`` imports anywhere in its code, as dotted names (with
    each parent package, which Python imports first)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and module_file(name):
                parts = name.split(".")
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found


def closure(module: str) -> set[Path]:
    """Every project file that importing ``module`` (and running it) can load."""
    seen, todo = set(), [module, "stages.__main__"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(project_imports(module_file(name)))
    return {module_file(n).relative_to(ROOT) for n in seen}


def stage_module(stage: dict) -> str:
    return "stages." + stage["cmd"].split()[2]  # sh stages/run.sh <name> [args]


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_module_a_stage_runs_is_a_dependency(name):
    stage = DVC[name]
    deps = [Path(d) for d in stage["deps"]]
    assert Path("stages/run.sh") in deps
    missing = [
        str(f)
        for f in sorted(closure(stage_module(stage)))
        if not any(f == d or d in f.parents for d in deps)
    ]
    assert not missing, f"{name}: dvc.yaml deps miss {missing}"


def test_the_import_walk_sees_imports_inside_functions():
    """The check above would pass vacuously if the walk missed lazy imports: it must not."""
    assert Path("nn/losses.py") in closure("pipeline.params")  # imported inside validate()


def test_params_are_whole_sections_and_every_section_is_used():
    used = set()
    for name, stage in DVC.items():
        for entry in stage.get("params", []):
            assert isinstance(entry, str) and entry in PARAMS, f"{name}: {entry!r}"
            used.add(entry)
    assert used == set(PARAMS), f"sections no stage depends on: {set(PARAMS) - used}"


class Read(Exception):
    pass


@pytest.mark.parametrize("name", sorted(DVC))
def test_the_sections_a_stage_reads_are_its_params(name, monkeypatch, tmp_path):
    """Run the stage's ``main`` in an empty folder with ``load_params`` recording the section and
    stopping it there: the section must be among the stage's ``params``."""
    import importlib

    stage = DVC[name]
    module = importlib.import_module(stage_module(stage))
    read = []

    def record(section, *args, **kwargs):
        read.append(section)
        raise Read

    monkeypatch.chdir(tmp_path)
    if hasattr(module, "load_params"):
        monkeypatch.setattr(module, "load_params", record)
    try:
        module.main(stage["cmd"].split()[3:])
    except (Read, PipelineError):
        pass
    assert set(read) <= set(stage.get("params", [])), f"{name} reads {read}"
    if hasattr(module, "load_params"):
        assert read, f"{name} imports load_params but read no section"
