"""Whole-slide heatmaps at scale, and batched ``sliding_window`` vs. a per-tile loop.

**Scale** (the default's main part): a synthetic 100,000 x 100,000 pixel slide
with sparse tissue -- a 4-level pyramid (downsample 1, 4, 16, 64) whose regions
are generated on the fly by a reader (``SyntheticWSI``: round tissue islands of
a random pink texture on grey glass), so no file of that size exists. The
pipeline, as a user runs it: ``slide_tissue_mask`` on level 3 (1562 x 1562,
read in bands), ``sliding_window`` with ``LinearCAM`` of a small GAP CNN (random
weights) over the tissue tiles of level 0 (256 px, stride 256, at least 40%
tissue), canvases at 1/16 (6250 x 6250 x 3 float32 = 470 MB as arrays) streamed
to ``.npy`` files with ``out=``, then ``write_tiff_overlay`` of the CAM.

- *Peak memory*: each run is a fresh subprocess; its ``VmHWM`` (peak resident
  set, including torch itself) is read at the end. Once with ``out=`` (canvases
  on disk) and once without (canvases in memory), for comparison.
- *Linear in tissue*: the same run at several tissue fractions; seconds per
  tissue tile should stay flat.
- *Throughput*: in a fresh process with glibc's default allocator settings,
  the heatmap (``sliding_window`` with reading, CAM, stitching and the band
  writes; tissue mask given) against the bare model forward
  ``model(tiles.float() / 255)`` over the same tissue tiles, held in memory as
  uint8, same batch size, both under ``torch.inference_mode``: interleaved
  repeats, ratio of medians (target >= 0.8). Also timed: reading alone
  (``read_tiles`` over the same tiles), which bounds the heatmap when the
  forward leaves no core free for the reader thread. Twice: the small CNN on the
  1% slide (a few ms per tile, so reading weighs), and a torchvision ResNet-18
  (random weights, 2 classes, ``layer4``) on the 0.25% slide, a model of the
  size users run on slides.

**Loop** (small): on a 1152 x 768 slide, read every tile (96 px, stride 48, no
tissue filter), run the classifier and the CAM extractor and stitch: batched
``sliding_window(..., batch_size=64)`` against the loop users write first (one
tile at a time, CAM at batch 1). GradCAM and LinearCAM; tiles/s (median, IQR),
the speed-up and the peak extra resident memory of one call.

Run: ``python benchmarks/bench_slide.py`` (about 5 minutes on 2 cores;
``--quick`` for a smoke run of a minute). Writes results/bench_slide.{json,md}.
See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ensure_malloc_env,
    machine,
    peak_memory_bytes,
    publish,
    summary,
    time_interleaved,
    uptime_text,
)

import camseg
from camseg.slide import (
    blend_window,
    check_region,
    make_slide,
    read_tiles,
    slide_tissue_mask,
    sliding_window,
    tile_grid,
    write_tiff_overlay,
)

TILE, STRIDE, BATCH = 96, 48, 64  # the loop section
SIDE, FACTOR, LEVELS = 100_000, 4, 4  # the scale section's slide
BIG_TILE, BIG_BATCH, OUT_DS, TISSUE_LEVEL = 256, 64, 16, 3


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


# --------------------------------------------------------------------------- scale


class SyntheticWSI:
    """A pyramidal slide generated on the fly: round tissue islands on grey glass.

    ``tissue`` is the fraction of the slide's area covered by ``islands``
    non-overlapping disks (placed in distinct cells of a grid, so the fraction is
    exact up to pixel rounding). Level ``k`` has downsample ``FACTOR**k``; a pixel
    is tissue when its centre, in level-0 coordinates, lies in a disk. Tissue pixels
    come from a fixed random pink texture, glass is grey (RGB 236).

    Reading is kept cheap (it stands in for a slide file's I/O and decoding): the
    disk is one precomputed stamp per level (centres on multiples of the coarsest
    downsample, so the stamps are exact), the texture a wrapped slice.
    """

    def __init__(self, *, side: int = SIDE, tissue: float = 0.01, islands: int = 24, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.side = side
        self.tissue = tissue
        q = FACTOR ** (LEVELS - 1)
        r = math.sqrt(tissue * side * side / (islands * math.pi))
        self.r = r
        cells = int(side // (2.4 * r + 2 * q))
        if cells * cells < islands:
            raise ValueError(f"{islands} islands of tissue {tissue} do not fit")
        pick = rng.choice(cells * cells, size=islands, replace=False)
        cell = side / cells
        jitter = max(0.0, (cell - 2.2 * r) / 2 - q)
        cy = (pick // cells + 0.5) * cell + rng.uniform(-jitter, jitter, islands)
        cx = (pick % cells + 0.5) * cell + rng.uniform(-jitter, jitter, islands)
        self.centres = (np.stack([cx, cy], axis=1) // q * q).astype(np.int64)
        self.stamps: dict[int, tuple[int, np.ndarray]] = {}
        base = np.array([190, 110, 170], np.int16)
        tex = np.clip(base + rng.integers(-50, 50, (512, 512, 3)), 0, 255).astype(np.uint8)
        self.texture = np.tile(tex, (3, 3, 1))  # wrapped: any slice of up to 1024 px
        self.max_pixels = 1 << 27

    level_count = LEVELS
    mpp = 0.25

    def dimensions(self, level: int) -> tuple[int, int]:
        n = self.side // FACTOR**level
        return n, n

    def downsample(self, level: int) -> float:
        return float(FACTOR**level)

    def _stamp(self, level: int) -> tuple[int, np.ndarray]:
        """``(half, disk)``: the disk at ``level``, centred on pixel ``half`` of a square."""
        if level not in self.stamps:
            ds = FACTOR**level
            half = math.ceil(self.r / ds) + 1
            c = (np.arange(-half, half) + 0.5) * ds  # pixel centres relative to the disk's
            self.stamps[level] = (half, c[None, :] ** 2 + c[:, None] ** 2 < self.r**2)
        return self.stamps[level]

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        level, x, y, w, h = check_region(self, level, x, y, w, h, max_pixels=self.max_pixels)
        ds = FACTOR**level
        out = np.full((h, w, 3), 236, np.uint8)
        half, disk = self._stamp(level)
        inside = None
        for cx, cy in self.centres // ds:
            x0, x1 = max(x, cx - half), min(x + w, cx + half)
            y0, y1 = max(y, cy - half), min(y + h, cy + half)
            if x0 >= x1 or y0 >= y1:
                continue
            if inside is None:
                inside = np.zeros((h, w), bool)
            part = disk[y0 - cy + half : y1 - cy + half, x0 - cx + half : x1 - cx + half]
            inside[y0 - y : y1 - y, x0 - x : x1 - x] |= part
        if inside is None:
            return out
        if w <= 1024 and h <= 1024:
            tex = self.texture[y % 512 : y % 512 + h, x % 512 : x % 512 + w]
        else:
            tex = self.texture[np.ix_((y + np.arange(h)) % 512, (x + np.arange(w)) % 512)]
        np.copyto(out, tex, where=inside[..., None])
        return out


def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def child(tissue: float, mode: str, workdir: str) -> None:
    """One end-to-end run in this (fresh) process; prints a JSON line."""
    torch.manual_seed(0)
    model = tiny_gap_net()
    base_kb = _vm_kb("VmRSS")
    t0 = time.perf_counter()
    reader = SyntheticWSI(tissue=tissue)
    mask = slide_tissue_mask(reader, level=TISSUE_LEVEL)
    t1 = time.perf_counter()
    out_dir = Path(workdir) / "maps" if mode == "disk" else None
    with torch.inference_mode(), camseg.LinearCAM(model, "7", head="10") as cam:
        maps = sliding_window(
            reader,
            cam,
            tile=BIG_TILE,
            tissue=mask,
            batch_size=BIG_BATCH,
            output_downsample=OUT_DS,
            out=out_dir,
            progress=False,
        )
    t2 = time.perf_counter()
    write_tiff_overlay(Path(workdir) / "heat.tif", maps.cam, mpp=maps.mpp)
    t3 = time.perf_counter()
    print(
        json.dumps(
            {
                "tissue": tissue,
                "mode": mode,
                "tiles": len(maps.coords),
                "canvas": list(maps.cam.shape),
                "seconds": {"tissue": t1 - t0, "heatmap": t2 - t1, "overlay": t3 - t2},
                "vmhwm_mb": _vm_kb("VmHWM") / 1024,
                "rss_before_mb": base_kb / 1024,
            }
        )
    )


def _child_json(args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run this script with ``args`` in a fresh process; its last stdout line, as JSON."""
    cmd = [sys.executable, __file__, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_child(tissue: float, mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_slide_") as tmp:
        return _child_json(["--child", str(tissue), mode, tmp])


def _iqr(st: dict) -> str:
    return f"{st['median']:.2f} ({st['q1']:.2f}-{st['q3']:.2f})"


def _throughput(
    model: nn.Module, layer: str, head: str, reader: SyntheticWSI, *, repeats: int
) -> dict:
    """Bare forward, reading alone and the heatmap over one slide's tissue tiles."""
    mask = slide_tissue_mask(reader, level=TISSUE_LEVEL)
    tmp = tempfile.TemporaryDirectory(prefix="bench_slide_")
    calls = itertools.count()
    with torch.inference_mode(), camseg.LinearCAM(model, layer, head=head) as cam:

        def heatmap():
            # a new directory per call, as a user's run writes: replacing the canvases
            # of the previous call would time the file system freeing (discarding) them
            return sliding_window(
                reader,
                cam,
                tile=BIG_TILE,
                tissue=mask,
                batch_size=BIG_BATCH,
                output_downsample=OUT_DS,
                out=Path(tmp.name) / f"maps{next(calls)}",
                progress=False,
            )

        coords = heatmap().coords  # also the warm-up
        tiles = read_tiles(reader, 0, coords, BIG_TILE)  # uint8, in memory

        def bare():
            for i in range(0, len(tiles), BIG_BATCH):
                model(tiles[i : i + BIG_BATCH].float().div_(255.0))

        def read():
            for i in range(0, len(coords), BIG_BATCH):
                read_tiles(reader, 0, coords[i : i + BIG_BATCH], BIG_TILE)

        model(tiles[:BIG_BATCH].float().div_(255.0))
        times = time_interleaved(
            {"heatmap": heatmap, "bare_forward": bare, "read": read},
            repeats=repeats,
            warmup=0,
            device=torch.device("cpu"),
        )
    tmp.cleanup()
    stats = {k: summary(v) for k, v in times.items()}
    n = len(coords)
    bare_s, read_s = stats["bare_forward"]["median"], stats["read"]["median"]
    medians = {k: v["median"] for k, v in stats.items()}
    print("throughput", type(model).__name__, n, medians, file=sys.stderr)
    return {
        "tiles": n,
        "tissue": reader.tissue,
        "seconds": stats,
        "heatmap_tiles_per_s": n / stats["heatmap"]["median"],
        "bare_tiles_per_s": n / bare_s,
        "ratio": bare_s / stats["heatmap"]["median"],
        "bound_no_overlap": bare_s / (bare_s + read_s),
    }


def throughput_child(tiny_tissue: float, resnet_tissue: float, repeats: int) -> None:
    """The throughput section in this (fresh) process; prints a JSON line."""
    import torchvision  # here, not at the top: the memory runs' RSS would include it

    torch.manual_seed(0)
    out = {
        "tiny": _throughput(
            tiny_gap_net(), "7", "10", SyntheticWSI(tissue=tiny_tissue), repeats=repeats
        ),
        "resnet18": _throughput(
            torchvision.models.resnet18(num_classes=2).eval(),
            "layer4",
            "fc",
            SyntheticWSI(tissue=resnet_tissue),
            repeats=repeats,
        ),
    }
    print(json.dumps(out))


def run_throughput_child(tiny_tissue: float, resnet_tissue: float, repeats: int) -> dict:
    # glibc at its defaults, as users run: the memory runs' MALLOC_* settings (which
    # unmap every freed block >= 64 kB) would time page faults, not the pipeline
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return _child_json(["--throughput", str(tiny_tissue), str(resnet_tissue), str(repeats)], env)


def scale_section(args: argparse.Namespace) -> tuple[dict, list[str]]:
    fractions = (0.0005, 0.001) if args.quick else (0.0025, 0.005, 0.01)
    main_fraction = fractions[-1]
    runs = [run_child(f, "disk") for f in fractions]
    memory_run = run_child(main_fraction, "memory")
    for r in [*runs, memory_run]:
        print("e2e", r)

    # throughput: heatmap vs. the bare forward over the same tiles, in one fresh process
    repeats = 1 if args.quick else max(3, args.repeats)
    throughput = run_throughput_child(main_fraction, fractions[0], repeats)
    payload = {
        "slide": {
            "side": SIDE,
            "levels": LEVELS,
            "factor": FACTOR,
            "tile": BIG_TILE,
            "stride": BIG_TILE,
            "output_downsample": OUT_DS,
            "tissue_level": TISSUE_LEVEL,
            "batch_size": BIG_BATCH,
        },
        "end_to_end": runs,
        "end_to_end_memory_canvases": memory_run,
        "throughput": throughput,
    }
    rows = [
        "## Scale: a 100,000 x 100,000 synthetic slide",
        "",
        f"Pyramid of {LEVELS} levels (downsample 1, 4, 16, 64) generated on the fly; tissue "
        f"mask on level {TISSUE_LEVEL}; tiles {BIG_TILE} px at stride {BIG_TILE} on level 0 "
        f"({(SIDE // BIG_TILE + 1) ** 2} in the grid, the tissue ones run); LinearCAM of a "
        f"small GAP CNN, batch {BIG_BATCH}; canvases at 1/{OUT_DS} "
        f"({SIDE // OUT_DS} x {SIDE // OUT_DS}); then the CAM written as a pyramidal TIFF. "
        "Each end-to-end run is a fresh process; peak RSS is its VmHWM (torch included).",
        "",
        "| tissue | canvases | tissue tiles | tissue mask s | heatmap s | ms / tile | overlay s "
        "| peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in [*runs, memory_run]:
        sec = r["seconds"]
        where = "on disk (`out=`)" if r["mode"] == "disk" else "in memory"
        rows.append(
            f"| {r['tissue']:.2%} | {where} | {r['tiles']} | {sec['tissue']:.1f} | "
            f"{sec['heatmap']:.1f} | {1000 * sec['heatmap'] / max(1, r['tiles']):.1f} | "
            f"{sec['overlay']:.1f} | {r['vmhwm_mb']:.0f} |"
        )
    rows += [
        "",
        f"RSS after importing torch and building the model: {runs[0]['rss_before_mb']:.0f} MB.",
        "",
        f"Throughput: median (IQR) of {repeats} interleaved repeats in one process, each "
        "model on the tissue tiles of its own slide. *read* is `read_tiles` alone over the "
        "same tiles in batches; *bound* is what the heatmap would reach if camseg added "
        "nothing but the reading on top of the forward: bare / (bare + read) when reading "
        "cannot overlap (both cores busy with the forward), 1.0 when it can.",
        "",
        "| model | tissue tiles | bare forward s | read s | heatmap s | heatmap tiles/s "
        "| heatmap / bare | bound |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (("tiny", "small GAP CNN (24 ch)"), ("resnet18", "ResNet-18")):
        t = throughput[name]
        st = t["seconds"]
        rows.append(
            f"| {label} | {t['tiles']} | {_iqr(st['bare_forward'])} | {_iqr(st['read'])} | "
            f"{_iqr(st['heatmap'])} | {t['heatmap_tiles_per_s']:.0f} | **{t['ratio']:.2f}x** | "
            f"{t['bound_no_overlap']:.2f}x |"
        )
    met = [
        label
        for name, label in (("tiny", "the small CNN"), ("resnet18", "ResNet-18"))
        if throughput[name]["ratio"] >= 0.8
    ]
    rows += [
        "",
        f"Target heatmap / bare >= 0.8: met by {' and '.join(met) if met else 'neither model'}. "
        "On 2 cores the forward keeps both cores busy, so the reader thread cannot hide "
        "its work and a model of a few ms per tile is bound by reading itself (the "
        "*bound* column); with more cores or a GPU the reading overlaps.",
        "",
    ]
    return payload, rows


# --------------------------------------------------------------------------- loop


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


def loop_section(args: argparse.Namespace) -> tuple[dict, list[str]]:
    side = (384, 576) if args.quick else (768, 1152)
    repeats = 2 if args.quick else max(3, args.repeats)
    torch.manual_seed(0)
    slide = make_slide(height=side[0], width=side[1], tumors=2, seed=0, pool=32)
    reader = slide.reader()
    n_tiles = len(tile_grid(reader.dimensions(0), tile=TILE, stride=STRIDE))
    model = tiny_gap_net()
    device = torch.device("cpu")
    rows = []
    payload: dict = {
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
    md = [
        "## Loop: batched sliding_window vs. a per-tile loop",
        "",
        f"Synthetic slide {side[1]} x {side[0]} px, tile {TILE}, stride {STRIDE} "
        f"({n_tiles} tiles, no tissue filter), tiny GAP CNN (random weights), "
        f"batch {BATCH}; median (IQR) of {repeats} interleaved repeats.",
        "",
        "| extractor | mode | tiles/s | seconds | peak extra MB | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    return payload, md


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(float(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--throughput":
        throughput_child(float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    ensure_malloc_env()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = uptime_text()
    scale_payload, scale_md = scale_section(args)
    loop_payload, loop_md = loop_section(args)
    load_after = uptime_text()
    payload = {
        "machine": machine(),
        "uptime": {"before": load_before, "after": load_after},
        "scale": scale_payload,
        "loop": loop_payload,
    }
    publish(
        "bench_slide",
        payload,
        "bench_slide: whole-slide heatmaps at scale; batched vs. per-tile loop",
        [*scale_md, *loop_md],
        (load_before, load_after),
    )


if __name__ == "__main__":
    main()
