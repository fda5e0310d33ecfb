"""Predict single images: tumour probability and a CAM overlay per PNG/TIFF file.

Uses :class:`camseg.LinearCAM` on the model's ``features`` layer and ``fc``
head: one forward pass gives the logits and the tumour-class map.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import camseg
from camseg_pcam.data import read_image
from camseg_pcam.report import overlay, save_png
from camseg_pcam.train import load_checkpoint_model

__all__ = ["predict"]


def predict(
    images: Sequence[str | os.PathLike[str]],
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoint: str = "best.pt",
    device: str = "cpu",
    overlays: bool = True,
) -> list[dict[str, Any]]:
    """Tumour probability and a CAM overlay for each image file.

    Images of any size are accepted (the models are fully convolutional up to
    the global pooling); PCam patches are 96×96. Files are processed one at a
    time (their sizes may differ). Writes ``predictions.csv`` and, per image,
    ``<stem>_cam.png`` into ``out``.

    Args:
        images: PNG/JPEG/TIFF files.
        run: the run folder with the checkpoint.
        out: the output folder (created).
        checkpoint: the checkpoint inside ``run``.
        device: where to compute.
        overlays: write the overlay PNGs.

    Returns:
        One dict per image: ``path``, ``probability``, ``overlay`` (file or ``""``).

    Raises:
        FileNotFoundError: if the checkpoint is missing.
        PCamFormatError: if an image is missing or unreadable.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint_model(Path(run) / checkpoint, device=device)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    with camseg.LinearCAM(model, "features", head="fc") as cam:
        for path in images:
            arr = read_image(path)
            x = torch.from_numpy(arr).to(device).permute(2, 0, 1)[None].float() / 255.0
            with torch.inference_mode():
                res = cam.compute(x, targets=1, normalize="minmax", size="input")
            prob = float(res.logits.float().softmax(1)[0, 1])
            name = ""
            if overlays:
                stem = Path(path).stem
                name = f"{stem}_cam.png"
                k = 1
                while name in used:
                    k += 1
                    name = f"{stem}_{k}_cam.png"
                used.add(name)
                save_png(overlay(x[0], res.maps[0]), out_dir / name)
            rows.append({"path": str(path), "probability": prob, "overlay": name})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "probability", "overlay"])
    writer.writeheader()
    writer.writerows(rows)
    tmp = out_dir / f".predictions.{os.getpid()}.tmp"
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out_dir / "predictions.csv")
    return rows
