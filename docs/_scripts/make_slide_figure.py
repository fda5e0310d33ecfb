"""Make docs/_static/slide_demo.png: the slide-scale demo of examples/slide_demo.py.

Run from the repository root: ``python docs/_scripts/make_slide_figure.py``
(about a minute or two on a CPU). The figure is a small PNG (< 400 KB).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    spec = importlib.util.spec_from_file_location("slide_demo", ROOT / "examples" / "slide_demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    result = demo.run()
    out = ROOT / "docs" / "_static" / "slide_demo.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".slide_demo.tmp.png")
    demo.save_figure(result, str(tmp))
    tmp.replace(out)
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
