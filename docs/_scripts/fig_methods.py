"""The figure of docs/cams.rst: every extractor's map of the same patches.

A small plain classifier is trained at every docs build (384 synthetic training
patches, 4 epochs, a few seconds on 2 CPU cores), so the figure shows what the
current code computes. Rows: four tumor patches of a fresh synthetic draw;
columns: the patch, its true mask, then each camseg extractor at the model's
``features`` layer (class 1, min-max normalised, input size). Run by
``docs/conf.py``, or by hand: ``python docs/_scripts/fig_methods.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from camseg_pcam.train import load_checkpoint_model, to_float_images, train

import camseg
from camseg.synthetic import make_patches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _small_run import small_run

METHODS = {
    "GradCAM": {},
    "GradCAMPlusPlus": {},
    "HiResCAM": {},
    "XGradCAM": {},
    "LayerCAM": {},
    "GradCAMElementWise": {},
    "LinearCAM": {"head": "fc"},
    "EigenCAM": {},
    "EigenGradCAM": {},
    "ScoreCAM": {},
    "AblationCAM": {},
}


def main(out: Path) -> list[Path]:
    """Train a small model, draw the figure into ``out``; return the files written."""
    with small_run(train) as run:
        model = load_checkpoint_model(run / "best.pt").eval()
        images, labels, masks = make_patches(64, seed=7)
        picks = [int(i) for i in (labels == 1).nonzero().flatten()[:4]]
        x = to_float_images(images[picks])
        maps = {
            name: getattr(camseg, name)(model, "features", **kw)(x, targets=1).numpy()
            for name, kw in METHODS.items()
        }
    cols = 2 + len(maps)
    fig, axes = plt.subplots(len(picks), cols, figsize=(1.2 * cols, 1.25 * len(picks)))
    for r in range(len(picks)):
        rgb = x[r].permute(1, 2, 0).numpy()
        panels = [("patch", rgb, None), ("true mask", masks[picks[r]].float().numpy(), "gray")]
        panels += [(name, m[r], "inferno") for name, m in maps.items()]
        for c, (title, img, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(
                img, cmap=cmap, vmin=None if cmap is None else 0, vmax=None if cmap is None else 1
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=6)
    fig.tight_layout(pad=0.2)
    path = out / "methods.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
