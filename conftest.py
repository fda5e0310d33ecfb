"""Repository-wide pytest setup, for the tests and the doctests of every package.

Every test, doctests included, gets its own temporary folder as Python's default
(``tempfile.gettempdir()``), so the ``tempfile.mkdtemp()`` of a docstring example
lands in pytest's managed, pruned folders instead of piling up in the system's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_tempdir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a folder of its own, not inside ``tmp_path``: tests assert what tmp_path holds
    scratch: Path = tmp_path_factory.mktemp("tempfile")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
