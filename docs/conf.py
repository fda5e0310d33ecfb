"""Sphinx configuration for camseg."""

from __future__ import annotations

import camseg

project = "camseg"
author = "The camseg developers"
copyright = "2026, the camseg developers"
release = camseg.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
]
# intersphinx is left out on purpose: CI has no network beyond the package
# registries, and a failed inventory fetch is a warning, which -W turns into an
# error.

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
nitpicky = False

templates_path: list[str] = []
exclude_patterns = ["_build", "generated/*.rst.bak"]
html_theme = "furo"
html_title = f"camseg {release}"
html_static_path: list[str] = []
