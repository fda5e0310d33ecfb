"""Random-order PCam patch reads per second, one process (= one DataLoader worker).

A synthetic file in the exact PCam format (``x``: ``(N, 96, 96, 3)`` uint8,
random content) is written in three layouts: contiguous, chunked by 32 patches
and chunked by 1 patch, all uncompressed. Assumption, stated because we could
not check the official files here: the downloaded ``.h5.gz`` files are gzip
wrappers around uncompressed HDF5 datasets (gzip only shrinks them by ~15 %,
which it would not if the data inside were already deflated); their chunk
layout is unknown to us, hence the three layouts. A gzip-filtered layout is
also timed (camseg_pcam's fallback path).

Candidates, each reading random batches of 256 patches in shuffled order:

- ``camseg_pcam``: :meth:`camseg_pcam.data.PCamH5.__getitems__` (sorted,
  de-duplicated, rows copied from a memory map at offsets from the HDF5 layout);
- ``h5py_fancy``: one open handle, ``x[sorted_unique_indices]`` (h5py point
  selection), reordered;
- ``torchvision_style``: open the file, read one patch, close it, per patch
  (what torchvision's ``PCAM.__getitem__`` does).

The file is in the page cache (just written): this measures the reader, not the
disk. Median and IQR of 5 interleaved repeats.

Run: ``python benchmarks/bench_pcam_io.py [--n 8192] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
from _common import machine, summary, time_interleaved, write_results
from camseg_pcam.data import PCamH5, find_pcam_files
from camseg_pcam.synthetic_io import write_split

BATCH = 256


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.n, 96, 96, 3), dtype=np.uint8)
    y = rng.integers(0, 2, args.n)
    layouts = {"contiguous": None, "chunks_32": 32, "chunks_1": 1, "gzip_chunks_32": 32}
    results: dict[str, dict[str, dict[str, float]]] = {}
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for layout, rows in layouts.items():
            root = Path(tmp) / layout
            write_split(root, "test", x, y, chunk_rows=rows)
            if layout.startswith("gzip"):
                path = root / "camelyonpatch_level_2_split_test_x.h5"
                with h5py.File(path, "w") as fh:
                    fh.create_dataset("x", data=x, chunks=(32, 96, 96, 3), compression="gzip")
            files = find_pcam_files(root, "test")
            ds = PCamH5(files)
            handle = h5py.File(files.x, "r")["x"]
            batches = [rng.choice(args.n, BATCH, replace=False) for _ in range(args.batches)]
            # the baselines are orders of magnitude slower on chunked files: fewer patches
            slow = batches[:1] if rows is not None else batches[:2]
            few = [b[:16] for b in batches[:2]]

            def ours(ds: PCamH5 = ds, batches: list[np.ndarray] = batches) -> None:
                for b in batches:
                    ds.__getitems__(b.tolist())

            def fancy(h: h5py.Dataset = handle, batches: list[np.ndarray] = slow) -> None:
                for b in batches:
                    uniq, inv = np.unique(b, return_inverse=True)
                    h[uniq][inv]

            def reopen(path: Path = files.x, batches: list[np.ndarray] = few) -> None:
                for b in batches:
                    for i in b.tolist():
                        with h5py.File(path, "r") as fh:
                            fh["x"][i]

            counts = {
                "camseg_pcam": BATCH * len(batches),
                "h5py_fancy": BATCH * len(slow),
                "torchvision_style": sum(len(b) for b in few),
            }
            times = time_interleaved(
                {"camseg_pcam": ours, "h5py_fancy": fancy, "torchvision_style": reopen},
                repeats=args.repeats,
                warmup=1,
                device=device,
            )
            results[layout] = {}
            for name, t in times.items():
                s = summary([counts[name] / v for v in t])
                results[layout][name] = s
                print(f"{layout:>15} {name:>18}: {s['median']:10.0f} patches/s")
            handle.file.close()
    info = machine()
    lines = [
        "# PCam HDF5 random-order reads (patches/s, one process)",
        "",
        f"{info['date']}; {info['processor']}, {info['cpu_count']} CPUs; "
        f"torch {info['torch']}, h5py {h5py.version.version}; N = {args.n}, "
        f"batches of {BATCH}, median (IQR) of {args.repeats} interleaved repeats; "
        "file in the page cache.",
        "",
        "| layout | camseg_pcam | h5py fancy index | torchvision-style reopen | ratio vs fancy |",
        "|---|---|---|---|---|",
    ]
    for layout, r in results.items():
        cells = [
            f"{r[k]['median']:.0f} ({r[k]['q1']:.0f}-{r[k]['q3']:.0f})"
            for k in ("camseg_pcam", "h5py_fancy", "torchvision_style")
        ]
        ratio = r["camseg_pcam"]["median"] / r["h5py_fancy"]["median"]
        lines.append(f"| {layout} | {' | '.join(cells)} | {ratio:.1f}x |")
    lines += [
        "",
        "Target: >= 3,000 random-order patches/s per worker. Layouts: uncompressed "
        "contiguous / chunked by 32 or 1 patches (the official files' layout is an "
        "assumption, see the script), and gzip-filtered chunks (fallback path).",
        "",
    ]
    write_results(
        "bench_pcam_io",
        {"machine": info, "n": args.n, "batch": BATCH, "results": results},
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
