"""Writing the ``.inc`` files that docs pages include: atomically, so a failed build
never leaves half a paragraph for the next one to include."""

from __future__ import annotations

import os
from pathlib import Path


def write_inc(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``; return ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
