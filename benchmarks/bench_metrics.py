"""Speed of camseg.metrics on CPU: the batched threshold curve, and ROC AUC for information.

Method
------
* ``threshold_curve``: 1,024 maps of 96×96 (float32, uniform in [0, 1]) and random
  masks, 101 thresholds ``linspace(0, 1, 101)``, micro IoU and Dice. Compared with
  (a) the equivalent per-image, per-threshold NumPy loop (``maps[i] >= t`` and three
  ``count_nonzero`` per image and threshold; the issue's baseline), and (b) a
  stronger NumPy baseline that loops over thresholds only and is vectorised over
  images. All three results are checked to be equal before timing.
* ``roc_auc``: ``camseg.metrics.roc_auc`` vs ``sklearn.metrics.roc_auc_score`` on
  32,768 scores (the size of the PCam test split) and on the 9,437,184 pixels of
  the 1,024 maps (pixel-level AUROC), for information only.
* Every case is timed ``--repeats`` times (default 5) after one warm-up call, with
  ``time.perf_counter``; the table gives the median and the min-max spread. Ratios
  are medians from the same run. torch runs on one thread by default (``--threads``),
  like the NumPy loops, so the ratio compares algorithms, not core counts.

Run::

    python benchmarks/bench_metrics.py            # writes results/bench_metrics.{json,md}
    python benchmarks/bench_metrics.py --quick    # small smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camseg.metrics import roc_auc, threshold_curve

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def curve_loop_per_image(maps: np.ndarray, masks: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Micro IoU and Dice by the plain per-threshold, per-image loop."""
    out = np.zeros((2, thr.size))
    for j, t in enumerate(thr):
        tp = fp = fn = 0
        for i in range(maps.shape[0]):
            pred = maps[i] >= t
            m = masks[i]
            tp += np.count_nonzero(pred & m)
            fp += np.count_nonzero(pred & ~m)
            fn += np.count_nonzero(~pred & m)
        out[0, j] = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        out[1, j] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return out


def curve_loop_per_threshold(maps: np.ndarray, masks: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Micro IoU and Dice, loop over thresholds only, vectorised over images."""
    out = np.zeros((2, thr.size))
    n_true = np.count_nonzero(masks)
    for j, t in enumerate(thr):
        pred = maps >= t
        tp = np.count_nonzero(pred & masks)
        fp = np.count_nonzero(pred) - tp
        fn = n_true - tp
        out[0, j] = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        out[1, j] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="number of 96x96 maps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="64 maps, 3 repeats, no files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, repeats = (64, 3) if args.quick else (args.n, args.repeats)

    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(n, 96, 96, generator=gen)
    masks = torch.rand(n, 96, 96, generator=gen) < maps * 0.8  # correlated with the maps
    thr = torch.linspace(0, 1, 101)
    maps_np, masks_np, thr_np = maps.numpy(), masks.numpy(), thr.numpy()

    # correctness first
    ours = threshold_curve(maps, masks, thresholds=thr, metrics=("iou", "dice"))
    ref = curve_loop_per_image(maps_np, masks_np, thr_np)
    np.testing.assert_allclose(ours["iou"].numpy(), ref[0], rtol=1e-12)
    np.testing.assert_allclose(ours["dice"].numpy(), ref[1], rtol=1e-12)
    np.testing.assert_allclose(curve_loop_per_threshold(maps_np, masks_np, thr_np), ref)

    rows: list[dict[str, Any]] = []

    def add(case: str, impl: str, fn: Callable[[], Any], reps: int = repeats) -> dict[str, Any]:
        row = {"case": case, "impl": impl, **timed(fn, reps)}
        rows.append(row)
        print(f"{case:<42} {impl:<38} {row['median_s'] * 1e3:10.1f} ms", flush=True)
        return row

    case = f"threshold_curve, {n} maps 96x96, 101 thr"
    t_ours = add(
        case, "camseg.metrics.threshold_curve", lambda: threshold_curve(maps, masks, thresholds=thr)
    )
    t_img = add(
        case,
        "NumPy loop per threshold x image",
        lambda: curve_loop_per_image(maps_np, masks_np, thr_np),
    )
    t_thr = add(
        case,
        "NumPy loop per threshold (vectorised)",
        lambda: curve_loop_per_threshold(maps_np, masks_np, thr_np),
    )

    from sklearn.metrics import roc_auc_score

    ratios = {
        "threshold_curve_vs_per_image_loop": t_img["median_s"] / t_ours["median_s"],
        "threshold_curve_vs_per_threshold_numpy": t_thr["median_s"] / t_ours["median_s"],
    }
    for size, label in ((32768, "roc_auc, 32,768 scores"), (None, "roc_auc, pixels of all maps")):
        if size is None:
            s, y = maps.flatten(), masks.flatten()
        else:
            s = torch.rand(size, generator=gen)
            y = torch.rand(size, generator=gen) < s
        s_np, y_np = s.numpy(), y.numpy()
        assert abs(float(roc_auc(s, y)) - roc_auc_score(y_np, s_np)) < 1e-9
        a = add(label, "camseg.metrics.roc_auc", lambda s=s, y=y: roc_auc(s, y))
        b = add(label, "sklearn.metrics.roc_auc_score", lambda s=s_np, y=y_np: roc_auc_score(y, s))
        ratios[f"{label}: sklearn / camseg"] = b["median_s"] / a["median_s"]

    for k, v in ratios.items():
        print(f"{k}: {v:.1f}x")
    if args.quick:
        return

    meta = {
        "benchmark": "bench_metrics",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "repeats": repeats,
        "n_maps": n,
    }
    payload = {"meta": meta, "rows": rows, "ratios": ratios}
    lines = [
        "# bench_metrics",
        "",
        f"{meta['date']} · {meta['machine']} · {meta['cpu_count']} CPUs · "
        f"torch {meta['torch']} ({meta['torch_threads']} threads) · NumPy {meta['numpy']} · "
        f"median of {repeats} runs after one warm-up (min-max in brackets). "
        f"1-minute load average at the end: {meta['load_average_1min']} (a shared machine "
        "inflates absolute times; ratios are measured in the same run).",
        "",
        "| case | implementation | median (ms) | spread (ms) |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['impl']} | {r['median_s'] * 1e3:.1f} | "
            f"{r['min_s'] * 1e3:.1f}-{r['max_s'] * 1e3:.1f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f}x |" for k, v in ratios.items()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("bench_metrics.json", json.dumps(payload, indent=2) + "\n"),
        ("bench_metrics.md", "\n".join(lines) + "\n"),
    ):
        fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, RESULTS / name)
    print(f"wrote {RESULTS / 'bench_metrics.json'} and .md")


if __name__ == "__main__":
    main()
