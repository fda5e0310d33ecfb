"""Sphinx configuration for camseg."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

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
    # MathJax served from the built site itself, so formulas render offline
    "sphinx-mathjax-offline",
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

# --------------------------------------------------------------------------- figures
# Every figure of the site is drawn from code at build time, so none can go stale:
# each ``_scripts/fig_*.py`` defines ``main(out: Path) -> list[Path]`` and writes
# its PNGs into ``_figures/`` (not committed); pages use ``.. image:: _figures/NAME.png``.
HERE = Path(__file__).resolve().parent
FIGURES = HERE / "_figures"


def _build_figures() -> None:
    FIGURES.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    for script in sorted((HERE / "_scripts").glob("fig_*.py")):
        spec = importlib.util.spec_from_file_location(f"_docs_{script.stem}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        start = time.perf_counter()
        written = module.main(FIGURES)
        names = ", ".join(p.name for p in written)
        print(f"[figures] {script.name}: {names} in {time.perf_counter() - start:.1f} s")


_build_figures()
