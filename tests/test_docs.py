"""The documentation site builds offline with warnings as errors, running every lesson; its
reference pages cover every name in ``nn.__all__``, every route and every command; and every
command the README and the site show is one the project accepts.

The commands are checked by the parsers that will read them: ``make`` targets in the Makefile,
``dvc`` commands by DVC's own parser and ``-S`` keys against params.yaml, ``nn-mnist`` and
``python -m sweep`` by their argparse parsers, ``curl`` URLs against the server's routes, files
named against git's. What they do when run is what the rest of the suite tests (the pipeline
end to end, experiments, sweeps, the server, the browser, the lessons).
"""

import html
import inspect
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT
from test_tutorials import git_status

import nn

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.fixture(scope="module")
def site(tmp_path_factory, mnist_folder):
    """``make docs``'s build, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    before = git_status()
    done = subprocess.run(
        [BIN / "sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", out],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False,
        env={**os.environ, "MNIST_MIRROR": str(mnist_folder)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]
    assert git_status() == before, "building the site wrote into the repository"
    return out


def words(text: str) -> str:
    return " ".join(re.findall(r"[\w@=+-]+", text))


def text_of(page: Path) -> str:
    """A built page's words, without markup or punctuation."""
    return words(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())))


@pytest.mark.slow
def test_the_site_has_every_page_and_runs_every_lesson(site):
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    sources = {p.relative_to(ROOT / "docs").with_suffix(".html").as_posix() for p in PAGES[1:]}
    lessons = sorted((ROOT / "docs" / "tutorials").glob("*.py"))
    sources |= {f"tutorials/{p.stem}.html" for p in lessons}
    assert sources <= built, sources - built
    for lesson in lessons:  # run at build time: their printed output is on the page
        page = (site / "tutorials" / f"{lesson.stem}.html").read_text()
        assert "cell_output" in page, f"{lesson.name}: no output on its page (not executed?)"
    for stem in ("03_dense_mnist", "04_convolution", "05_training_recipes", "06_looking_inside"):
        assert "<img" in (site / "tutorials" / f"{stem}.html").read_text(), f"{stem}: no figure"
    for page in site.rglob("*.html"):  # everything a page loads is in the site: it works offline
        loads = re.findall(
            r'<(?:script|img|link)[^>]+(?:src|href)="(https?:[^"]+)"', page.read_text()
        )
        assert not loads, f"{page.name} loads {loads}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()


@pytest.mark.slow
def test_the_api_reference_shows_every_public_name_with_its_docstring(site):
    page, shown = (site / "api.html").read_text(), text_of(site / "api.html")
    for name in nn.__all__:
        anchor = (
            f'id="nn.{name}"'
            if not inspect.ismodule(getattr(nn, name))
            else f'id="module-nn.{name}"'
        )
        assert anchor in page, f"nn.{name} is not in the API reference"
        first = words(inspect.getdoc(getattr(nn, name)).split("\n")[0])
        assert first in shown, f"nn.{name}: its docstring is not shown"
    assert "y = x @ weight + bias" in shown  # formulas come through


@pytest.mark.slow
def test_the_reference_pages_show_every_route_and_command(site):
    from starlette.routing import Route

    from nn_mnist.cli import parser
    from nn_mnist.guard import Access
    from nn_mnist.server import App, Settings
    from pipeline.lab import Caps

    shown = text_of(site / "server-api.html")
    app = App(Settings(repo=site, caps=Caps(), access=Access(token="t")))  # the lab's routes too
    routes = [r for r in app.starlette.routes if isinstance(r, Route)]
    assert any(r.path.startswith("/api/experiments") for r in routes)
    for route in routes:
        for method in route.methods - {"HEAD"}:
            assert words(f"{method} {route.path}") in shown, f"{method} {route.path} is not shown"
    cli = text_of(site / "cli.html")
    for command in ("predict", "explain", "serve"):
        assert f"usage nn-mnist {command}" in cli
    assert parser().format_usage().split()[1] == "nn-mnist"
    assert "usage python -m sweep" in cli


# ---- the commands the pages show -----------------------------------------------------------


