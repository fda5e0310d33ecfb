"""The WSSS preset against plain CAM and a fully supervised ceiling, over seeds and generators.

Every run goes through the example's own entry points, as ``camseg-pcam train`` and
``camseg-pcam evaluate`` do (:func:`camseg_pcam.train.train`,
:func:`camseg_pcam.wsss.train_preset`, :func:`camseg_pcam.evaluate.evaluate`), with the
demo's CPU recipe (small CNN of width 8, batch 64, lr 3e-3, 6 epochs). Rows:

- ``plain``: a GAP classifier trained on labels; masks by its recommended recipe (CAM,
  min-max, Otsu, gated by the classifier).
- ``regularised``: the same with the demo's CAM term ``{"smoothness": 1.0}``.
- ``stage1``: the preset's first stage alone (MIL head on dense maps, label-region crops).
- ``preset``: ``--preset wsss`` (stage 1, then two rounds of pseudo-mask self-training).
- ``ceiling``: the preset's model trained on the true train masks (``mask_supervision``).

Scored on the test split's exact masks: ``segmentation["recommended"]`` (micro IoU and
Dice, mean IoU over positives) and the test AUC, as mean ± std over training seeds.
Generators: ``camseg.synthetic`` at its defaults, ``benchmarks/_altgen.py`` (built
independently of it), and ``camseg.synthetic`` with changed parameters (robustness).
Runs are cached in the work folder, so an interrupted benchmark resumes.

    python benchmarks/wsss_preset.py                 # full run (about 45 min on 2 cores)
    python benchmarks/wsss_preset.py --quick         # smoke run, writes nothing
    python benchmarks/wsss_preset.py --cost          # the preset on 4,096 patches, timed

``--cost`` times the whole preset as a user runs it, ``camseg-pcam train --preset
wsss`` in a fresh process on 4,096 synthetic training patches with the small model and
the demo's recipe, then ``camseg-pcam evaluate``; it writes
``results/wsss_preset_cost.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _altgen import make_alt_patches
from _common import machine, uptime_text
from camseg_pcam.cli import DEMO_CAM
from camseg_pcam.evaluate import evaluate
from camseg_pcam.synthetic_io import write_pcam, write_split
from camseg_pcam.train import TrainConfig, train
from camseg_pcam.wsss import train_preset

RESULTS = Path(__file__).resolve().parent / "results"

#: generator name -> make_patches keyword arguments (None: the second generator).
GENERATORS: dict[str, dict[str, Any] | None] = {
    "synthetic": {},
    "altgen": None,
    "synthetic, tumor_fraction=0.3": {"tumor_fraction": 0.3},
    "synthetic, nuclear_contrast=0.6": {"nuclear_contrast": 0.6},
    "synthetic, stain_jitter=0.25, background=0.45": {"stain_jitter": 0.25, "background": 0.45},
}

ROWS = ("plain", "regularised", "stage1", "preset", "ceiling")


def _write_data(root: Path, gen: str, n: tuple[int, int, int]) -> Path:
    if (root / "done").exists():
        return root
    kwargs = GENERATORS[gen]
    if kwargs is None:
        for split, count, seed in zip(("train", "valid", "test"), n, (11, 12, 13)):
            images, labels, masks = make_alt_patches(count, seed=seed)
            write_split(root, split, images, labels, masks=masks)
    else:
        write_pcam(root, n=n, seed=100, **kwargs)
    (root / "done").write_text("")
    return root


def _run(data: Path, out: Path, row: str, seed: int, epochs: int) -> dict[str, Any]:
    done = out / "row.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    cfg = TrainConfig(
        data=str(data), out=str(out), model="small", width=8, epochs=epochs, batch_size=64,
        lr=3e-3, warmup_epochs=0.5, patience=0, seed=seed, device="cpu", progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    if row == "plain":
        train(cfg)
    elif row == "regularised":
        train(dataclasses.replace(cfg, cam=dict(DEMO_CAM), cam_warmup_epochs=1.0))
    elif row == "stage1":
        train(dataclasses.replace(cfg, head="mil", dense=True, crop=48))
    elif row == "preset":
        train_preset(cfg)
    else:  # the ceiling: the preset's model on the true masks
        train(dataclasses.replace(cfg, head="mil", dense=True, crop=48, mask_supervision=True))
    seconds = time.perf_counter() - t0
    r = evaluate(out, data, out / "eval", device="cpu", n_faithfulness=0, figures=False)
    rec = r["segmentation"]["recommended"]
    res = {
        "iou": rec["iou"], "dice": rec["dice"], "iou_pos": rec["iou_pos"],
        "recipe": rec["recipe"], "auc": r["classification"]["auc"], "train_s": seconds,
    }  # fmt: skip
    done.write_text(json.dumps(res))
    return res


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    lines = [
        "| generator | run | recipe | micro IoU | micro Dice | IoU (positives) | test AUC "
        "| train s | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for gen, rows in results.items():
        for row, runs in rows.items():
            lines.append(
                f"| {gen} | {row} | {runs[0]['recipe']} | {_ms([r['iou'] for r in runs])} | "
                f"{_ms([r['dice'] for r in runs])} | {_ms([r['iou_pos'] for r in runs])} | "
                f"{_ms([r['auc'] for r in runs])} | "
                f"{statistics.mean(r['train_s'] for r in runs):.0f} | {len(runs)} |"
            )
    return "\n".join(lines) + "\n"


def _cost(work: Path, n: tuple[int, int, int]) -> None:
    """Time ``train --preset wsss`` and ``evaluate`` through the command line."""
    data = _write_data(work / "cost_data", "synthetic", n)
    run = work / "cost_run"
    exe = [sys.executable, "-m", "camseg_pcam.cli"]
    train_cmd = [
        *exe, "train", "--preset", "wsss", "--data", str(data), "--out", str(run),
        "--model", "small", "--width", "8", "--epochs", "6", "--batch-size", "64",
        "--lr", "3e-3", "--warmup-epochs", "0.5", "--patience", "0", "--no-progress",
    ]  # fmt: skip
    eval_cmd = [*exe, "evaluate", "--run", str(run), "--data", str(data), "--out", str(run / "e")]
    load_before = uptime_text()
    times = {}
    for name, cmd in (("train --preset wsss", train_cmd), ("evaluate", eval_cmd)):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times[name] = time.perf_counter() - t0
    metrics = json.loads((run / "e" / "metrics.json").read_text())
    rec = metrics["segmentation"]["recommended"]
    info = machine()
    md = (
        "# Cost of the WSSS preset\n\n"
        f"`camseg-pcam train --preset wsss` on {n[0]:,} synthetic training patches ({n[1]:,} "
        "validation), small model (width 8), 6 epochs per stage, batch 64, "
        "one fresh process each, wall-clock seconds:\n\n| step | seconds |\n|---|---|\n"
        + "".join(f"| {k} | {v:.0f} |\n" for k, v in times.items())
        + f"\nTest split ({n[2]:,} patches): micro IoU {rec['iou']:.3f} ({rec['recipe']}), "
        f"AUC {metrics['classification']['auc']:.3f}.\n\nLoad (`uptime`): before "
        f"`{load_before}`; after `{uptime_text()}`.\n\nMachine: {info['platform']}, "
        f"{info['cpu_count']} CPUs, torch {info['torch']}; {info['date']}.\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wsss_preset_cost.md").write_text(md)
    print(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; writes nothing")
    ap.add_argument("--work", default=None, help="cache folder for data and runs")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds of the main rows")
    ap.add_argument("--cost", action="store_true", help="time the preset on 4,096 patches")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cost:
        _cost(Path(args.work or tempfile.mkdtemp(prefix="wsss_cost_")), (4096, 1024, 1024))
        return
    n = (256, 64, 128) if args.quick else (4096, 1024, 1024)  # the scale
    epochs = 1 if args.quick else 6
    seeds = [0] if args.quick else list(range(args.seeds))
    plan: dict[str, tuple[tuple[str, ...], list[int]]] = {
        "synthetic": (ROWS, seeds),
        "altgen": (("plain", "stage1", "preset", "ceiling"), seeds),
    }
    for gen in list(GENERATORS)[2:]:
        plan[gen] = (("plain", "preset"), [0])
    if args.quick:
        plan = {"synthetic": (("plain", "preset"), [0]), "altgen": (("preset",), [0])}
    work = Path(args.work or tempfile.mkdtemp(prefix="wsss_preset_"))
    load_before, t0 = uptime_text(), time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for g_i, (gen, (rows, gseeds)) in enumerate(plan.items()):
        data = _write_data(work / f"data{g_i}", gen, n)
        for row in rows:
            for seed in gseeds:
                r = _run(data, work / f"g{g_i}" / f"{row}-s{seed}", row, seed, epochs)
                results.setdefault(gen, {}).setdefault(row, []).append(r)
                print(json.dumps({"generator": gen, "row": row, "seed": seed, **r}), flush=True)
    elapsed = time.perf_counter() - t0
    table = _table(results)
    print(table)
    if args.quick:
        return
    info = {
        **machine(),
        "load_before": load_before,
        "load_after": uptime_text(),
        "elapsed_s": elapsed,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wsss_preset.json").write_text(
        json.dumps({"info": info, "results": results}, indent=2)
    )
    md = (
        "# WSSS preset vs plain CAM and a supervised ceiling\n\n"
        f"Patches per split (train, valid, test): {n}; the demo's CPU recipe, {epochs} epochs; "
        'mean ± std over training seeds. Recipe: each run\'s `segmentation["recommended"]`.\n\n'
        + table
        + f"\nThis invocation: {elapsed / 60:.0f} min (runs cached in its work folder by an "
        "earlier invocation are reused, not rerun). Load (`uptime`): before "
        f"`{load_before}`; after "
        f"`{info['load_after']}`.\n\nMachine: {info['platform']}, {info['cpu_count']} CPUs, "
        f"{info['torch_threads']} torch threads; torch {info['torch']}; {info['date']}.\n"
    )
    (RESULTS / "wsss_preset.md").write_text(md)


if __name__ == "__main__":
    main()
