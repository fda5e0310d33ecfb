"""The benchmark matrix: batched CAM cost against the forward pass, the autograd
lower bound and the peer libraries, in one command.

Axes: every extractor in ``camseg.__all__`` x torchvision ResNet-18/50,
DenseNet-121, EfficientNet-B0, ConvNeXt-Tiny and ViT-B/16 (tokens through
``reshape=``), all with random weights x input 96/224 px x a batch sweep (1 ...
the largest batch whose full autograd graph fits ``--mem-budget``) x layer depth
(last block, one earlier) x 1, 2 and 10 targets per image x fp32 / bf16
autocast x CPU / CUDA. Each configuration also times the ``no_grad`` forward,
the autograd lower bound and each installed peer (pytorch-grad-cam, torchcam,
Captum, MONAI), whose maps are compared with camseg's. The method is in
``benchmarks/README.md``; the engine in ``benchmarks/_harness.py``.

Suites (``--suite``):

- ``cpu`` (``make bench``): the documented subset that runs in about 15 minutes
  on a 2-core machine (see ``CPU_SUITE`` and the README);
- ``gpu`` (``make bench-gpu``): the GPU suite, every family at 224 px in fp32
  and bf16 over the batch sweep, the peers, and the GPU target configuration
  (ResNet-50 224 px, bf16 autocast, channels_last, the largest batch);
- ``full``: the whole Cartesian matrix on ``--device``;
- ``quick`` (``--quick``): tiny configurations for development and the test.

Run::

    python benchmarks/bench_matrix.py --suite cpu --extras   # make bench
    python benchmarks/bench_matrix.py --suite cpu --extras all  # rerun every other script too
    python benchmarks/bench_matrix.py --suite gpu --device cuda  # make bench-gpu
    python benchmarks/bench_matrix.py --quick                # smoke run

Writes ``benchmarks/results/matrix-<machine>.{json,md,png}`` (``--out`` to choose);
``--quick`` writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
import torch
from _common import RESULTS, load_average, machine, uptime_text, write_text_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

ALL_PEERS = tuple(H.PEERS)

# --------------------------------------------------------------------------- suites


def cpu_suite(device: str = "cpu") -> list[H.Config]:
    """``make bench``: about 10 minutes on a quiet 2-core CPU, every axis touched once.

    - ResNet-18 96 px, batch 1/4/16/64: Grad-CAM, Grad-CAM++ and all peers;
      at batch 64 also every other extractor and 2 and 10 targets (the
      time/memory-vs-batch plots, the K targets);
    - ResNet-18 96 px b64 at ``layer3`` (depth), ResNet-18 224 px b16 (image size);
    - ResNet-50 224 px b8 with every peer (the peer targets);
    - DenseNet-121, EfficientNet-B0, ConvNeXt-Tiny 96 px b16 (the CNN families);
    - ViT-B/16 96 px b4 on tokens, with pytorch-grad-cam and torchcam;
    - ResNet-18 96 px b4 in bf16 autocast (bf16 is emulated, slowly, on CPUs
      without bf16 instructions; the ratios still hold).
    """
    d = device
    out = [
        H.Config("resnet18", 96, b, device=d, peers=ALL_PEERS, groups=("sweep",))
        for b in (1, 4, 16)
    ]
    out += [
        H.Config(
            "resnet18",
            96,
            64,
            device=d,
            ks=(1, 2, 10),
            extractors=None,
            peers=ALL_PEERS,
            groups=("sweep", "k", "extractors", "size"),
        ),
        H.Config("resnet18", 96, 64, depth="early", device=d, groups=("depth",)),
        H.Config("resnet18", 224, 16, device=d, groups=("size",)),
        H.Config("resnet50", 224, 8, device=d, peers=ALL_PEERS, groups=("peers",)),
    ]
    out += [
        H.Config(m, 96, 16, device=d, groups=("family",))
        for m in ("densenet121", "efficientnet_b0", "convnext_tiny")
    ]
    out += [
        H.Config(
            "vit_b_16",
            96,
            4,
            device=d,
            peers=("pytorch-grad-cam", "torchcam"),
            groups=("family", "vit"),
        ),
        H.Config("resnet18", 96, 4, dtype="bf16", device=d, groups=("dtype",)),
    ]
    return out


def gpu_suite(
    device: str, budget: int, max_batch: int, models: tuple[str, ...] = tuple(H.MODELS)
) -> list[H.Config]:
    """``make bench-gpu``: every family at 224 px, fp32 and bf16, over the batch
    sweep (1, 4, 16, ... and the largest that fits); peers on ResNet-18/50 (the
    others with pytorch-grad-cam); depth, K and the GPU target configuration."""
    out: list[H.Config] = []
    for model in models:
        for dtype in ("fp32", "bf16"):
            base = H.Config(model, 224, 1, dtype=dtype, device=device)
            peers = ALL_PEERS if model in ("resnet18", "resnet50") else ("pytorch-grad-cam",)
            sweep = H.batch_sweep(base, budget, max_batch=max_batch, factor=4)
            for b in sweep:
                top = b == sweep[-1]
                out.append(
                    H.Config(
                        model,
                        224,
                        b,
                        dtype=dtype,
                        device=device,
                        peers=peers,
                        ks=(1, 2, 10) if top else (1,),
                        extractors=None if top else ("GradCAM", "GradCAMPlusPlus"),
                        groups=("sweep", "family", "size")
                        + (("peers",) if model == "resnet50" and dtype == "fp32" else ()),
                    )
                )
            out.append(
                H.Config(
                    model,
                    224,
                    sweep[-1],
                    depth="early",
                    dtype=dtype,
                    device=device,
                    groups=("depth",),
                )
            )
    if "resnet18" in models:
        b = min(256, max_batch)
        out.append(H.Config("resnet18", 96, b, device=device, peers=ALL_PEERS, groups=("size",)))
    if "resnet50" in models:
        target = H.Config("resnet50", 224, 1, dtype="bf16", device=device, channels_last=True)
        top = H.batch_sweep(target, budget, max_batch=max_batch)[-1]
        out.append(
            replace_cfg(target, batch=top, peers=("pytorch-grad-cam",), groups=("gpu-target",))
        )
    return out


def full_suite(
    device: str, budget: int, max_batch: int, models: tuple[str, ...] = tuple(H.MODELS)
) -> list[H.Config]:
    """The whole Cartesian matrix (hours on a CPU)."""
    out: list[H.Config] = []
    for model in models:
        for side in (96, 224):
            for dtype in ("fp32", "bf16"):
                base = H.Config(model, side, 1, dtype=dtype, device=device)
                for b in H.batch_sweep(base, budget, max_batch=max_batch):
                    for depth in ("last", "early"):
                        out.append(
                            H.Config(
                                model,
                                side,
                                b,
                                depth=depth,
                                dtype=dtype,
                                device=device,
                                ks=(1, 2, 10),
                                extractors=None,
                                peers=ALL_PEERS,
                                groups=("sweep", "family", "size", "depth", "k"),
                            )
                        )
    return out


def quick_suite(device: str) -> list[H.Config]:
    """Seconds: ResNet-18 at 32 px, batch 1 and 4, every extractor and peer."""
    return [
        H.Config("resnet18", 32, 1, device=device, peers=ALL_PEERS, groups=("sweep",)),
        H.Config(
            "resnet18",
            32,
            4,
            device=device,
            ks=(1, 2, 10),
            extractors=None,
            peers=ALL_PEERS,
            groups=("sweep", "k"),
        ),
    ]


def replace_cfg(cfg: H.Config, **kw: Any) -> H.Config:
    from dataclasses import replace

    return replace(cfg, **kw)


# --------------------------------------------------------------------------- extras
EXTRAS: dict[str, tuple[list[str], bool]] = {
    # name: (command, rerun by `--extras cheap`); the times are from a 2-core CPU
    "bench_losses": (["benchmarks/bench_losses.py"], False),  # ~7 min
    "bench_postprocess": (["benchmarks/bench_postprocess.py"], True),  # ~10 s
    "bench_slide": (["benchmarks/bench_slide.py"], True),  # ~1 min
    "bench_perturbation": (["benchmarks/bench_perturbation.py"], False),  # ~2.5 min
}
DEMO_CHEAP = False
"""Whether ``--extras cheap`` reruns the demo (minutes on 2 cores) or collects its last time."""


def run_extras(
    log: Any, *, mode: str = "all", previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The other costs: run each script (it writes its own results file) or, in
    ``mode="cheap"``, only the quick ones; collect every script's results JSON
    (with its date) and the demo's wall time into one dict."""
    out: dict[str, Any] = {}
    for name, (argv, cheap) in EXTRAS.items():
        entry: dict[str, Any] = {"command": shlex.join(["python", *argv]), "rerun": False}
        path = RESULTS / f"{name}.json"
        if mode == "all" or cheap:
            log(f"== extra: {name}")
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            entry.update(rerun=True, wall_s=round(wall, 1), returncode=proc.returncode)
            if proc.returncode:
                entry["stderr_tail"] = proc.stderr[-2000:]
            log(f"   {wall:.0f} s, exit {proc.returncode}")
        if path.exists() and entry.get("returncode", 0) == 0:
            entry["results"] = json.loads(path.read_text())
            entry["results_date"] = (entry["results"].get("machine") or {}).get("date")
        out[name] = entry
    old_demo = (previous or {}).get("demo")
    if mode == "all" or DEMO_CHEAP or not old_demo or "wall_s" not in old_demo:
        out["demo"] = run_demo(log)
    else:
        out["demo"] = {**old_demo, "rerun": False}
    return out


