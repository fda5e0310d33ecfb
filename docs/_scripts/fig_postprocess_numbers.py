"""The benchmark sentence of docs/postprocess.rst, written from the committed results file.

``benchmarks/results/bench_postprocess.json`` (``python benchmarks/bench_postprocess.py``)
holds the latest run; this writes ``postprocess_bench.inc`` from it at docs build
time, so the page cannot quote a stale figure. Run by ``docs/conf.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _inc import write_inc

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "bench_postprocess.json"


def main(out: Path) -> list[Path]:
    """Write ``postprocess_bench.inc`` into ``out``; return it."""
    out.mkdir(parents=True, exist_ok=True)
    d = json.loads(RESULTS.read_text())
    s = d["seconds"]
    one = s["camseg.cams_to_masks, torch 1 thread"]["median"]
    loop1 = s["skimage per-image loop (phase with 1 torch thread)"]["median"]
    two = s["camseg.cams_to_masks, torch 2 threads"]["median"]
    loop2 = s["skimage per-image loop (phase with 2 torch threads)"]["median"]
    m = d["machine"]
    text = (
        f"The committed run ({m.get('date', 'date not recorded')}; "
        f"``benchmarks/results/bench_postprocess.md``; {d['n_maps']:,} maps of "
        f"{d['size']}×{d['size']}, median of {d['repeats']} interleaved runs; masks differing "
        f"from the loop's: {d['images_differing_from_skimage']}): with torch on one thread (the "
        f"resources the loop uses) the call took {one * 1e3:.1f} ms "
        f"({one / d['n_maps'] * 1e6:.0f} µs per map) and the loop {loop1 * 1e3:.0f} ms, "
        f"**{loop1 / one:.1f}× faster**; with torch's default two threads {two * 1e3:.1f} ms "
        f"against {loop2 * 1e3:.0f} ms, **{loop2 / two:.1f}×**.\n"
    )
    return [write_inc(out / "postprocess_bench.inc", text)]


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
