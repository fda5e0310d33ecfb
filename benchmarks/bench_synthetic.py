"""Throughput of camseg.synthetic.make_patches on CPU (patches per second).

Method
------
* Work: ``make_patches(n, seed=1)`` with the default arguments (96×96 patches,
  label region 32, half positives, stain jitter 0.1, fat holes in a quarter of
  the patches), ``n = 2048`` (32 chunks of 64) unless ``--n`` says otherwise.
  The output (uint8 images, bool masks, int64 labels) is allocated by every
  call, as a user's call would.
* Timing (benchmarks/_common.py): one warm-up call, then ``--repeats`` calls
  (>= 5); median and quartiles of the wall time; patches/s is ``n`` over the
  median. The process CPU time of each call is recorded too: with one torch
  thread it is the work itself, less disturbed by other processes on a shared
  machine than the wall time.
* Two phases: torch on one thread (``torch.set_num_threads(1)``; the headline,
  the issue's "thousands of patches per second on one core") and torch's
  default number of threads. Switching the thread count between calls would
  rebuild the thread pool inside the timed region, so each phase sets it once.
* Unlike the memory benchmarks, the script does not lower glibc's mmap threshold:
  the generator reuses its scratch buffers between chunks, and the default
  allocator is what users run.
* Target (issue 3): >= 2,000 patches/s on one thread.

Run::

    python benchmarks/bench_synthetic.py            # writes results/bench_synthetic.{json,md}
    python benchmarks/bench_synthetic.py --quick    # small smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, summary, time_interleaved, write_results

import camseg
from camseg.synthetic import make_patches

TARGET = 2000.0  # patches/s on one thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2048, help="patches per call")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="256 patches, 5 repeats, no files")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    n = 256 if args.quick else args.n
    repeats = max(5, args.repeats if not args.quick else 5)

    phases = [1] if default_threads == 1 else [1, default_threads]
    stats: dict[str, dict[str, float]] = {}
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}
    for threads in phases:
        torch.set_num_threads(threads)
        name = f"make_patches, torch {threads} thread" + ("s" if threads > 1 else "")
        cpu: list[float] = []

        def call(cpu: list[float] = cpu) -> None:
            c0 = time.process_time()
            make_patches(n, seed=1)
            cpu.append(time.process_time() - c0)

        times = time_interleaved(
            {name: call}, repeats=repeats, warmup=1, device=torch.device("cpu")
        )
        stats[name] = summary(times[name])
        rates[name] = n / stats[name]["median"]
        cpu_rates[name] = n / statistics.median(cpu[1:])  # without the warm-up
    torch.set_num_threads(default_threads)
    one = next(iter(rates))

    info = machine()
    info["camseg"] = camseg.__version__
    info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    payload = {
        "benchmark": "camseg.synthetic.make_patches throughput",
        "n_patches": n,
        "size": 96,
        "repeats": repeats,
        "seconds": stats,
        "patches_per_second_median": rates,
        "patches_per_second_cpu_time_median": cpu_rates,
        "target_patches_per_second_1_thread": TARGET,
        "meets_target": rates[one] >= TARGET,
        "machine": info,
    }
    lines = [
        "# make_patches throughput (CPU)",
        "",
        f"`make_patches({n}, seed=1)`, 96×96 patches, default arguments; median of "
        f"{repeats} calls after a warm-up. Patches/s = {n} / median wall time; the last "
        "column uses the median process CPU time instead.",
        "",
        "| torch threads | median (ms) | q1–q3 (ms) | patches/s | patches/s (CPU time) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['median'] * 1e3:.0f} | {s['q1'] * 1e3:.0f}–{s['q3'] * 1e3:.0f} "
            f"| **{rates[name]:,.0f}** | {cpu_rates[name]:,.0f} |"
        )
    verdict = "met" if payload["meets_target"] else "NOT met"
    lines += [
        "",
        f"Target (issue 3): >= {TARGET:,.0f} patches/s on one thread: **{verdict}** "
        f"({rates[one]:,.0f}).",
        "",
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({default_threads} threads by default), camseg {info['camseg']}, {info['date']}; "
        f"1-minute load average {info['load_average_1min_at_end']} on {info['cpu_count']} "
        "CPUs at the end of the run.",
        "",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        write_results("bench_synthetic", payload, markdown)


if __name__ == "__main__":
    main()
