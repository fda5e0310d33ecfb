"""The code blocks of docs/migrating.rst run as shown (against the real pytorch-grad-cam)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("pytorch_grad_cam")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.rst"


def _blocks() -> list[str]:
    text = PAGE.read_text()
    out = []
    for m in re.finditer(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text):
        lines = [line[3:] if line.startswith("   ") else line for line in m.group(1).splitlines()]
        out.append("\n".join(lines))
    return out


def test_the_page_has_code():
    assert len(_blocks()) == 2


@pytest.mark.parametrize("index", range(2))
def test_code_block_runs(index):
    exec(compile(_blocks()[index], f"{PAGE.name}[{index}]", "exec"), {})
