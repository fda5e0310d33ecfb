"""Sliding-window slide heatmaps: batched ``sliding_window`` vs. a naive per-tile loop.

Both candidates do the same work on the same synthetic slide: read every tile
(96 pixels, stride 48 = tile / 2, no tissue filter so the tile count is fixed),
run the classifier and the CAM extractor, and stitch probability and CAM maps
with Gaussian blending weights, normalised by the summed weights.

- ``batched``: ``camseg.slide.sliding_window(..., batch_size=64)``;
- ``naive``: one tile at a time -- read, forward + CAM at batch 1, add the
  weighted tile into the canvases -- the loop users write first.

Extractors: ``GradCAM`` (forward + backward to the layer) and ``LinearCAM``
(closed form). Reported: tiles/s (median and IQR of interleaved repeats), the
speed-up (ratio of medians from the same run) and the peak extra resident
memory of one call (see benchmarks/README.md).

Run: ``python benchmarks/bench_slide.py`` (``--quick`` for a smoke run).
Writes results/bench_slide.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ensure_malloc_env,
    machine,
    machine_line,
    peak_memory_bytes,
    summary,
    time_interleaved,
    write_results,
)

import camseg
from camseg.slide import blend_window, make_slide, sliding_window, tile_grid

TILE, STRIDE, BATCH = 96, 48, 64


def tiny_gap_net(width: int = 24) -> nn.Module:
    """The classifier of examples/slide_demo.py (random weights)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 5, stride=2, padding=2),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 2),
    ).eval()


def naive(reader, cam, *, tile: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One tile at a time: read, CAM at batch 1, stitch."""
    width, height = reader.dimensions(0)
    window = blend_window(tile)
    acc_p = torch.zeros(height, width)
    acc_c = torch.zeros(height, width)
    wsum = torch.zeros(height, width)
    for x, y in tile_grid((width, height), tile=tile, stride=stride).tolist():
        region = torch.from_numpy(reader.read(0, x, y, tile, tile).copy())
        t = region.permute(2, 0, 1)[None].float() / 255
        res = cam.explain(t, 1, normalize="max", size="input")
        p = torch.softmax(res.logits.detach(), dim=1)[0, 1]
        m = res.maps.detach()[0] * p
        acc_p[y : y + tile, x : x + tile] += window * p
        acc_c[y : y + tile, x : x + tile] += window * m
        wsum[y : y + tile, x : x + tile] += window
    return acc_p / wsum, acc_c / wsum


def main() -> None:
    ensure_malloc_env()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    side = (384, 576) if args.quick else (768, 1152)
    repeats = 2 if args.quick else max(5, args.repeats)

    torch.manual_seed(0)
    slide = make_slide(height=side[0], width=side[1], tumors=2, seed=0, pool=32)
    reader = slide.reader()
    n_tiles = len(tile_grid(reader.dimensions(0), tile=TILE, stride=STRIDE))
    model = tiny_gap_net()
    device = torch.device("cpu")
    rows = []
    payload: dict = {
        "machine": machine(),
        "slide": {"height": side[0], "width": side[1], "tile": TILE, "stride": STRIDE},
        "tiles": n_tiles,
        "batch_size": BATCH,
        "results": {},
    }
    for name, cam in [
        ("GradCAM", camseg.GradCAM(model, "5")),
        ("LinearCAM", camseg.LinearCAM(model, "7", head="10")),
    ]:

        def batched(cam=cam):
            return sliding_window(
                reader, cam, tile=TILE, stride=STRIDE, batch_size=BATCH, progress=False
            )

        def loop(cam=cam):
            return naive(reader, cam, tile=TILE, stride=STRIDE)

        # same answer before timing anything
        a, b = batched(), loop()
        torch.testing.assert_close(a.prob, b[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.cam, b[1], rtol=1e-3, atol=1e-4)

        times = time_interleaved(
            {"batched": batched, "naive": loop}, repeats=repeats, warmup=1, device=device
        )
        mem = {k: peak_memory_bytes(f, device) for k, f in (("batched", batched), ("naive", loop))}
        res = {}
        for k, samples in times.items():
            s = summary(samples)
            res[k] = {
                "seconds": s,
                "tiles_per_s": n_tiles / s["median"],
                "peak_extra_mb": mem[k] / 2**20,
            }
        speedup = res["naive"]["seconds"]["median"] / res["batched"]["seconds"]["median"]
        res["speedup"] = speedup
        payload["results"][name] = res
        for k in ("naive", "batched"):
            s = res[k]["seconds"]
            rows.append(
                f"| {name} | {k} | {res[k]['tiles_per_s']:.0f} | {s['median']:.3f} "
                f"({s['q1']:.3f}-{s['q3']:.3f}) | {res[k]['peak_extra_mb']:.1f} | "
                + (f"{speedup:.1f}x |" if k == "batched" else "1.0x |")
            )
        print(name, f"speed-up {speedup:.1f}x", {k: round(res[k]["tiles_per_s"]) for k in times})

    m = payload["machine"]
    md = "\n".join(
        [
            "# bench_slide: sliding-window heatmaps, batched vs. per-tile loop",
            "",
            f"Synthetic slide {side[1]} x {side[0]} px, tile {TILE}, stride {STRIDE} "
            f"({n_tiles} tiles, no tissue filter), tiny GAP CNN (random weights), "
            f"batch {BATCH}; median (IQR) of {repeats} interleaved repeats.",
            "",
            "| extractor | mode | tiles/s | seconds | peak extra MB | speed-up |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            machine_line(m),
            "",
        ]
    )
    write_results("bench_slide", payload, md)
    print(md)


if __name__ == "__main__":
    main()