def run_demo(log: Any) -> dict[str, Any]:
    """Wall time of ``camseg-pcam demo`` (defaults) in a temporary folder."""
    exe = Path(sys.executable).with_name("camseg-pcam")
    if not exe.exists():
        return {"status": "skipped: camseg-pcam is not installed"}
    log("== extra: camseg-pcam demo")
    with tempfile.TemporaryDirectory(prefix="camseg-demo-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "demo", "--out", tmp], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        entry: dict[str, Any] = {
            "command": "camseg-pcam demo --out <tmp>",
            "rerun": True,
            "wall_s": round(wall, 1),
            "returncode": proc.returncode,
            "date": machine()["date"],
        }
        summary = Path(tmp) / "summary.json"
        if summary.exists():
            entry["summary"] = json.loads(summary.read_text())
        if proc.returncode:
            entry["stderr_tail"] = proc.stderr[-2000:]
    log(f"   {wall:.0f} s, exit {proc.returncode}")
    return entry


# --------------------------------------------------------------------------- output
def machine_slug(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{_cpu_name()} {os.cpu_count()}c"
    return re.sub(r"[^a-z0-9]+", "-", f"{device} {name}".lower()).strip("-")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, Any]:
    import importlib.metadata as md

    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "camseg", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    out["peers"] = H.installed_peers()
    return out


