"""Every public name is on an API page, and the offline intersphinx files are current.

The source check parses ``docs/api.rst`` (one ``autosummary`` table per camseg module,
under its ``currentmodule``) and ``docs/pcam_api.rst`` (an ``automodule`` per example
module). The built check reads the inventory of the last docs build
(``docs/_build/html/objects.inv``, or ``$CAMSEG_DOCS_HTML/objects.inv``) and is skipped
when there is none.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

CORE = [
    "camseg",
    "camseg.functional",
    "camseg.losses",
    "camseg.postprocess",
    "camseg.metrics",
    "camseg.slide",
    "camseg.synthetic",
    "camseg.viz",
]
EXAMPLE = [
    "camseg_pcam",
    "camseg_pcam.data",
    "camseg_pcam.synthetic_io",
    "camseg_pcam.models",
    "camseg_pcam.augment",
    "camseg_pcam.regularize",
    "camseg_pcam.train",
    "camseg_pcam.wsss",
    "camseg_pcam.evaluate",
    "camseg_pcam.predict",
    "camseg_pcam.report",
    "camseg_pcam.cli",
    "camseg_pcam.slide_cli",
]


def _public(module: str) -> list[str]:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{module} has no __all__"
    return list(names)


def _tables(text: str) -> dict[str, set[str]]:
    """``{module: names}`` of the autosummary tables of an API page."""
    out: dict[str, set[str]] = {}
    module = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\.\. (?:current)?module:: (\S+)", line)
        if m:
            module = m.group(1)
        if line.startswith(".. autosummary::") and module is not None:
            for item in lines[i + 1 :]:
                if item and not item.startswith(" "):
                    break
                entry = item.strip()
                if entry and not entry.startswith(":"):
                    out.setdefault(module, set()).add(entry.lstrip("~"))
    return out


def test_tables_parser_finds_entries() -> None:
    text = ".. currentmodule:: a\n\n.. autosummary::\n   :nosignatures:\n\n   x\n   y\n\nz\n"
    assert _tables(text) == {"a": {"x", "y"}}


@pytest.mark.parametrize("module", CORE)
def test_every_public_name_is_in_the_api_page(module: str) -> None:
    tables = _tables((DOCS / "api.rst").read_text(encoding="utf-8"))
    missing = sorted(set(_public(module)) - tables.get(module, set()))
    assert not missing, (
        f"public names of {module} missing from docs/api.rst: {missing}. "
        "Hint: add them to the module's autosummary table (and document them on a topic page)."
    )


@pytest.mark.parametrize("module", EXAMPLE)
def test_every_example_module_is_on_the_example_api_page(module: str) -> None:
    pytest.importorskip("camseg_pcam")
    text = (DOCS / "pcam_api.rst").read_text(encoding="utf-8")
    assert re.search(rf"^\.\. automodule:: {re.escape(module)}$", text, re.M), module


def _built_inventory() -> dict[str, set[str]]:
    path = Path(os.environ.get("CAMSEG_DOCS_HTML", DOCS / "_build" / "html")) / "objects.inv"
    if not path.exists():
        pytest.skip("no docs build (run the sphinx-build of `make docs` first)")
    from sphinx.util.inventory import InventoryFile

    with path.open("rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    return {role: set(entries) for role, entries in inv.items()}


@pytest.mark.parametrize("module", CORE + EXAMPLE)
def test_every_public_name_is_in_the_built_inventory(module: str) -> None:
    if module.startswith("camseg_pcam"):
        pytest.importorskip("camseg_pcam")
    inv = _built_inventory()
    documented = set().union(*inv.values())
    mod = importlib.import_module(module)
    missing = []
    for name in _public(module):
        obj = getattr(mod, name)
        full = obj.__name__ if isinstance(obj, types.ModuleType) else f"{module}.{name}"
        if full not in documented:
            missing.append(name)
    assert not missing, (
        f"public names of {module} missing from the built docs inventory: {missing}. "
        "Hint: document them with an autodoc directive on a topic page."
    )


def test_intersphinx_files_match_their_script(tmp_path: Path) -> None:
    script = DOCS / "_inventories" / "make_inventories.py"
    spec = importlib.util.spec_from_file_location("_make_inventories", script)
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    for path in make.write_all(tmp_path):
        committed = DOCS / "_inventories" / path.name
        assert committed.exists(), f"{committed} is missing; run {script}"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale; run {script}"
