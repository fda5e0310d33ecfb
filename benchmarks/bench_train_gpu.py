"""Training throughput of the PCam example on a GPU: AMP, channels-last, data waiting.

Writes a PCam-format HDF5 file set with random content (throughput does not
depend on the pixels; ``--n`` patches, default 65,536 = a quarter of PCam's
train split, uncompressed, chunked by 32 patches) and runs the real training
loop (:func:`camseg_pcam.train.train`) of ResNet-18-GAP in four settings:
fp32, AMP (bf16 where supported, else fp16), channels-last, AMP +
channels-last. Each setting runs ``--epochs`` short epochs of
``--steps`` steps; the first is warm-up (cuDNN autotuning, allocator), the
median (IQR) over the others of images/s and of the share of time the loop
waited for the DataLoader is reported. The GPU is named in the results.

Run on a GPU machine: ``python benchmarks/bench_train_gpu.py`` (results in
``benchmarks/results/bench_train_gpu.{json,md}``). ``--smoke`` runs a tiny CPU
version (small CNN, a few steps) that checks the script and writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import machine, summary, write_results
from camseg_pcam.synthetic_io import write_split
from camseg_pcam.train import TrainConfig, train


def _write_data(root: Path, n: int, n_val: int) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("valid", n_val)):
        x = np.empty((count, 96, 96, 3), np.uint8)
        for s in range(0, count, 8192):  # bounded memory for large n
            e = min(count, s + 8192)
            x[s:e] = rng.integers(0, 256, (e - s, 96, 96, 3), dtype=np.uint8)
        write_split(root, split, x, rng.integers(0, 2, count), chunk_rows=32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run, writes nothing")
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    if args.smoke:
        args.n, args.model, args.batch_size, args.steps, args.epochs, args.workers = (
            128,
            "small",
            16,
            2,
            2,
            0,
        )
        device = "cpu"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("No GPU: run with --smoke for the CPU check.")
        device = "cuda"
    settings = {
        "fp32": {"amp": "none", "channels_last": False},
        "amp": {"amp": "auto", "channels_last": False},
        "channels_last": {"amp": "none", "channels_last": True},
        "amp+channels_last": {"amp": "auto", "channels_last": True},
    }
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        _write_data(data, args.n, max(args.batch_size, 256 if not args.smoke else 32))
        for name, extra in settings.items():
            cfg = TrainConfig(
                data=str(data),
                out=str(Path(tmp) / name),
                model=args.model,
                width=4 if args.smoke else 16,
                epochs=args.epochs,
                batch_size=args.batch_size,
                max_steps_per_epoch=args.steps,
                workers=args.workers,
                device=device,
                patience=0,
                progress=False,
                amp=extra["amp"],  # type: ignore[arg-type]
                channels_last=bool(extra["channels_last"]),
            )
            hist = train(cfg)["history"][1:]  # the first epoch is warm-up
            ips = [float(h["train_images_per_s"]) for h in hist]
            wait = [float(h["train_data_wait_share"]) for h in hist]
            results[name] = {"images_per_s": summary(ips), "data_wait_share": summary(wait)}
            print(
                f"{name:>18}: {statistics.median(ips):8.0f} images/s, "
                f"waiting for data {100 * statistics.median(wait):5.1f} % of the time"
            )
    if args.smoke:
        return
    info = machine()
    base = results["fp32"]["images_per_s"]["median"]  # type: ignore[index]
    lines = [
        "# PCam example: training throughput on a GPU",
        "",
        f"{info['date']}; GPU {info.get('gpu')}; torch {info['torch']}; {args.model}-GAP, "
        f"batch {args.batch_size}, {args.workers} DataLoader workers, {args.n} patches "
        f"(random content, PCam HDF5 format), median (IQR) over {args.epochs - 1} epochs "
        f"of {args.steps} steps after one warm-up epoch.",
        "",
        "| setting | images/s | speed-up vs fp32 | time waiting for data |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        ips, wait = r["images_per_s"], r["data_wait_share"]
        lines.append(
            f"| {name} | {ips['median']:.0f} ({ips['q1']:.0f}-{ips['q3']:.0f}) | "  # type: ignore[index]
            f"{ips['median'] / base:.2f}x | {100 * wait['median']:.1f} % |"  # type: ignore[index]
        )
    write_results(
        "bench_train_gpu",
        {"machine": info, "args": vars(args), "results": results},
        "\n".join(lines) + "\n",
    )


if __name__ == "__main__":
    main()
