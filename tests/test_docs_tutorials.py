"""The code blocks of the tutorial pages run as shown, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: page -> number of python code blocks it must hold
PAGES = {"training.rst": 3}


def _blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    out = []
    for m in re.finditer(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text):
        lines = [line[3:] if line.startswith("   ") else line for line in m.group(1).splitlines()]
        out.append("\n".join(lines))
    return out


@pytest.mark.parametrize("page", sorted(PAGES))
def test_tutorial_runs_in_order(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _blocks(page)
    assert len(blocks) == PAGES[page]
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page}[{i}]", "exec"), namespace)
    printed = capsys.readouterr().out
    if page == "training.rst":
        assert "['evidence', 'suppress', 'tv']" in printed
        assert "torch.Size([32, 24, 24]) True" in printed
        assert "{'linear': (8, 48, 48), 'grad': (8, 48, 48)}" in printed
