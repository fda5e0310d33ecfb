"""Slide-scale demo: synthetic slide -> sliding-window CAM heatmap -> mask -> metrics.

Runs on a CPU in seconds:

1. make a synthetic H&E slide (3072 x 2048 pixels at 0.97 microns per pixel)
   with tumour regions whose mask is known exactly (``camseg.slide.make_slide``);
2. train a tiny GAP classifier with one tumour logit for a few epochs on tiles
   of a second, training slide (other seed; tiles labelled by their tumour
   fraction);
3. find the tissue on a coarse pyramid level, stream tissue tiles (96 pixels,
   stride 48) through the classifier and its per-location tumour probability
   (the closed-form CAM of the GAP + linear head without the ReLU, plus the
   bias, through a sigmoid: the map whose mean logit is the tile's logit), and
   stitch probabilities and maps with Gaussian blending
   (``camseg.slide.sliding_window``);
4. threshold the stitched heatmap into a tumour mask (``camseg.slide.slide_mask``),
   score it per slide at its Youden threshold (``camseg.slide.slide_metrics``),
   and classify the node from the largest tumour diameter in millimetres.

Usage::

    python examples/slide_demo.py                  # prints the metrics
    python examples/slide_demo.py --figure out.png # and saves a 4-panel figure
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import camseg.functional as CF
from camseg import metrics
from camseg.slide import (
    downsample_mask,
    make_slide,
    node_class,
    slide_mask,
    slide_metrics,
    slide_tissue_mask,
    sliding_window,
    tumor_regions,
)
from camseg.synthetic import to_tensor_images


class TinyGAPNet(nn.Module):
    """Three strided convolutions, global average pooling, a linear head.

    GroupNorm rather than BatchNorm: no running statistics, so a tiny, quickly
    trained model behaves the same on slide tiles as on its training batches.
    It sees tiles at half resolution (48 pixels for a 96-pixel tile), which is
    4x cheaper and plenty for this texture task.
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 5, stride=2, padding=2),
            nn.GroupNorm(4, width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.GroupNorm(4, 2 * width),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tumour logits ``(B, 1)``."""
        return self.fc(self.pool(self.features(x)).flatten(1))

    def tiles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tile probabilities (B,), per-location tumour probabilities (B, h, w))``.

        The per-location logit is :func:`camseg.functional.linear_cam` without the
        ReLU plus the bias; its mean over the locations is the tile's logit. The
        ReLU of a CAM would drop the evidence this model keeps negative (a tumour
        tile is one where the map is *less* negative), which inverts the heatmap.
        """
        f = self.features(x)
        ones = torch.ones(len(x), dtype=torch.long, device=x.device)
        logit_map = CF.linear_cam(f, self.fc.weight, ones, relu=False) + self.fc.bias[0]
        return torch.sigmoid(logit_map.mean(dim=(1, 2))), torch.sigmoid(logit_map)


def half(x: torch.Tensor) -> torch.Tensor:
    """The model's input transform: 2 x 2 average pooling."""
    return nn.functional.avg_pool2d(x, 2)


def training_tiles(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiles cut from a separate annotated training slide, half of them on tumour.

    The way slide classifiers are trained: tiles of annotated training slides,
    labelled by their tumour fraction, tumour oversampled to balance the classes.
    """
    slide = make_slide(height=1536, width=2048, tumors=4, seed=seed + 10, pool=64)
    g = torch.Generator().manual_seed(seed)
    t = 96
    tumour_px = slide.tumor.nonzero()
    tissue_px = slide.tissue.nonzero()
    on_tumour = tumour_px[torch.randint(len(tumour_px), (n // 2,), generator=g)]
    on_tissue = tissue_px[torch.randint(len(tissue_px), (n - n // 2,), generator=g)]
    centres = torch.cat([on_tumour, on_tissue])
    y0 = (centres[:, 0] - t // 2).clamp(0, slide.image.shape[0] - t)
    x0 = (centres[:, 1] - t // 2).clamp(0, slide.image.shape[1] - t)
    image = torch.from_numpy(slide.image)
    tiles = torch.stack([image[y : y + t, x : x + t] for y, x in zip(y0.tolist(), x0.tolist())])
    frac = torch.stack(
        [slide.tumor[y : y + t, x : x + t].float().mean() for y, x in zip(y0.tolist(), x0.tolist())]
    )
    return half(to_tensor_images(tiles)), (frac > 0.1).long()


def train(n: int, epochs: int, seed: int) -> TinyGAPNet:
    """Train on tiles of a training slide, labelled by tumour fraction > 10%."""
    torch.manual_seed(seed)
    x, y = training_tiles(n, seed)
    model = TinyGAPNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        order = torch.randperm(n)
        for i in range(0, n, 64):
            idx = order[i : i + 64]
            xb = x[idx]
            if torch.rand(()) < 0.5:
                xb = xb.flip(-1)
            if torch.rand(()) < 0.5:
                xb = xb.transpose(-1, -2)
            logits = model(xb)[:, 0]
            loss = nn.functional.binary_cross_entropy_with_logits(logits, y[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def run(
    *,
    height: int = 2048,
    width: int = 3072,
    n_train: int = 2048,
    epochs: int = 8,
    seed: int = 0,
    out_downsample: int = 4,
) -> dict[str, Any]:
    """The whole pipeline; returns the maps, masks and metrics."""
    t0 = time.perf_counter()
    slide = make_slide(height=height, width=width, tumors=3, seed=seed)
    reader = slide.reader(levels=4)
    t_slide = time.perf_counter() - t0

    model = train(n_train, epochs, seed)
    t_train = time.perf_counter() - t0 - t_slide

    tissue = slide_tissue_mask(reader, level=3)  # coarse level: 8x smaller
    with torch.inference_mode():
        maps = sliding_window(
            reader,
            model.tiles,
            tile=96,
            stride=48,
            batch_size=64,
            tissue=tissue,
            transform=half,
            output_downsample=out_downsample,
            mpp=0.97,
            progress=False,
        )
    t_infer = time.perf_counter() - t0 - t_slide - t_train

    truth = downsample_mask(slide.tumor, out_downsample)
    pred = slide_mask(maps, threshold="otsu", min_size=48)
    scores = slide_metrics(maps.cam, truth, valid=maps.weight > 0)
    assert maps.mpp is not None
    # regions closer than 75 microns count as one (the CAMELYON16 convention)
    true_regions = tumor_regions(truth, mpp=maps.mpp, merge_um=75.0)
    pred_regions = tumor_regions(pred, mpp=maps.mpp, merge_um=75.0)

    def largest(d: torch.Tensor) -> float:
        return float(d.max()) if d.numel() else 0.0

    slide_ids = torch.zeros(len(maps.tile_probs), dtype=torch.long)
    _, top5 = metrics.aggregate(maps.tile_probs, slide_ids, method="topk_mean", k=5)
    summary = {
        "slide": f"{width} x {height} px at {slide.mpp} um/px",
        "tiles_run": len(maps.coords),
        "seconds": {
            "slide": round(t_slide, 1),
            "train": round(t_train, 1),
            "inference": round(t_infer, 1),
        },
        "slide_score_top5_mean": round(float(top5[0]), 3),
        "per_slide_at_youden": {k: round(float(v), 3) for k, v in scores._asdict().items()},
        "otsu_mask_iou": round(float(metrics.iou(pred[None], truth[None], average="none")[0]), 3),
        "largest_tumour_mm": {
            "true": round(largest(true_regions.diameters_mm), 2),
            "predicted": round(largest(pred_regions.diameters_mm), 2),
        },
        "node_class": {
            "true": node_class(largest(true_regions.diameters_mm)),
            "predicted": node_class(largest(pred_regions.diameters_mm)),
        },
    }
    return {"slide": slide, "maps": maps, "truth": truth, "pred": pred, "summary": summary}


def save_figure(result: dict[str, Any], path: str) -> None:
    """Four panels: slide, true tumour, stitched CAM heatmap, predicted mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slide, maps = result["slide"], result["maps"]
    thumb = slide.image[::8, ::8]
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.9), constrained_layout=True)
    panels = [
        (thumb, "synthetic slide", None),
        (result["truth"].numpy(), "true tumour mask", "gray"),
        (maps.cam.numpy(), "stitched tumour map (gated)", "magma"),
        (result["pred"].numpy(), "predicted mask (Otsu)", "gray"),
    ]
    for ax, (img, title, cmap) in zip(axes, panels):
        ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    s = result["summary"]["per_slide_at_youden"]
    fig.suptitle(
        f"AUC {s['auc']:.3f}  sensitivity {s['sensitivity']:.3f}  specificity "
        f"{s['specificity']:.3f}  IoU {s['iou']:.3f} (per-slide Youden threshold)",
        fontsize=10,
    )
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-patches", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="save a PNG figure here")
    args = parser.parse_args(argv)
    result = run(
        height=args.height,
        width=args.width,
        n_train=args.train_patches,
        epochs=args.epochs,
        seed=args.seed,
    )
    print(json.dumps(result["summary"], indent=2))
    if args.figure:
        save_figure(result, args.figure)
    return result


if __name__ == "__main__":
    main()
