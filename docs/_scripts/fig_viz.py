"""The figure of docs/viz.rst: camseg.viz's overlays on synthetic patches.

The maps are the patches' true tumor masks blurred (a stand-in for a CAM, so the
figure needs no trained model); the point is what each drawing function shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from camseg import viz
from camseg.synthetic import make_patches, to_tensor_images


def main(out: Path) -> list[Path]:
    """Draw the figure into the folder ``out``; return the files written."""
    patches = make_patches(48, seed=2)
    pick = torch.cat(
        [(patches.labels == 1).nonzero()[:3, 0], (patches.labels == 0).nonzero()[:1, 0]]
    )
    images = to_tensor_images(patches.images[pick])
    masks = patches.masks[pick]
    maps = F.avg_pool2d(masks[:, None].float(), 15, stride=1, padding=7)[:, 0]
    maps = maps / maps.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
    fig = viz.plot_grid(
        {
            "image": images,
            "colorize": viz.colorize(maps),
            "overlay": viz.overlay(images, maps, alpha=0.6),
            "draw_masks": viz.draw_masks(images, masks, fill=0.25, width=1),
        },
        columns=["positive", "positive", "positive", "negative"],
        scale=1.4,
    )
    path = out / "viz_overlays.png"
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [path]


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
