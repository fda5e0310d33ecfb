"""Predict image files: tumor probability, a gated CAM, its mask and an overlay per file.

An image no larger than a patch (PCam's 96×96) goes through the classifier as
it is. A larger one is cut into ``patch``-sized tiles every ``stride`` pixels
(:func:`camseg.slide.tile_grid`, the last row and column flush with the
border), the tiles go through in batches, and their maps are stitched with a
Gaussian window (:func:`camseg.slide.blend_window`), so every tile is seen at
the scale the model was trained on.

Each tile's map is the classic CAM of the tumor class
(:func:`camseg.functional.linear_cam` of the features and the head: one
forward pass), upsampled to the tile and *gated* by that tile's tumor
probability (:func:`camseg.postprocess.gate`): a tile the classifier calls
negative contributes an empty map, so a patch with p = 0.29 shows no hot spot.
The mask is the stitched map thresholded with Otsu's method
(:func:`camseg.postprocess.threshold_otsu`), as ``evaluate`` scores it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from camseg import functional as CF
from camseg import postprocess as PP
from camseg.slide import blend_window, tile_grid
from camseg_pcam._io import atomic_target, atomic_write_text
from camseg_pcam._validate import (
    check_floating,
    check_in_range,
    check_ndim,
    check_one_of,
    check_positive_int,
)
from camseg_pcam.data import read_image
from camseg_pcam.models import GAPClassifier
from camseg_pcam.report import overlay, save_png
from camseg_pcam.train import load_checkpoint_model

__all__ = ["PATCH", "ImagePrediction", "predict", "predict_image"]

#: the side of a PCam patch, the default tile size
PATCH = 96

CSV_COLUMNS = ("path", "probability", "tiles", "positive_tiles", "overlay", "map", "mask")


@dataclass(frozen=True)
class ImagePrediction:
    """What :func:`predict_image` finds in one image.

    Attributes:
        probability: the image's tumor probability: the largest tile probability
            (an image holds tumor when one of its tiles does).
        tile_probs: ``(T,)`` tumor probability of each tile (``T = 1`` for an
            image no larger than a patch).
        corners: ``(T, 2)`` int64 ``(x, y)`` top-left corners of the tiles.
        maps: ``(H, W)`` float32 stitched tumor-class CAM in CAM units (not
            normalized), zero wherever only negative tiles cover the image.
        masks: ``(H, W)`` ``torch.bool`` predicted tumor mask.
    """

    probability: float
    tile_probs: torch.Tensor
    corners: torch.Tensor
    maps: torch.Tensor
    masks: torch.Tensor

    def display(self) -> torch.Tensor:
        """The map scaled to ``[0, 1]`` by its maximum (an empty map stays zero), ``(H, W)``."""
        return CF.normalize(self.maps[None], mode="max")[0]


def _check_image(image: Any) -> None:
    check_ndim(image, "image", 3, "(3, H, W)")
    check_floating(image, "image")
    if image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(
            f"Expected `image` to be a tensor of shape (3, H, W) with H, W >= 1, but got shape "
            f"{tuple(image.shape)}."
        )
    check_in_range(image, "image", 0.0, 1.0, hint="Hint: scale uint8 images by 1/255.")


@torch.inference_mode()
def predict_image(
    model: GAPClassifier,
    image: torch.Tensor,
    *,
    patch: int = PATCH,
    stride: int | None = None,
    min_prob: float = 0.5,
    batch_size: int = 64,
    blend: Literal["gaussian", "uniform"] = "gaussian",
) -> ImagePrediction:
    """Probability, gated CAM and mask of one image, tiled when larger than a patch.

    Args:
        model: the classifier (eval mode), a :class:`~camseg_pcam.models.GAPClassifier`.
        image: ``(3, H, W)`` float RGB in ``[0, 1]``, on the model's device.
        patch: the tile side; an image with ``H, W <= patch`` is one tile. A larger
            image whose height or width is below ``patch`` is padded with white
            (glass) to the tile, and the padding cropped off again.
        stride: the step between tiles, in ``[1, patch]``; ``patch // 2`` (half
            overlap) by default.
        min_prob: tiles with a tumor probability below this get an empty map.
        batch_size: tiles per forward pass.
        blend: ``"gaussian"`` or ``"uniform"`` weights over tile overlaps.

    Returns:
        An :class:`ImagePrediction`; ``maps`` and ``masks`` are ``(H, W)``.

    Raises:
        TypeError: if ``image`` is not a floating tensor, or an option has the wrong type.
        ValueError: if ``image`` is not ``(3, H, W)`` in ``[0, 1]``, or an option is
            out of range.

    Example:
        >>> from camseg_pcam.models import build_model
        >>> _ = torch.manual_seed(0)
        >>> model = build_model("small", width=4).eval()
        >>> pred = predict_image(model, torch.rand(3, 200, 150))
        >>> pred.maps.shape, pred.masks.dtype, pred.tile_probs.shape
        (torch.Size([200, 150]), torch.bool, torch.Size([12]))
    """
    _check_image(image)
    patch = check_positive_int(patch, "patch")
    stride = patch // 2 if stride is None else stride
    check_positive_int(stride, "stride")
    if stride > patch:
        raise ValueError(
            f"Expected `stride` to be at most `patch` ({patch}) so the tiles cover the image, "
            f"but got {stride}."
        )
    check_in_range(min_prob, "min_prob", 0.0, 1.0)
    batch_size = check_positive_int(batch_size, "batch_size")
    check_one_of(blend, "blend", ("gaussian", "uniform"))
    _, h, w = image.shape
    dev = image.device
    if h <= patch and w <= patch:  # one tile: the image as it is
        tile_h, tile_w = h, w
        padded = image
        corners = torch.zeros(1, 2, dtype=torch.int64)
        window = torch.ones(h, w, device=dev)
    else:
        tile_h = tile_w = patch
        ph, pw = max(h, patch), max(w, patch)
        padded = image
        if (ph, pw) != (h, w):
            padded = torch.ones(3, ph, pw, dtype=image.dtype, device=dev)
            padded[:, :h, :w] = image
        corners = tile_grid((pw, ph), tile=patch, stride=stride)
        window = blend_window(patch, blend=blend, device=dev)
    canvas = torch.zeros(padded.shape[1:], dtype=torch.float32, device=dev)
    weight = torch.zeros_like(canvas)
    probs: list[torch.Tensor] = []
    for start in range(0, corners.shape[0], batch_size):
        chunk = corners[start : start + batch_size].tolist()
        tiles = torch.stack([padded[:, y : y + tile_h, x : x + tile_w] for x, y in chunk])
        logits, feats = model.forward_features(tiles)
        p = logits.float().softmax(1)[:, 1]
        tumor = torch.ones(len(chunk), dtype=torch.long, device=dev)
        raw = CF.linear_cam(feats.float(), model.fc.weight.float(), tumor)
        maps = PP.gate(CF.upsample(raw, (tile_h, tile_w)), p, min_prob=min_prob)
        for (x, y), m in zip(chunk, maps):
            canvas[y : y + tile_h, x : x + tile_w] += window * m
            weight[y : y + tile_h, x : x + tile_w] += window
        probs.append(p)
    stitched = (canvas / weight)[:h, :w].contiguous()  # every pixel is covered: weight > 0
    tile_probs = torch.cat(probs).cpu()
    display = CF.normalize(stitched[None], mode="max")
    if bool(display.max() > 0):
        t = PP.threshold_otsu(display)
        masks = ((display >= t[:, None, None]) & (display > 0))[0]
    else:
        masks = torch.zeros(h, w, dtype=torch.bool, device=dev)
    return ImagePrediction(
        probability=float(tile_probs.max()),
        tile_probs=tile_probs,
        corners=corners,
        maps=stitched,
        masks=masks,
    )


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 1
    while stem in used:
        k += 1
        stem = f"{path.stem}_{k}"
    used.add(stem)
    return stem


def _save_npy(array: np.ndarray, target: Path) -> None:
    with atomic_target(target) as part, open(part, "wb") as fh:
        np.save(fh, array)


def predict(
    paths: Sequence[str | os.PathLike[str]],
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoint: str = "best.pt",
    device: str = "cpu",
    overlays: bool = True,
    patch: int = PATCH,
    stride: int | None = None,
    min_prob: float = 0.5,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Tumor probability, gated CAM, mask and overlay for each image file.

    Each image goes through :func:`predict_image` (tiled when larger than
    ``patch``). Writes into ``out``, per image, ``<stem>_map.npy`` (the stitched
    CAM, float32 ``(H, W)``, in CAM units, zero where the classifier saw no
    tumor), ``<stem>_mask.png`` (the mask, 0/255) and, with ``overlays``,
    ``<stem>_cam.png`` (the map scaled by its maximum over the image), and
    ``predictions.csv`` with one row per image. Stems that repeat get ``_2``,
    ``_3`` ... Every file is written atomically.

    Args:
        paths: PNG/JPEG/TIFF files.
        run: the run folder with the checkpoint.
        out: the output folder (created).
        checkpoint: the checkpoint inside ``run``.
        device: where to compute.
        overlays: write the overlay PNGs.
        patch: the tile side (the training patch size).
        stride: the step between tiles; ``patch // 2`` by default.
        min_prob: tiles with a tumor probability below this get an empty map.
        batch_size: tiles per forward pass.

    Returns:
        One dict per image with the keys of ``predictions.csv``: ``path``,
        ``probability``, ``tiles``, ``positive_tiles`` (tiles with probability
        ``>= min_prob``), ``overlay``, ``map``, ``mask`` (file names in ``out``;
        ``overlay`` is ``""`` without overlays).

    Raises:
        FileNotFoundError: if the checkpoint is missing.
        PCamFormatError: if an image is missing or unreadable.
        ValueError: if an option is out of range.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint_model(Path(run) / checkpoint, device=device)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for path in paths:
        arr = read_image(path)
        image = torch.from_numpy(arr).to(device).permute(2, 0, 1).float() / 255.0
        pred = predict_image(
            model, image, patch=patch, stride=stride, min_prob=min_prob, batch_size=batch_size
        )
        stem = _unique_stem(Path(path), used)
        names = {"map": f"{stem}_map.npy", "mask": f"{stem}_mask.png", "overlay": ""}
        _save_npy(pred.maps.cpu().numpy().astype(np.float32), out_dir / names["map"])
        save_png(pred.masks.cpu().numpy().astype(np.uint8) * 255, out_dir / names["mask"])
        if overlays:
            names["overlay"] = f"{stem}_cam.png"
            save_png(overlay(image.cpu(), pred.display().cpu()), out_dir / names["overlay"])
        rows.append(
            {
                "path": str(path),
                "probability": pred.probability,
                "tiles": int(pred.tile_probs.numel()),
                "positive_tiles": int((pred.tile_probs >= min_prob).sum()),
                **names,
            }
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "predictions.csv", buf.getvalue())
    return rows