def commands(text: str) -> list[str]:
    """The command lines of a page's ``bash`` blocks (every line) and ``console`` blocks (the
    lines after a ``$`` prompt), continuations joined, comments dropped."""
    found = []
    for kind, body in re.findall(r"```(bash|console)\n(.*?)```", text, re.S):
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            if kind == "console":
                m = re.match(r"\s*[\w-]*\$\s+(.*)", line)
                if not m:
                    continue
                line = m.group(1)
            line = re.sub(r"\s#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found += [part.strip() for part in line.split("&&")]
    return found


ALL = sorted(
    {(page.relative_to(ROOT).as_posix(), c) for page in PAGES for c in commands(page.read_text())}
)
TRACKED = set(
    subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
)
ENV_READ = {"MNIST_MIRROR", "DATA_MIRROR", "PYTHONPATH"}  # variables the pages may set


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def params_keys() -> set[str]:
    def walk(node, prefix):
        for key, value in node.items():
            yield f"{prefix}{key}"
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")

    return set(walk(yaml.safe_load((ROOT / "params.yaml").read_text()), ""))


def check_paths(words: list[str]) -> None:
    for w in words:
        if re.match(r"(sweeps|recipes|tools|examples|docs|bench|tutorial|stages)/\S+$", w):
            assert w in TRACKED or (ROOT / w).is_dir(), f"{w}: no such file in the repository"


def check(command: str) -> None:
    words = shlex.split(command.replace("[", "").replace("]", ""))  # [--optional] shown, kept
    words = words[: words.index(">")] if ">" in words else words  # a redirection is the shell's
    while words and re.match(r"[A-Z_]+=", words[0]):
        var = words.pop(0).split("=")[0]
        assert var in ENV_READ, f"{var}: the code reads no such variable"
    program, args = words[0], words[1:]
    check_paths(args)
    if program == "make":
        assert set(args) <= make_targets() | {"ARGS"}, f"no such make target: {args}"
    elif program.endswith("dvc"):
        from dvc.cli import parse_args

        parse_args(args)  # DVC's own parser: raises on an unknown command or option
        keys = [a.split("=")[0] for i, a in enumerate(args) if i and args[i - 1] == "-S"]
        assert set(keys) <= params_keys(), f"not in params.yaml: {set(keys) - params_keys()}"
    elif program.endswith("nn-mnist"):
        from nn_mnist.cli import parser

        parser().parse_args(args)
    elif program.endswith("python") and args[:2] == ["-m", "sweep"]:
        from sweep.runner import parser

        parser().parse_args(args[2:])
    elif program.endswith("python"):
        script = args[0]
        assert script in TRACKED or "/" not in script, f"{script}: no such script"
    elif program == "curl":
        from nn_mnist.server import App, Settings

        url = next(a for a in args if a.startswith("http"))
        path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        paths = {r.path for r in App(Settings()).starlette.routes}
        assert path in paths, f"{path}: no such route"
    else:
        assert program in {"git", "dask", "source", "cd"}, f"no rule checks {program!r}"


@pytest.mark.parametrize(("page", "command"), ALL, ids=[f"{p}:{c[:40]}" for p, c in ALL])
def test_every_command_the_pages_show_is_accepted(page, command):
    try:
        check(command)
    except SystemExit:
        pytest.fail(f"{page}: {command!r} is refused by its parser")


def test_the_pages_show_commands():
    assert len(ALL) > 30
    assert any(c.startswith("make docs") for _, c in ALL)


@pytest.mark.parametrize(
    "command",
    [
        "make nosuch",
        "dvc exp run -S train_dense.nosuch=1",
        "dvc exp rnu",
        ".venv/bin/nn-mnist predict a.png --nosuch",
        "python -m sweep",
        ".venv/bin/python tools/nosuch.py",
        "curl -F file=@d.png http://127.0.0.1:8000/api/nosuch",
        "NOSUCH_MIRROR=x make repro",
        "rm -rf /",
    ],
)
def test_a_wrong_command_is_caught(command):
    with pytest.raises((AssertionError, SystemExit, Exception)):
        check(command)
