"""The verdict paragraph of docs/wsss.rst, written from the committed benchmark result.

``benchmarks/results/wsss_preset.json`` (``python benchmarks/wsss_preset.py``) holds
the latest run. This writes ``wsss_verdict.inc`` from it at docs build time: for
every generator, the preset's gain over plain CAM against three times the seed
spread, and its distance to the fully supervised ceiling against the 0.05 the
issue asks for. The page's reading of the table can then never disagree with the
table. Run by ``docs/conf.py``, or by hand: ``python docs/_scripts/fig_wsss_numbers.py OUT``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "wsss_preset.json"

#: The preset must come within this micro IoU of the ceiling.
CEILING_GAP = 0.05


def _mean(runs: list[dict[str, Any]], key: str = "iou") -> float:
    return statistics.fmean(r[key] for r in runs)


def _std(runs: list[dict[str, Any]]) -> float:
    return statistics.stdev(r["iou"] for r in runs) if len(runs) > 1 else 0.0


def verdict(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The reStructuredText paragraph (a bullet per generator) for ``results``."""
    lines = []
    for gen, rows in results.items():
        if "preset" not in rows or "plain" not in rows:
            continue
        pre, plain = rows["preset"], rows["plain"]
        gain = _mean(pre) - _mean(plain)
        spread = max(_std(pre), _std(plain))
        head = f"preset {_mean(pre):.3f} against plain CAM {_mean(plain):.3f} micro IoU"
        head += f" ({gain:+.3f}"
        if len(pre) > 1:
            met = "met" if gain > 3 * spread else "NOT met"
            head += f"; three times the larger seed spread is {3 * spread:.3f}: {met})"
        else:
            head += ", one seed)"
        parts = [head]
        d_auc = _mean(pre, "auc") - _mean(plain, "auc")
        parts.append(f"AUC {_mean(pre, 'auc'):.3f} ({d_auc:+.3f})")
        if "ceiling" in rows:
            gap = _mean(rows["ceiling"]) - _mean(pre)
            ok = gap <= CEILING_GAP
            parts.append(
                f"ceiling {_mean(rows['ceiling']):.3f}, a gap of {gap:.3f} "
                f"({'within' if ok else 'NOT within'} {CEILING_GAP})"
            )
        lines.append(f"- *{gen}*: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def main(out: Path) -> list[Path]:
    """Write ``wsss_verdict.inc`` into ``out``; return it."""
    out.mkdir(parents=True, exist_ok=True)
    d = json.loads(RESULTS.read_text())
    text = verdict(d["results"])
    inc = out / "wsss_verdict.inc"
    tmp = inc.with_name(f".{inc.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, inc)
    return [inc]


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
