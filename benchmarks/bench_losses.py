"""Cost of CAM-regularised training steps on CPU, relative to a plain training step.

One training step = forward, loss, backward, optimiser step, for a ResNet-18
(torchvision, random init, 2 classes) on a batch of 96×96 patches. Variants:

- ``plain``: cross-entropy only;
- ``linear_cam + <loss>``: maps from the same forward pass (camseg.LayerCapture on
  ``layer4`` + camseg.functional.linear_cam, no ReLU, sigmoid, upsampled to 96×96),
  plus one loss that needs no extra pass, or all five of them;
- ``gradcam + all five``: maps by Grad-CAM at ``layer4`` with ``create_graph=True``
  (camseg.functional.gradcam on cap.grad), plus all five losses;
- ``linear_cam + equivariance``: one sampled D4 transform per step (one more
  forward and backward through the network).

Method: one torch thread (default); every variant runs ``--repeats`` times
``--steps`` steps after a warm-up; variants are interleaved round-robin so that
load changes on a shared machine hit them alike; the median wall time and the
median process CPU time per step are reported, with ratios to the plain step's
medians measured in the same run. Targets are judged on CPU time, which other
processes on a shared machine disturb less. Targets (issue 3): no-extra-pass losses
<= 1.10x, one equivariance transform <= 2.2x.

    python benchmarks/bench_losses.py            # writes benchmarks/results/bench_losses.*
    python benchmarks/bench_losses.py --quick    # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models import resnet18

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine

import camseg
from camseg import losses as L

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.steps, args.repeats = 4, 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = resnet18(num_classes=2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 96, 96, generator=g)
    y = (torch.rand(args.batch, generator=g) < 0.5).long()
    masks = torch.rand(args.batch, 96, 96, generator=g) < 0.3
    valid = torch.arange(args.batch) % 4 == 0  # a few images with pixel masks
    ones = torch.ones_like(y)

    def forward_linear(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with camseg.LayerCapture(model, "layer4") as cap:
            logits = model(images)
            raw = camseg.functional.linear_cam(cap.output, model.fc.weight, ones, relu=False)
        return logits, torch.sigmoid(camseg.functional.upsample(raw, (96, 96)))

    def forward_gradcam(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with camseg.LayerCapture(model, "layer4") as cap:
            logits = model(images)
            grads = cap.grad(logits, ones, create_graph=True)
            raw = camseg.functional.gradcam(cap.output, grads)
        maps = camseg.functional.normalize(camseg.functional.upsample(raw, (96, 96)), mode="max")
        return logits, maps

    no_pass: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "suppression": lambda m: L.suppression_loss(m, y),
        "center_evidence": lambda m: L.center_evidence_loss(m, y),
        "size": lambda m: L.size_loss(m, y),
        "smoothness": lambda m: L.smoothness_loss(m),
        "mask": lambda m: L.mask_loss(m, masks, valid),
    }

    def all_five(m: torch.Tensor) -> torch.Tensor:
        return sum((fn(m) for fn in no_pass.values()), torch.zeros(()))

    def step_with(
        forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
        reg: Callable[[torch.Tensor], torch.Tensor] | None,
        equivariance: bool = False,
    ) -> Callable[[], None]:
        def step() -> None:
            if forward is None:
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            else:
                logits, maps = forward(x)
                loss = F.cross_entropy(logits, y)
                if reg is not None:
                    loss = loss + reg(maps)
                if equivariance:
                    loss = loss + L.equivariance_loss(
                        lambda im: forward_linear(im)[1], x, maps, generator=g
                    )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    variants: dict[str, Callable[[], None]] = {"plain": step_with(None, None)}
    for name, fn in no_pass.items():
        variants[f"linear_cam + {name}"] = step_with(forward_linear, fn)
    variants["linear_cam + all five"] = step_with(forward_linear, all_five)
    variants["gradcam + all five"] = step_with(forward_gradcam, all_five)
    variants["linear_cam + equivariance (1 of D4)"] = step_with(
        forward_linear, None, equivariance=True
    )

    model.train()
    for step in variants.values():  # warm-up
        step()
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, step in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)

    base = statistics.median(times["plain"])
    base_cpu = statistics.median(cpu["plain"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        med_cpu = statistics.median(cpu[name])
        target = None
        if name != "plain":
            target = 2.2 if "equivariance" in name else 1.10
        rows.append(
            {
                "variant": name,
                "median_s": med,
                "min_s": min(ts),
                "max_s": max(ts),
                "ratio": med / base,
                "cpu_median_s": med_cpu,
                "cpu_ratio": med_cpu / base_cpu,
                "target_ratio": target,
                "meets_target": None if target is None else med_cpu / base_cpu <= target,
            }
        )
        print(
            f"{name:40s} {1e3 * med:8.1f} ms/step  x{med / base:5.2f}   "
            f"cpu {1e3 * med_cpu:8.1f} ms  x{med_cpu / base_cpu:5.2f}",
            flush=True,
        )
    if args.quick:
        return
    info = machine()
    info["camseg"] = camseg.__version__
    record = {
        "benchmark": "bench_losses",
        "machine": info,
        "config": {
            "model": "torchvision resnet18, 2 classes",
            "batch": args.batch,
            "input": [3, 96, 96],
            "steps_per_repeat": args.steps,
            "repeats": args.repeats,
            "optimizer": "SGD(momentum=0.9)",
        },
        "rows": rows,
        "times_s": times,
        "cpu_times_s": cpu,
    }
    RESULTS.mkdir(exist_ok=True)
    _write(RESULTS / "bench_losses.json", json.dumps(record, indent=2) + "\n")
    lines = [
        "# Cost of CAM-regularised training steps (CPU)",
        "",
        f"{info['date']}, {info['platform']}, {info['cpu_count']} CPUs, "
        f"{info['torch_threads']} torch threads, torch {info['torch']}. ResNet-18, batch "
        f"{args.batch}, 96×96; median of {args.repeats} repeats × {args.steps} steps, "
        "variants interleaved; ratio to the plain step of the same run. The machine is "
        "shared, so the targets are judged on process CPU time (`time.process_time`, one "
        "thread), which other processes disturb less than wall time.",
        "",
        "| variant | wall ms/step | wall ratio | CPU ms/step | CPU ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = "" if r["target_ratio"] is None else f"<= {r['target_ratio']:.2f}"
        met = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "no")
        lines.append(
            f"| {r['variant']} | {1e3 * r['median_s']:.1f} | {r['ratio']:.3f} "
            f"| {1e3 * r['cpu_median_s']:.1f} | {r['cpu_ratio']:.3f} | {target} | {met} |"
        )
    _write(RESULTS / "bench_losses.md", "\n".join(lines) + "\n")


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
