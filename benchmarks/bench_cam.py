"""Batched CAM cost against a plain forward pass and against pytorch-grad-cam.

For each configuration (model, input size, batch) it times, interleaved in one
run:

- ``forward``: ``model(x)`` under ``torch.no_grad()`` -- the lower bound;
- ``forward_graph``: ``model(x)`` recording the full autograd graph (memory only
  matters here: it is what a full backward has to keep);
- camseg ``GradCAM`` / ``GradCAMPlusPlus`` at ``layer4`` (maps upsampled to the
  input and min-max normalised, as users call them), and ``LinearCAM``;
- pytorch-grad-cam's ``GradCAM`` / ``GradCAMPlusPlus`` on the same layer;
- 1 versus 10 targets per image (camseg, one batched backward).

Run: ``python benchmarks/bench_cam.py`` (``--quick`` for a smoke run,
``--device cuda`` on a GPU). Writes results/bench_cam.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ensure_malloc_env,
    machine,
    peak_memory_bytes,
    summary,
    time_interleaved,
    write_results,
)

import camseg

CONFIGS = {
    "resnet18@96 b64": (torchvision.models.resnet18, 96, 64),
    "resnet50@224 b16": (torchvision.models.resnet50, 224, 16),
}


def bench_config(name, ctor, side, batch, device, repeats, warmup, with_reference):
    torch.manual_seed(0)
    model = ctor(weights=None, num_classes=2).eval().to(device)
    x = torch.rand(batch, 3, side, side, device=device)
    gradcam = camseg.GradCAM(model, "layer4")
    gradcam_pp = camseg.GradCAMPlusPlus(model, "layer4")
    linear = camseg.LinearCAM(model, "layer4", head="fc")

    def forward():
        with torch.no_grad():
            return model(x)

    def forward_graph():
        out = model(x)
        return out

    fns = {
        "forward": forward,
        "camseg GradCAM": lambda: gradcam(x, targets=1),
        "camseg GradCAM++": lambda: gradcam_pp(x, targets=1),
        "camseg LinearCAM": lambda: linear(x, targets=1),
    }
    if with_reference:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        ref_targets = [ClassifierOutputTarget(1)] * batch
        ref_gc = pgc.GradCAM(model=model, target_layers=[model.layer4])
        ref_pp = pgc.GradCAMPlusPlus(model=model, target_layers=[model.layer4])
        fns["pytorch-grad-cam GradCAM"] = lambda: ref_gc(input_tensor=x, targets=ref_targets)
        fns["pytorch-grad-cam GradCAM++"] = lambda: ref_pp(input_tensor=x, targets=ref_targets)

    times = time_interleaved(fns, repeats=repeats, warmup=warmup, device=device)
    mem_fns = dict(fns, forward_graph=forward_graph)
    memory = {
        k: sorted(peak_memory_bytes(fn, device) for _ in range(3))[1] for k, fn in mem_fns.items()
    }
    if with_reference:
        ref_gc.activations_and_grads.release()
        ref_pp.activations_and_grads.release()
    model.zero_grad(set_to_none=True)
    return {k: summary(v) for k, v in times.items()}, memory


def bench_targets(device, repeats, warmup, side, batch):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval().to(device)
    x = torch.rand(batch, 3, side, side, device=device)
    cam = camseg.GradCAM(model, "layer4")
    ten = torch.arange(10, device=device).expand(batch, 10)
    fns = {
        "1 target": lambda: cam(x, targets=1),
        "10 targets": lambda: cam(x, targets=ten),
    }
    times = time_interleaved(fns, repeats=repeats, warmup=warmup, device=device)
    return {k: summary(v) for k, v in times.items()}


def main() -> None:
    ensure_malloc_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, results not written")
    parser.add_argument("--no-reference", action="store_true", help="skip pytorch-grad-cam")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 2 if args.quick else args.repeats
    warmup = 1 if args.quick else 2
    configs = (
        {"resnet18@32 b4 (quick)": (torchvision.models.resnet18, 32, 4)} if args.quick else CONFIGS
    )

    results = {}
    lines = []
    for name, (ctor, side, batch) in configs.items():
        times, memory = bench_config(
            name, ctor, side, batch, device, repeats, warmup, not args.no_reference
        )
        fwd_t = times["forward"]["median"]
        fwd_m = max(memory["forward"], 1)
        rows = {}
        for k, s in times.items():
            rows[k] = {
                "time_s": s,
                "time_vs_forward": s["median"] / fwd_t,
                "peak_mem_bytes": memory[k],
                "peak_mem_vs_forward": memory[k] / fwd_m,
            }
        rows["forward_graph"] = {
            "peak_mem_bytes": memory["forward_graph"],
            "peak_mem_vs_forward": memory["forward_graph"] / fwd_m,
        }
        speedups = {}
        if not args.no_reference:
            speedups = {
                "GradCAM": times["pytorch-grad-cam GradCAM"]["median"]
                / times["camseg GradCAM"]["median"],
                "GradCAM++": times["pytorch-grad-cam GradCAM++"]["median"]
                / times["camseg GradCAM++"]["median"],
            }
        results[name] = {"rows": rows, "speedup_vs_pytorch_grad_cam": speedups}
        lines.append(f"\n### {name}\n")
        lines.append(
            "| candidate | median time (s) | IQR (s) | time / forward "
            "| peak extra memory (MiB) | memory / forward |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for k, r in rows.items():
            if "time_s" in r:
                t = r["time_s"]
                lines.append(
                    f"| {k} | {t['median']:.4f} | {t['q1']:.4f}–{t['q3']:.4f} | "
                    f"{r['time_vs_forward']:.3f} | {r['peak_mem_bytes'] / 2**20:.1f} | "
                    f"{r['peak_mem_vs_forward']:.2f} |"
                )
            else:
                lines.append(
                    f"| {k} (full graph, memory only) | – | – | – | "
                    f"{r['peak_mem_bytes'] / 2**20:.1f} | {r['peak_mem_vs_forward']:.2f} |"
                )
        for k, v in speedups.items():
            lines.append(f"\ncamseg {k} is **{v:.2f}×** faster than pytorch-grad-cam's.")
        print("\n".join(lines[-(len(rows) + 4 + len(speedups)) :]), flush=True)

    side, batch = (32, 4) if args.quick else (96, 64)
    tg = bench_targets(device, repeats, warmup, side, batch)
    ratio = tg["10 targets"]["median"] / tg["1 target"]["median"]
    results[f"targets resnet18@{side} b{batch} (10 classes)"] = {
        "times": tg,
        "ratio_10_vs_1": ratio,
    }
    lines.append(f"\n### 10 targets per image, resnet18@{side} b{batch}\n")
    lines.append(
        f"1 target: {tg['1 target']['median']:.4f} s; "
        f"10 targets: {tg['10 targets']['median']:.4f} s; "
        f"ratio **{ratio:.2f}×** (one batched backward)."
    )
    print(lines[-1], flush=True)

    info = machine()
    header = (
        "# bench_cam: batched CAM cost\n\n"
        f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), device `{device}`"
        + (f" ({info['gpu']})" if "gpu" in info else "")
        + f", {info['date']}.\n\nCommand: `python benchmarks/bench_cam.py`"
        f"{' --device ' + args.device if args.device != 'cpu' else ''}. Median of {repeats} "
        "interleaved runs after warm-up; ratios from the same run; peak memory is the rise of "
        "the peak resident set over the call (CPU) or of the CUDA allocator's peak.\n"
    )
    if not args.quick:
        suffix = "" if device.type == "cpu" else f"_{device.type}"
        write_results(
            f"bench_cam{suffix}",
            {"machine": info, "device": str(device), "repeats": repeats, "results": results},
            header + "\n".join(lines) + "\n",
        )


if __name__ == "__main__":
    main()
