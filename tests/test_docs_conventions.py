"""The examples of docs/conventions.rst run and print what the page shows."""

from __future__ import annotations

import doctest
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "conventions.rst"


def test_conventions_page_examples() -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testfile(str(PAGE), module_relative=False, optionflags=flags)
    assert attempted >= 20, f"only {attempted} examples found on {PAGE.name}"
    assert failed == 0
