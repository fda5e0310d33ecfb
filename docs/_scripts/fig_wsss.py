"""The figure of docs/wsss.rst: what each stage of ``--preset wsss`` produces.

A small preset run is trained at every docs build (384 synthetic training patches,
4 epochs, about 20 s on 2 CPU cores), so the figure shows what the current code
does and cannot go stale. Rows: the patch, stage 1's tumor-probability map, the
pseudo-mask stage 1 gives stage 2 (foreground / background / ignored), the final
mask (stage 2's probability at 0.5, gated by its classifier at 0.5 here) and the
true mask; the label region is outlined. Run by ``docs/conf.py``, or by hand:
``python docs/_scripts/fig_wsss.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from camseg_pcam.evaluate import cam_maps
from camseg_pcam.train import load_checkpoint_model, to_float_images
from camseg_pcam.wsss import STAGE2, train_preset
from matplotlib.colors import ListedColormap
from matplotlib.patches import Rectangle

from camseg.postprocess import pseudo_masks
from camseg.synthetic import make_patches

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _small_run import small_run


def main(out: Path) -> list[Path]:
    """Train a small preset run, draw the figure into ``out``; return the files written."""
    with small_run(train_preset) as run:
        teacher = load_checkpoint_model(run / "stage1" / "best.pt").eval()
        student = load_checkpoint_model(run / "best.pt").eval()
    images, labels, masks = make_patches(64, seed=7)
    has = masks.flatten(1).any(1)
    picks = [int(i) for i in (labels == 1).nonzero().flatten()[:4]]
    picks += [int(i) for i in ((labels == 0) & has).nonzero().flatten()[:1]]
    picks += [int(i) for i in ((labels == 0) & ~has).nonzero().flatten()[:1]]
    x = to_float_images(images[picks])
    with torch.no_grad():
        t, s = cam_maps(teacher, x), cam_maps(student, x)
    pseudo = pseudo_masks(t["prob_map"], labels[picks], margin=STAGE2["pseudo_margin"])
    gate = s["logits"].softmax(1)[:, 1] >= 0.5
    final = (s["prob_map"] >= 0.5) & gate[:, None, None]
    rows = [
        ("patch", None),
        ("stage 1: tumor probability", t["prob_map"]),
        ("pseudo-mask (grey: ignored)", pseudo),
        ("final mask", final),
        ("true mask", masks[picks]),
    ]
    tri = ListedColormap(["0.55", "black", "white"])  # -1 ignored, 0 background, 1 tumor
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(1.45 * len(picks), 7.6), dpi=100)
    side = x.shape[-1]
    for col, idx in enumerate(picks):
        for row, (name, maps) in enumerate(rows):
            ax = axes[row, col]
            if maps is None:
                ax.imshow(x[col].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_title("positive" if int(labels[idx]) else "negative", fontsize=8)
            elif maps.dtype == torch.int8:
                ax.imshow(maps[col].numpy(), cmap=tri, vmin=-1, vmax=1)
            elif maps.dtype == torch.bool:
                ax.imshow(maps[col].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(maps[col].numpy(), cmap="magma", vmin=0, vmax=1)
            lo = side / 3
            ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), lo, lo, fill=False, ec="c", lw=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.tight_layout(pad=0.3)
    path = out / "wsss_stages.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    print(main(target))
