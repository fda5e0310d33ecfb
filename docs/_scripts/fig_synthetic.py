"""The figure of docs/synthetic.rst: synthetic patches with their tumor masks.

Run by ``docs/conf.py`` at every docs build (so it cannot go stale), or by hand:
``python docs/_scripts/fig_synthetic.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from camseg.synthetic import label_region_mask, make_patches


def main(out: Path) -> list[Path]:
    """Draw the figure into the folder ``out``; return the files written."""
    images, labels, masks = make_patches(64, seed=0)
    centre = label_region_mask()
    beyond = (masks & ~centre).flatten(1).any(1)
    has = masks.flatten(1).any(1)
    # two of each: positive inside the centre, positive beyond it, peripheral
    # negative, clean negative
    kinds = [
        (labels == 1) & ~beyond,
        (labels == 1) & beyond,
        (labels == 0) & has,
        (labels == 0) & ~has,
    ]
    names = ["positive", "positive, extends", "negative, peripheral", "negative"]
    picks = [int(i) for k in kinds for i in k.nonzero().flatten()[:2]]
    fig, axes = plt.subplots(2, len(picks), figsize=(1.5 * len(picks), 3.2), dpi=100)
    for col, idx in enumerate(picks):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(images[idx].numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.add_patch(
                plt.Rectangle((31.5, 31.5), 32, 32, fill=False, ec="white", lw=0.8, ls="--")
            )
            if row == 1 and bool(masks[idx].any()):
                ax.contour(
                    masks[idx].float().numpy(), levels=[0.5], colors=["#00e000"], linewidths=1.2
                )
        axes[0, col].set_title(f"{names[col // 2]}\nlabel {int(labels[idx])}", fontsize=7)
    axes[0, 0].set_ylabel("patch", fontsize=8)
    axes[1, 0].set_ylabel("tumor mask", fontsize=8)
    fig.tight_layout(pad=0.3)
    path = out / "synthetic_patches.png"
    fig.savefig(path, format="png")
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    torch.manual_seed(0)
    print(main(Path(sys.argv[1])))
