"""``make demo``'s main job, timed as a user runs it: ``camseg-pcam demo`` from start to end.

Runs ``camseg-pcam demo --out TMP`` in a fresh process (the console script of
this interpreter's environment; synthetic data written, the baseline and the
WSSS preset trained and evaluated), ``--repeats`` times in fresh output folders,
and records the wall time of each (median reported; target <= 120 s on the
2-core machine), the load before and after, and the demo's own comparison
table of the last run (test AUC, the recommended masks' IoU). Set-up
(``.venv``) is not part of it, as in the README.

Run: ``python benchmarks/bench_demo.py`` (about 2 minutes per repeat on 2
cores). Writes results/bench_demo.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, publish, uptime_text

TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("camseg-pcam")
    load_before = uptime_text()
    walls: list[float] = []
    summary: dict = {}
    table = ""
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
            t0 = time.perf_counter()
            subprocess.run([str(exe), "demo", "--out", tmp], check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
            summary = json.loads((Path(tmp) / "summary.json").read_text())
            table = (Path(tmp) / "summary.md").read_text().split("\n\n", 1)[1]
            table = table.split("Total time")[0].strip()
    load_after = uptime_text()
    wall = statistics.median(walls)
    base, wsss = summary["baseline"], summary["wsss"]
    iou = {k: summary[k]["segmentation"]["recommended"]["iou"] for k in ("baseline", "wsss")}
    auc = {k: summary[k]["classification"]["auc"] for k in ("baseline", "wsss")}
    payload = {
        "machine": machine(),
        "uptime": {"before": load_before, "after": load_after},
        "wall_s": walls,
        "median_wall_s": wall,
        "target_s": TARGET_S,
        "iou": iou,
        "auc": auc,
        "summary": {"baseline": base, "wsss": wsss},
    }
    verdict = "met" if wall <= TARGET_S else "NOT met"
    publish(
        "bench_demo",
        payload,
        "bench_demo: `camseg-pcam demo`, end to end",
        [
            f"Wall time, median of {len(walls)}: **{wall:.0f} s** (target <= {TARGET_S:.0f} s: "
            f"{verdict}); each run: {', '.join(f'{w:.0f} s' for w in walls)}.",
            "",
            f"The preset against the baseline: micro IoU {iou['baseline']:.3f} -> "
            f"{iou['wsss']:.3f}, test AUC {auc['baseline']:.3f} -> {auc['wsss']:.3f}. The demo's "
            "own table (last run):",
            "",
            table,
            "",
        ],
        (load_before, load_after),
    )


if __name__ == "__main__":
    main()
