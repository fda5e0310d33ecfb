"""Figures of the evaluation report (matplotlib, Agg backend, written atomically).

- ``roc.png``: the test ROC curve with the validation Youden operating point;
- ``training_curves.png``: training loss components and validation AUC per epoch;
- ``cam_grid.png``: patches with their CAM overlay, true mask and predicted mask;
- ``iou_vs_threshold.png``: IoU and Dice of gated CAMs against a fixed threshold.

Also :func:`overlay`, the CAM-on-patch blend used by ``camseg-pcam predict``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from camseg import metrics as M
from camseg_pcam._io import atomic_target

if TYPE_CHECKING:
    from camseg_pcam.evaluate import SplitOutputs

__all__ = ["overlay", "save_png", "write_figures"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_target(path) as part:
        fig.savefig(part, dpi=110, bbox_inches="tight", format="png")


def overlay(image: torch.Tensor, cam: torch.Tensor, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a CAM (jet colour map) over an RGB patch.

    Args:
        image: ``(3, H, W)`` float in [0, 1].
        cam: ``(H, W)`` float in [0, 1].
        alpha: the CAM's opacity.

    Returns:
        ``(H, W, 3)`` uint8.

    Example:
        >>> overlay(torch.zeros(3, 4, 4), torch.ones(4, 4)).shape
        (4, 4, 3)
    """
    from matplotlib import colormaps

    heat = colormaps["jet"](cam.clamp(0, 1).cpu().numpy())[..., :3]
    rgb = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    return np.round((1 - alpha) * rgb * 255 + alpha * heat * 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a uint8 ``(H, W, 3)`` or ``(H, W)`` array as PNG, atomically.

    Args:
        array: the image (``(H, W)``: grey, e.g. a mask as 0/255).
        path: the target file.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> save_png(np.zeros((2, 2, 3), np.uint8), p)
        >>> os.path.exists(p)
        True
    """
    from PIL import Image

    with atomic_target(path) as part:
        Image.fromarray(array).save(part, format="PNG")


def _roc(out: Path, probs: torch.Tensor, labels: torch.Tensor, result: dict[str, Any]) -> str:
    plt = _pyplot()
    fpr, tpr, _ = M.roc_curve(probs, labels)
    c = result["classification"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr.numpy(), tpr.numpy(), label=f"AUC {c['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.plot(
        [1 - c["specificity_at_youden"]],
        [c["sensitivity_at_youden"]],
        "ro",
        label="validation Youden threshold",
    )
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (test)")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, out / "roc.png")
    plt.close(fig)
    return "roc.png"


def _curves(out: Path, run: Path) -> str | None:
    from camseg_pcam.evaluate import read_history

    hist = read_history(run)
    if not hist:
        return None
    plt = _pyplot()
    epochs = [h["epoch"] for h in hist]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    for key in sorted(k for k in hist[0] if k.startswith("train_") and k[6:] not in _NOT_LOSS):
        a1.plot(epochs, [h.get(key, np.nan) for h in hist], label=key[6:])
    a1.set(xlabel="epoch", ylabel="training loss", title="loss components")
    a1.legend(fontsize=7)
    a2.plot(epochs, [h.get("val_auc", np.nan) for h in hist], "o-", label="val AUC")
    a2.plot(epochs, [h.get("val_accuracy", np.nan) for h in hist], "s-", label="val accuracy")
    a2.set(xlabel="epoch", title="validation")
    a2.legend(fontsize=7)
    _save(fig, out / "training_curves.png")
    plt.close(fig)
    return "training_curves.png"


_NOT_LOSS = ("images_per_s", "data_wait_share")


def _grid(out: Path, sample: dict[str, torch.Tensor]) -> str | None:
    if not sample or len(sample.get("image", [])) == 0:
        return None
    plt = _pyplot()
    n = len(sample["image"])
    fig, axes = plt.subplots(4, n, figsize=(1.1 * n, 4.6), squeeze=False)
    rows = ("patch", "CAM", "true mask", "predicted")
    for i in range(n):
        img = sample["image"][i]
        panels = [
            img.permute(1, 2, 0).numpy(),
            overlay(img, sample["cam"][i]),
            sample["true"][i].numpy(),
            sample["pred"][i].numpy(),
        ]
        for r, panel in enumerate(panels):
            ax = axes[r, i]
            ax.imshow(panel, cmap="gray" if r >= 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(rows[r], fontsize=7)
        axes[0, i].set_title(
            f"y={int(sample['label'][i])} p={float(sample['prob'][i]):.2f}", fontsize=6
        )
    _save(fig, out / "cam_grid.png")
    plt.close(fig)
    return "cam_grid.png"


def _iou_curve(out: Path, seg: dict[str, Any]) -> str | None:
    curve = seg.get("iou_curve")
    if not curve:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(curve["thresholds"], curve["iou"], label="IoU")
    ax.plot(curve["thresholds"], curve["dice"], label="Dice")
    ax.set(xlabel="threshold on the gated min-max CAM", ylabel="score", ylim=(0, 1))
    ax.set_title("CAM → mask vs. threshold", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, out / "iou_vs_threshold.png")
    plt.close(fig)
    return "iou_vs_threshold.png"


def write_figures(
    out: Path,
    run: Path,
    probs: torch.Tensor,
    labels: torch.Tensor,
    result: dict[str, Any],
    pixel: SplitOutputs | None,
) -> list[str]:
    """Write all figures of a report and return their file names.

    Args:
        out: the report folder.
        run: the run folder (for ``metrics.csv``).
        probs: ``(N,)`` test probabilities.
        labels: ``(N,)`` test labels.
        result: the metrics dictionary of :func:`camseg_pcam.evaluate.evaluate`.
        pixel: the outputs of the split with masks, or ``None``.

    Returns:
        The names of the written PNG files.
    """
    names = [_roc(out, probs, labels, result), _curves(out, run)]
    if pixel is not None:
        names += [_grid(out, pixel.sample), _iou_curve(out, result["segmentation"])]
    return [n for n in names if n]