def to_markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        f"# camseg benchmark matrix: suite `{payload['suite']}` on {payload['machine_name']}",
        "",
        f"Command: `{payload['command']}`. {m['cpu_count']} CPUs ({m['processor']}), "
        f"{m['torch_threads']} torch threads"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; Python {m['python']}, torch {m['torch']}, torchvision "
        f"{payload['versions']['torchvision']}; {m['date']}.",
        f"Load (1/5/15 min) before: {_load(payload['load']['before'])}; after: "
        f"{_load(payload['load']['after'])}. Peers: "
        + ", ".join(
            f"{k} {v}" if v else f"{k} (not installed)"
            for k, v in payload["versions"]["peers"].items()
        )
        + ".",
        "",
        f"Median of {payload['settings']['repeats']} interleaved rounds after "
        f"{payload['settings']['warmup']} warm-up round(s); ratios are ratios of medians of "
        "the same configuration's run. Peak memory: "
        + payload["settings"]["memory_method"]
        + ". Method: benchmarks/README.md.",
        "",
        "## Targets",
        "",
        "| target | configuration | value | limit | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in payload["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["passed"]]
        v = "–" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"| {t['target']} | {t['config']} | {v} | {t['op']} {t['limit']} | {met} |")
    for cfg in payload["configs"]:
        lines += [
            "",
            f"## {cfg['id']} (layer `{cfg['layer']}`)",
            "",
            "| candidate | median ms | IQR ms | × forward | peak MiB | × forward "
            "| max abs diff vs camseg |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in cfg["rows"]:
            t = r.get("time_s")
            if t is None:
                lines.append(f"| {r['candidate']} | {r['status']} | | | | | |")
                continue
            mem = r.get("peak_mem_bytes")
            lines.append(
                f"| {r['candidate']} | {t['median'] * 1e3:.1f} | {t['q1'] * 1e3:.1f}–"
                f"{t['q3'] * 1e3:.1f} | {r.get('time_vs_forward', float('nan')):.3f} | "
                + ("–" if mem is None else f"{mem / 2**20:.1f}")
                + " | "
                + (f"{r['mem_vs_forward']:.2f}" if "mem_vs_forward" in r else "–")
                + " | "
                + (f"{r['agreement_max_abs_diff']:.3g}" if "agreement_max_abs_diff" in r else "")
                + " |"
            )
    extras = payload.get("extras") or {}
    if extras:
        lines += [
            "",
            "## Other costs (their own scripts, collected by this run)",
            "",
            "| script | rerun by this run | wall s | exit | results of |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, e in extras.items():
            where = f"results/{name}.md" if name != "demo" else "the demo's summary.json"
            date = e.get("results_date") or e.get("date") or e.get("status", "")
            lines.append(
                f"| {name} | {'yes' if e.get('rerun') else 'no'} | {e.get('wall_s', '–')} | "
                f"{e.get('returncode', '–')} | {where}, {date} |"
            )
    lines += ["", f"Total wall time of this run: {payload['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def _load(la: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in la)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("cpu", "gpu", "full", "quick"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="same as --suite quick")
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or auto (both when a GPU is present)"
    )
    parser.add_argument("--out", type=Path, help="results JSON (the .md and .png go beside it)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5, quick 3)")
    parser.add_argument("--warmup", type=int, help="warm-up rounds (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", help="comma-separated subset of " + ",".join(H.MODELS))
    parser.add_argument(
        "--mem-budget",
        type=float,
        help="GiB for the batch sweep (default: 4 on CPU, 80%% of the GPU's memory)",
    )
    parser.add_argument("--max-batch", type=int, default=1024)
    parser.add_argument(
        "--max-call-s",
        type=float,
        help="skip candidates whose call would take longer (default 10 s CPU, 5 s GPU)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's default, recorded)"
    )
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument(
        "--extras",
        nargs="?",
        const="cheap",
        choices=("cheap", "all"),
        help="the other costs: `all` reruns bench_losses, bench_postprocess, bench_slide and "
        "the demo (+15 min on 2 cores); `cheap` (the default of --extras) reruns the quick "
        "ones and collects the others' latest results files; both collect the JSON",
    )
    args = parser.parse_args(argv)
    suite = "quick" if args.quick else args.suite
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)

    devices = [args.device]
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available here")
    main_device = devices[-1]
    models = tuple(H.MODELS)
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        unknown = set(models) - set(H.MODELS)
        if unknown:
            parser.error(f"--models: unknown {sorted(unknown)}; expected some of {list(H.MODELS)}")
    configs: list[H.Config] = []
    for d in devices:
        dev = torch.device(d)
        if args.mem_budget is not None:
            budget = int(args.mem_budget * 2**30)
        elif dev.type == "cuda":
            budget = int(0.8 * torch.cuda.get_device_properties(dev).total_memory)
        else:
            budget = 4 * 2**30
        if suite == "cpu":
            configs += cpu_suite(d)
        elif suite == "gpu":
            configs += gpu_suite(d, budget, args.max_batch, models)
        elif suite == "full":
            configs += full_suite(d, budget, args.max_batch, models)
        else:
            configs += quick_suite(d)
    configs = [c for c in configs if c.model in models]

    repeats = args.repeats or (3 if suite == "quick" else 5)
    warmup = args.warmup or 1
    max_call = args.max_call_s or (5.0 if main_device.startswith("cuda") else 10.0)
    command = shlex.join(
        ["python", "benchmarks/bench_matrix.py", *(argv if argv is not None else sys.argv[1:])]
    )
    out = args.out
    if out is None and suite != "quick":
        out = RESULTS / f"matrix-{machine_slug(main_device)}.json"
    previous = None
    if out is not None and Path(out).exists():
        try:
            old = json.loads(Path(out).read_text())
            previous = old.get("extras") or {}
            for entry in previous.values():  # results of an older run: keep its date
                entry.setdefault("date", (old.get("machine") or {}).get("date"))
        except ValueError:
            previous = None
    payload = run(
        configs,
        suite=suite,
        devices=devices,
        repeats=repeats,
        warmup=warmup,
        seed=args.seed,
        memory=not args.no_memory,
        max_call_s=max_call,
        extras=args.extras,
        previous_extras=previous,
        command=command,
    )
    if out is not None:
        write_outputs(payload, out)
        print(f"[bench] wrote {out} (.md, .png)", flush=True)
    for t in payload["targets"]:
        if t["passed"] is False:
            print(f"[bench] target missed: {t['target']} on {t['config']}: {t['value']:.3f}")
    return payload


def run(
    configs: list[H.Config],
    *,
    suite: str,
    devices: list[str],
    repeats: int,
    warmup: int,
    seed: int = 0,
    memory: bool = True,
    max_call_s: float = 10.0,
    extras: str | None = None,
    previous_extras: dict[str, Any] | None = None,
    command: str = "",
    log: Any = None,
) -> dict[str, Any]:
    """Run ``configs`` and return the results payload (schema ``camseg-bench/1``)."""
    log = log or _logger()
    main_device = devices[-1]
    torch.manual_seed(seed)
    load_before = load_average()
    log(f"[bench] suite {suite}: {len(configs)} configurations; {uptime_text()}")
    started = time.perf_counter()
    installed = H.installed_peers()
    used = {p for cfg in configs for p in cfg.peers}
    preload = [imp for name, (_, imp) in H.PEERS.items() if installed[name] and name in used]
    results = []
    for i, cfg in enumerate(configs, 1):
        log(f"[bench] {i}/{len(configs)} after {time.perf_counter() - started:.0f} s")
        results.append(
            H.run_config(
                cfg,
                repeats=repeats,
                warmup=warmup,
                seed=seed,
                memory=memory,
                max_call_s=max_call_s,
                preload=preload,
                log=log,
            )
        )
    extra_results = run_extras(log, mode=extras, previous=previous_extras) if extras else {}
    load_after = load_average()
    log(f"[bench] done in {time.perf_counter() - started:.0f} s; {uptime_text()}")
    cpu_method = (
        "rise of VmHWM over VmRSS of one call in a fresh process per candidate "
        "(forked from a server that has only imported the libraries; batch-1 warm-up, "
        "peak reset through /proc/self/clear_refs; MALLOC_MMAP_THRESHOLD_=65536)"
    )
    cuda_method = "CUDA caching allocator peak above the allocation before the call"
    methods = [("CPU: " if len(devices) > 1 else "") + cpu_method] if "cpu" in devices else []
    if any(d.startswith("cuda") for d in devices):
        methods.append(("CUDA: " if len(devices) > 1 else "") + cuda_method)
    return {
        "schema": H.SCHEMA,
        "suite": suite,
        "device": ",".join(devices),
        "machine_name": machine_slug(main_device),
        "command": command,
        "machine": machine(),
        "versions": versions(),
        "load": {
            "before": list(load_before),
            "after": list(load_after),
            "uptime_after": uptime_text(),
        },
        "settings": {
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
            "torch_threads": torch.get_num_threads(),
            "max_call_s": max_call_s,
            "num_classes": H.NUM_CLASSES,
            "target_class": H.TARGET_CLASS,
            "memory_method": "; ".join(methods) if memory else "not measured",
        },
        "configs": results,
        "targets": H.evaluate_targets(results),
        "extras": extra_results,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def write_outputs(payload: dict[str, Any], out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(payload, indent=1) + "\n")
    write_text_atomic(out.with_suffix(".md"), to_markdown(payload))
    try:
        import _plots
    except ImportError:  # matplotlib is optional for the numbers
        return
    _plots.write_summary_png(payload, out.with_suffix(".png"))


def _logger() -> Any:
    def log(msg: str) -> None:
        print(msg, flush=True)

    return log


if __name__ == "__main__":
    main()
