"""ROAD's noisy linear imputation: camseg (batched) vs. pytorch-grad-cam (per image).

Both candidates impute the same MoRF masks of the same images, with the noise
switched off so that the results can be compared:

- ``camseg``: ``camseg.metrics.noisy_linear_imputation`` on chunks of
  ``--batch`` (image, percentage) pairs, ``road_curve``'s default 64: float64
  conjugate gradients with a float32 multigrid preconditioner, all images and
  channels of a chunk at once;
- ``pytorch-grad-cam``: ``pytorch_grad_cam.metrics.road.NoisyLinearImputer``
  (the paper's code), one ``scipy.sparse`` system and ``spsolve`` per image
  and percentage, as its ``ROADMostRelevantFirst`` metrics call it.

Data: ``--n`` synthetic PCam-like patches 3 x 96 x 96 (``camseg.synthetic``,
float in [0, 1]) with CAM-like maps (the tumour mask pooled to 12 x 12, plus
noise, upsampled bilinearly), MoRF masks at 10, 20, ..., 90 % (the default
grid of ``road_curve``). Reported: the median (and IQR) of interleaved repeats
after one warm-up, the ratio of medians from the same run, and the largest
absolute difference between the two imputations over all pixels. torch runs
on ``--threads`` threads (default 1, like scipy's solver), so the ratio
compares algorithms, not core counts. Peak memory: the extra resident memory
of one call of each candidate (see benchmarks/README.md).

Run: ``python benchmarks/bench_road.py`` (``--quick`` for a smoke run that
writes nothing). Writes results/bench_road.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    ensure_malloc_env,
    machine,
    machine_line,
    peak_memory_bytes,
    summary,
    time_interleaved,
    write_results,
)

from camseg.metrics import noisy_linear_imputation
from camseg.synthetic import make_patches, to_tensor_images

#: road_curve's default percentages (10, 20, ..., 90 % of the pixels removed)
PERCENTAGES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)


def salience_rank(maps: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel by decreasing map value (ties in raster order), as road_curve's."""
    b, h, w = maps.shape
    order = torch.sort(maps.reshape(b, -1), dim=1, descending=True, stable=True).indices
    ranks = torch.arange(h * w).expand(b, -1)
    return torch.empty_like(order).scatter_(1, order, ranks).view(b, h, w)


