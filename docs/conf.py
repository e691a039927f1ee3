"""Sphinx configuration of fastnn's documentation site.

Build (warnings are errors):  python -m sphinx -W -b html docs docs/_build/html
"""
import sys
from pathlib import Path

# fastnn is the one installed (pip install -e . in a checkout); the docs
# folder holds the build helpers.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastnn  # noqa: E402
import cli_page  # noqa: E402,F401

project = "fastnn"
author = "The fastnn authors"
copyright = "2026, The fastnn authors"
release = version = fastnn.__version__

# numpydoc renders the docstrings' sections as scikit-learn's and NumPy's
# sites do; sphinx-gallery turns examples/ into a gallery (scikit-learn's
# choice); MyST reads the Markdown pages (guide, performance, architecture).
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc",
              "sphinx_gallery.gen_gallery", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
myst_heading_anchors = 3
autosummary_generate = True
templates_path = ["_templates"]
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_validation_checks = set()

# The gallery runs the examples that are quick and need no optional service;
# the others are shown with their code (their figures come from their runs
# in the tests). Arguments keep the tutorial's MNIST part to one short epoch.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"(from_scratch|linear_regression)\.py",
    "reset_argv": "cli_page.gallery_argv",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"fastnn {version}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = ["_static"]
html_favicon = "_static/favicon.png"
# The theme's light/dark switch starts from this (with none it logs an error
# in the browser's console before falling back to "auto").
html_context = {"default_mode": "auto"}


def setup(app):
    app.connect("builder-inited", lambda app: cli_page.write(Path(app.srcdir)))
