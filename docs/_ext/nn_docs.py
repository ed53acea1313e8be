"""Sphinx directives that write reference pages from the code itself, so they cannot drift from it.

- ``nn-api``: one autodoc entry for every name in ``nn.__all__``, in its order.
- ``cli-help`` MODULE:FUNCTION: the help of the argparse parser that FUNCTION returns, and of each
  of its subcommands, at 100 columns.
- ``http-routes``: every route of the web app (the lab's included), with its handler's docstring.

A name or route without a docstring is a build error: the page would have nothing to say about it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import os
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


@contextlib.contextmanager
def columns(width: int):
    """argparse wraps help at $COLUMNS: a fixed width makes the page the same on every terminal."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


class MarkdownDirective(SphinxDirective):
    """A directive (in a MyST page) that writes MyST Markdown and parses it in place."""

    def parse(self, lines: list[str]) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        source = self.get_source_info()[0]
        nested_parse_with_titles(self.state, StringList(lines, source=source), node)
        return node.children


class NnApi(MarkdownDirective):
    def run(self):
        import nn

        lines: list[str] = []
        for name in nn.__all__:
            obj = getattr(nn, name)
            if not inspect.getdoc(obj):
                raise ExtensionError(f"nn.{name} has no docstring for the API reference")
            kind = "function"
            if inspect.ismodule(obj) or inspect.isclass(obj):
                kind = "module" if inspect.ismodule(obj) else "class"
            options = [":members:"] if kind != "function" else []
            directive = [f".. auto{kind}:: nn.{name}", *(f"   {o}" for o in options)]
            lines += [f"## `nn.{name}`", "", "```{eval-rst}", *directive, "```", ""]
        return self.parse(lines)


def subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(action.choices.values())
    return found


class CliHelp(SphinxDirective):
    required_arguments = 1

    def run(self):
        module, _, function = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(module), function)()
        out = []
        with columns(100):
            for p in [parser, *subcommands(parser)]:
                title = nodes.rubric(text=p.prog)
                help_text = p.format_help().rstrip()
                out += [title, nodes.literal_block(help_text, help_text, language="text")]
        return out


class HttpRoutes(MarkdownDirective):
    def run(self):
        from starlette.routing import Route

        from nn_mnist.guard import Access
        from nn_mnist.server import App, Settings
        from pipeline.lab import Caps

        with tempfile.TemporaryDirectory() as tmp:  # a repository is only named, never read
            settings = Settings(repo=Path(tmp), caps=Caps(), access=Access(token="docs"))
            app = App(settings)
        lines: list[str] = []
        for route in app.starlette.routes:
            if not isinstance(route, Route):
                continue
            doc = inspect.getdoc(route.endpoint)
            if not doc:
                raise ExtensionError(f"route {route.path}: its handler has no docstring")
            methods = "/".join(sorted(route.methods - {"HEAD"}))
            lines += [f"## `{methods} {route.path}`", "", "```{eval-rst}", doc, "```", ""]
        return self.parse(lines)


def setup(app):
    app.add_directive("nn-api", NnApi)
    app.add_directive("cli-help", CliHelp)
    app.add_directive("http-routes", HttpRoutes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
