"""Speed of camseg.postprocess.cams_to_masks on CPU against the per-image scikit-image loop.

Method
------
* Data: 1,024 CAM-like maps of 96×96 (float32): random 6×6 grids cubed (a few hot
  cells per map), upsampled bilinearly and min-max normalised per map; tumour
  probabilities uniform in [0, 1] (about half the images are gated). Seeded.
* camseg: ``cams_to_masks(maps, threshold="otsu", probs=probs, min_prob=0.5,
  min_size=MIN_SIZE)``: one call into camseg's C kernel (``camseg._cpu``) that
  visits each map once: its range for the input checks (all maps), and for the
  kept maps the histogram (numpy.histogram's bins), Otsu's threshold, the
  comparison and the run-based small-object removal while the map is in
  cache; slices of the batch run in ``torch.get_num_threads()`` threads. The
  record says whether the extension was loaded; ``CAMSEG_NO_NATIVE=1`` times
  the torch/NumPy fallback instead.
* Reference: the equivalent per-image loop users write today: for every image
  with ``prob >= 0.5``, ``t = skimage.filters.threshold_otsu(m)``, then
  ``skimage.morphology.remove_small_objects(m >= t, max_size=MIN_SIZE - 1)``
  (the gated images are skipped, which helps the loop). NumPy arrays in, as a
  NumPy user would have them (no tensor conversion is charged to the loop).
* Both outputs are compared before timing (images that differ only because
  Otsu's between-class variance ties to float rounding are counted and reported).
* Timing (benchmarks/_common.py): one warm-up, then ``--repeats`` rounds (>= 5)
  with the candidates interleaved in each round; median and quartiles; the
  speed-up is the ratio of medians from this run. camseg is timed in two
  phases, each interleaved with the loop: torch on one thread (the resources
  the single-threaded loop uses; the headline figure) and torch's default
  number of threads.

Run::

    python benchmarks/bench_postprocess.py             # writes results/bench_postprocess.{json,md}
    python benchmarks/bench_postprocess.py --quick     # small smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import skimage
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, summary, time_interleaved, write_results

from camseg.postprocess import cams_to_masks, native_kernels

MIN_SIZE = 32


def make_maps(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=g) ** 3
    maps = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    maps = ((maps - lo) / (hi - lo)).contiguous()
    probs = torch.rand(n, generator=g)
    return maps, probs


def skimage_loop(maps: np.ndarray, probs: np.ndarray, min_size: int) -> np.ndarray:
    out = np.zeros(maps.shape, dtype=bool)
    for i in range(maps.shape[0]):
        if probs[i] < 0.5:
            continue
        m = maps[i]
        t = threshold_otsu(m)
        out[i] = remove_small_objects(m >= t, max_size=min_size - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="64 maps, 5 repeats, no files")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    n = 64 if args.quick else args.n
    repeats = max(5, 5 if args.quick else args.repeats)

    maps, probs = make_maps(n, args.size, seed=0)
    maps_np, probs_np = maps.numpy(), probs.numpy()

    ours = cams_to_masks(maps, probs=probs, min_prob=0.5, min_size=MIN_SIZE).numpy()
    ref = skimage_loop(maps_np, probs_np, MIN_SIZE)
    differing = int((ours != ref).reshape(n, -1).any(1).sum())
    if differing > max(1, n // 200):
        raise SystemExit(f"camseg and the skimage loop disagree on {differing} of {n} images")

    # one phase per torch thread count (switching the count between calls would
    # rebuild the thread pool inside the timed region); in each phase camseg and
    # the loop are interleaved, and the speed-up is the ratio from that phase
    loop = "skimage per-image loop"
    phases = [1] if default_threads == 1 else [1, default_threads]
    stats: dict[str, dict[str, float]] = {}
    speedups: dict[str, float] = {}
    for threads in phases:
        torch.set_num_threads(threads)
        name = f"camseg.cams_to_masks, torch {threads} thread" + ("s" if threads > 1 else "")
        fns = {
            name: lambda: cams_to_masks(maps, probs=probs, min_prob=0.5, min_size=MIN_SIZE),
            loop: lambda: skimage_loop(maps_np, probs_np, MIN_SIZE),
        }
        times = time_interleaved(fns, repeats=repeats, warmup=1, device=torch.device("cpu"))
        stats[name] = summary(times[name])
        stats[f"{loop} (phase with {threads} torch thread{'s' if threads > 1 else ''})"] = summary(
            times[loop]
        )
        speedups[name] = summary(times[loop])["median"] / stats[name]["median"]
    torch.set_num_threads(default_threads)
    one = next(iter(speedups))
    speedup = speedups[one]

    info = machine()
    info.update(
        numpy=np.__version__,
        scikit_image=skimage.__version__,
        camseg_native_kernels=native_kernels(),
    )
    info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    payload = {
        "benchmark": "cams_to_masks: Otsu + gate + remove_small_objects",
        "n_maps": n,
        "size": args.size,
        "min_size": MIN_SIZE,
        "gated_images": int((probs < 0.5).sum()),
        "images_differing_from_skimage": differing,
        "repeats": repeats,
        "seconds": stats,
        "speedup_median_1_thread": speedup,
        "speedups_median": speedups,
        "machine": info,
    }
    lines = [
        "# cams_to_masks vs the per-image scikit-image loop (CPU)",
        "",
        f"{n} maps of {args.size}×{args.size}, Otsu + gate (min_prob 0.5, "
        f"{payload['gated_images']} gated) + remove_small_objects (min_size {MIN_SIZE}); "
        f"median of {repeats} interleaved runs. Images whose masks differ from scikit-image's: "
        f"{differing} (Otsu near-ties).",
        "",
        "| implementation | median (ms) | q1–q3 (ms) | per map (µs) |",
        "|---|---:|---:|---:|",
    ]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['median'] * 1e3:.1f} | {s['q1'] * 1e3:.1f}–{s['q3'] * 1e3:.1f} "
            f"| {s['median'] / n * 1e6:.1f} |"
        )
    lines += [
        "",
        "Speed-up over the loop (ratio of medians within a phase): "
        + "; ".join(f"{k}: **{v:.1f}×**" for k, v in speedups.items())
        + ".",
        "",
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({default_threads} threads by default), NumPy {info['numpy']}, scikit-image "
        f"{info['scikit_image']}, {info['date']}; camseg C kernels loaded: "
        f"{info['camseg_native_kernels']}; 1-minute load average "
        f"{info['load_average_1min_at_end']} on {info['cpu_count']} CPUs at the end of the run.",
        "",
        "The machine is shared: with torch's default (multi-threaded) kernels, OpenMP",
        "worker threads wait on descheduled peers when the load exceeds the core count,",
        "which is what the multi-threaded phase shows; the single-threaded phase is the",
        "like-for-like comparison with the single-threaded loop.",
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        write_results("bench_postprocess", payload, markdown)


if __name__ == "__main__":
    main()
