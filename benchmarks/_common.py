"""Shared helpers of the benchmark scripts: timing, peak memory, result files.

Method (see benchmarks/README.md): every candidate is warmed up, then timed
``repeats`` times, the candidates interleaved within each repeat so that a
slow phase of a shared machine hits all of them; we report the median and the
inter-quartile range, and ratios of medians from the same run. Peak memory on
CPU is the rise of the process's peak resident set (``VmHWM``) above the
resident set before the call, with the peak counter reset through
``/proc/self/clear_refs`` and glibc told to return large blocks to the system
(``MALLOC_MMAP_THRESHOLD_``), so freed memory of one candidate is not counted
for the next. On CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def ensure_malloc_env() -> None:
    """Re-exec the script with glibc returning large freed blocks to the OS."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved over ``repeats`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Extra memory at the peak of one call of ``fn`` (see the module docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    out = fn()
    peak = _status_kb("VmHWM")
    del out
    return (peak - base) * 1024


def summary(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {"median": statistics.median(samples), "q1": q[0], "q3": q[2], "n": len(samples)}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def uptime_text() -> str:
    """``uptime``'s line (load of a shared machine, recorded with the results)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in load_average())


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and ``os.replace``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode())


def write_results(name: str, payload: dict[str, Any], markdown: str) -> None:
    """Write ``results/<name>.json`` and ``.md`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(payload, indent=2) + "\n"), (".md", markdown)):
        write_text_atomic(RESULTS / f"{name}{suffix}", text)


def publish(
    name: str, payload: dict[str, Any], title: str, body: list[str], load: tuple[str, str]
) -> str:
    """Write ``results/<name>.{json,md}``: the title, ``body`` lines, load and machine lines.

    Returns the markdown (also printed).
    """
    md = "\n".join(
        [
            f"# {title}",
            "",
            *body,
            f"Load (`uptime`): before `{load[0]}`; after `{load[1]}`.",
            "",
            machine_line(payload["machine"]),
            "",
        ]
    )
    write_results(name, payload, md)
    print(md)
    return md


def machine_line(m: dict[str, Any]) -> str:
    """The closing line of a results table: the machine, versions and date of the run."""
    return (
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch "
        f"threads; Python {m['python']}, torch {m['torch']}; {m['date']}. The machine "
        "was shared: compare the ratios, not the absolute times."
    )
