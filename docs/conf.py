"""Sphinx configuration of the site: ``make docs`` builds it offline, warnings as errors.

MyST-Parser reads the Markdown pages, MyST-NB reads the lessons (``tutorials/*.py``, Jupyter's
percent format, through jupytext) and runs each at build time: a lesson whose own assertions fail
stops the build. Autodoc and napoleon render the API reference from the docstrings (``api.md``).
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # nn, pipeline, nn_mnist: the checkout being documented

project = "nn-mnist"
author = "the nn-mnist authors"
copyright = "the nn-mnist authors"  # noqa: A001 (Sphinx's own setting name)

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax itself in _static: formulas render offline
    "nn_docs",
]

root_doc = "index"
source_suffix = {".md": "myst-nb", ".py": "myst-nb"}
exclude_patterns = ["_build", "_ext", "conf.py"]
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}

# Run every lesson on every build (nothing cached in the checkout); a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 90  # seconds per cell: each lesson runs in at most 90 s on 2 cores
nb_execution_show_tb = True
nb_merge_streams = True

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "nn-mnist"
html_static_path: list[str] = []
html_last_updated_fmt = None  # no timestamps in what the build writes
