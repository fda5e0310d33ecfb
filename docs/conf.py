"""Sphinx configuration for camseg."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import Any

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
    "sphinx.ext.intersphinx",
    # MathJax served from the built site itself, so formulas render offline
    "sphinx-mathjax-offline",
    # runnable examples (docs/gallery/plot_*.py), executed at every build
    "sphinx_gallery.gen_gallery",
]
HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------- intersphinx
# Offline: every project's inventory is a small local file, ``_inventories/<name>.inv``,
# written by ``_inventories/make_inventories.py`` (which holds the names and their URIs
# on the projects' sites), so the build never fetches anything and a missing name is a
# nitpicky warning here, not a network error in CI.
_spec = importlib.util.spec_from_file_location(
    "_docs_make_inventories", HERE / "_inventories" / "make_inventories.py"
)
assert _spec is not None and _spec.loader is not None
_inventories = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_inventories)
intersphinx_mapping = {
    name: (base, str(HERE / "_inventories" / f"{name}.inv"))
    for name, (base, _, _) in _inventories.PROJECTS.items()
}
intersphinx_cache_limit = -1

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# ``Attributes:`` sections as fields: autodoc documents the attributes themselves
napoleon_use_ivar = True
# every cross-reference must resolve (-W makes a broken one fail the build)
nitpicky = True
nitpick_ignore = [
    # TypeVars of ``-> Self``-style annotations: not objects a reader looks up
    ("py:class", "camseg.capture._Self"),
    ("py:class", "camseg.extractors._Self"),
    ("py:class", "camseg.slide._distributed.T"),
    ("py:class", "camseg.capture._Grads"),
    ("py:obj", "camseg.capture._Grads"),
    # private Literal aliases and a Protocol of option types, spelled out in the text
    ("py:class", "TVNorm"),
    ("py:class", "MaskKind"),
    ("py:class", "HeadFusion"),
    ("py:class", "camseg.slide._sliding._CAMOutput"),
    # Sphinx 9 renders an alias nested in a generic (``Sequence[LayerSpec]``) as this
    ("py:class", "TypeAliasForwardRef"),
]
# annotations that name a public alias are shown (and linked) as that alias
autodoc_type_aliases = {
    "Targets": "camseg.Targets",
    "LayerSpec": "camseg.capture.LayerSpec",
    "Reshape": "camseg.capture.Reshape",
    "Element": "camseg.capture.Element",
    "NormalizeMode": "camseg.functional.NormalizeMode",
    "Group": "camseg.functional.Group",
    "Reduction": "camseg.losses.Reduction",
    "Region": "camseg.losses.Region",
    "CamFn": "camseg.losses.CamFn",
    "ScoreFn": "camseg.losses.ScoreFn",
    "Pooling": "camseg.losses.Pooling",
    "ExplainFn": "camseg.metrics.ExplainFn",
    "Colormap": "camseg.viz.Colormap",
    "Split": "camseg_pcam.data.Split",
    "Head": "camseg_pcam.models.Head",
    "MILPooling": "camseg_pcam.models.MILPooling",
    "ModelName": "camseg_pcam.models.ModelName",
    "Figure": "matplotlib.figure.Figure",  # imported for type checking only
}

templates_path: list[str] = []
exclude_patterns = ["_build", "generated/*.rst.bak", "gallery", "auto_examples/*.ipynb"]

# --------------------------------------------------------------------------- gallery
# docs/gallery/plot_*.py run at every build (CPU, 2 threads, seconds each) and
# become pages under auto_examples/ (generated, not committed). An example that
# raises fails the build; no timing page, no download of all examples at once.
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "write_computation_times": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
}
html_theme = "furo"
html_title = f"camseg {release}"
html_static_path: list[str] = []

# --------------------------------------------------------------------------- figures
# Every figure of the site is drawn from code at build time, so none can go stale:
# each ``_scripts/fig_*.py`` defines ``main(out: Path) -> list[Path]`` and writes
# its PNGs into ``_figures/`` (not committed); pages use ``.. image:: _figures/NAME.png``.
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


# --------------------------------------------------------------------------- references
def _public_path(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``camseg.slide._readers.RegionReader`` as ``camseg.slide.RegionReader``.

    Annotations name a class by its defining (private) module; the docs document it
    where users import it from. Only private *module* parts are dropped, and only when
    the public path is documented; anything else stays a nitpicky warning.
    """
    target = node.get("reftarget", "").strip("'\"")
    if node.get("refdomain") != "py" or ("._" not in target and target == node["reftarget"]):
        return None
    *mods, name = target.split(".")
    public = ".".join([m for m in mods if not m.startswith("_")] + [name])
    if public == node["reftarget"]:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    )


_PROSE_LEAD = re.compile(r"^\s*([^:`]+):\s")


def _keep_prose_lead(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Stop napoleon reading ``"Area in level-0 pixels: ..."`` as ``type: description``.

    Napoleon takes the text before the first colon of an attribute's docstring as its
    type. When that text is prose (spaces other than around ``|`` and after ``,``), a
    leading empty RST comment makes napoleon see no type; the text renders unchanged.
    """
    if what not in ("attribute", "data", "property") or not lines:
        return
    m = _PROSE_LEAD.match(lines[0])
    if m and " " in re.sub(r"\s*\|\s*|,\s*", "", m.group(1).strip()):
        lines[:0] = ["..", ""]


def _public_bases(app: Any, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    """Show a class's first public ancestor in place of a private base (``_PerturbationCAM``)."""
    for i, base in enumerate(bases):
        if isinstance(base, type) and base.__name__.startswith("_"):
            bases[i] = next(b for b in base.__mro__ if not b.__name__.startswith("_"))


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("missing-reference", _public_path)
    # before napoleon's handler (priority 500)
    app.connect("autodoc-process-docstring", _keep_prose_lead, priority=400)