def data(n: int, percentages: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(n, 3, 96, 96)`` and MoRF masks ``(P, n, 96, 96)``."""
    patches = make_patches(n, seed=0)
    images = to_tensor_images(patches.images)
    g = torch.Generator().manual_seed(1)
    coarse = F.adaptive_avg_pool2d(patches.masks.float()[:, None], 12)
    coarse = coarse + 0.3 * torch.rand(coarse.shape, generator=g)
    maps = F.interpolate(coarse, size=96, mode="bilinear", align_corners=False)[:, 0]
    rank = salience_rank(maps)
    masks = torch.stack([rank < int(p * 96 * 96 // 100) for p in percentages])
    return images, masks


def camseg_impute(images: torch.Tensor, masks: torch.Tensor, batch: int) -> torch.Tensor:
    p, n = masks.shape[:2]
    pairs_img = images.repeat(p, 1, 1, 1)  # (P n, 3, H, W), percentage-major
    pairs_mask = masks.reshape(p * n, *masks.shape[2:])
    out = [
        noisy_linear_imputation(pairs_img[s : s + batch], pairs_mask[s : s + batch], noise=0.0)
        for s in range(0, p * n, batch)
    ]
    return torch.cat(out).view(p, n, *images.shape[1:])


def grad_cam_impute(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imputer = NoisyLinearImputer(noise=0.0)
    out = torch.empty(masks.shape[0], *images.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # np.argwhere on a tensor
        for j in range(masks.shape[0]):
            for i in range(images.shape[0]):
                out[j, i] = imputer(images[i], (~masks[j, i]).float())  # 1 = known
    return out


def main() -> None:
    ensure_malloc_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=64, help="number of 3x96x96 images")
    parser.add_argument("--batch", type=int, default=64, help="pairs per camseg call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="camseg's device (reference: CPU)")
    parser.add_argument("--quick", action="store_true", help="8 images, 3 percentages, no files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, repeats = (8, 2) if args.quick else (args.n, max(5, args.repeats))
    percentages = (10.0, 50.0, 90.0) if args.quick else PERCENTAGES
    device = torch.device(args.device)

    images, masks = data(n, percentages)
    images_d, masks_d = images.to(device), masks.to(device)

    # same answer before timing anything
    ours = camseg_impute(images_d, masks_d, args.batch).cpu()
    ref = grad_cam_impute(images, masks)
    diff = (ours - ref).abs()
    max_diff = float(diff.max())
    per_pct = {f"{p:g}": float(diff[j].max()) for j, p in enumerate(percentages)}
    assert max_diff < 1e-4, max_diff
    print(f"max |camseg - pytorch-grad-cam| = {max_diff:.2e}", per_pct, flush=True)

    times = time_interleaved(
        {
            "camseg": lambda: camseg_impute(images_d, masks_d, args.batch),
            "pytorch-grad-cam": lambda: grad_cam_impute(images, masks),
        },
        repeats=repeats,
        warmup=1,
        device=device,
    )
    stats = {k: summary(v) for k, v in times.items()}
    memory_mb = {
        "camseg": peak_memory_bytes(lambda: camseg_impute(images_d, masks_d, args.batch), device)
        / 2**20,
        "pytorch-grad-cam": peak_memory_bytes(lambda: grad_cam_impute(images, masks), device)
        / 2**20,
    }
    pairs = n * len(percentages)
    ratio = stats["pytorch-grad-cam"]["median"] / stats["camseg"]["median"]
    for k, s in stats.items():
        print(f"{k:<18} {s['median']:.3f} s ({s['median'] / pairs * 1e3:.2f} ms per pair)")
    print(f"ratio of medians (pytorch-grad-cam / camseg): {ratio:.1f}x")
    if args.quick:
        return

    info = machine()
    payload = {
        "machine": info,
        "device": str(device),
        "images": {"n": n, "channels": 3, "height": 96, "width": 96},
        "percentages": list(percentages),
        "order": "morf",
        "noise": 0.0,
        "batch": args.batch,
        "repeats": repeats,
        "seconds": stats,
        "ms_per_pair": {k: s["median"] / pairs * 1e3 for k, s in stats.items()},
        "ratio_of_medians": ratio,
        "max_abs_diff": max_diff,
        "max_abs_diff_per_percentage": per_pct,
        "peak_extra_mb": memory_mb,
    }
    rows = [
        f"| {k} | {s['median']:.3f} ({s['q1']:.3f}-{s['q3']:.3f}) | "
        f"{s['median'] / pairs * 1e3:.2f} | {memory_mb[k]:.0f} | "
        + (f"{ratio:.1f}x |" if k == "camseg" else "1.0x |")
        for k, s in stats.items()
    ]
    md = "\n".join(
        [
            "# bench_road: noisy linear imputation, camseg batched vs. pytorch-grad-cam",
            "",
            f"{n} synthetic PCam-like patches 3 x 96 x 96, MoRF masks from CAM-like maps at "
            f"{', '.join(f'{p:g}' for p in percentages)} % ({pairs} image-percentage pairs), "
            f"noise off; camseg on {device} in chunks of {args.batch} pairs, "
            "pytorch-grad-cam's `NoisyLinearImputer` one pair at a time (scipy `spsolve`). "
            f"Median (IQR) of {repeats} interleaved repeats after one warm-up.",
            "",
            "| implementation | seconds | ms per pair | peak extra MB | speed-up |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Largest absolute difference between the two imputations: {max_diff:.2e} "
            "(images in [0, 1]; per percentage: "
            + ", ".join(f"{k} %: {v:.1e}" for k, v in per_pct.items())
            + "). The peak extra memory covers all pairs (camseg's outputs included).",
            "",
            machine_line(info),
            "",
        ]
    )
    write_results("bench_road", payload, md)
    print(md)


if __name__ == "__main__":
    main()
