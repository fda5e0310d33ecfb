"""Shared helpers of the loss functions: the loss aliases, the compute dtype of maps, reductions.

The checks themselves live in :mod:`camseg._checks`; the names are re-exported here for the
loss modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from camseg import _checks
from camseg._checks import (
    REDUCTIONS,
    Reduction,
    as_compute_dtype,
    check_callable,
    check_images,
    check_labels,
    check_reduction,
)

__all__ = [
    "REDUCTIONS",
    "CamFn",
    "Reduction",
    "Region",
    "ScoreFn",
    "as_compute_dtype",
    "check_callable",
    "check_images",
    "check_labels",
    "check_maps",
    "check_reduction",
    "reduce",
]

CamFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> maps (B, h, w)`` (any CAM extractor)."""

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> scores (B,)`` with scores in ``[0, 1]``."""

Region = float | tuple[float, float, float, float] | torch.Tensor
"""A region of a map: the side of a centred square as a fraction of the map's side,
a box ``(top, left, bottom, right)`` in fractions of the map's height and width, or a
``torch.bool`` mask of shape ``(H, W)``."""


def check_maps(maps: object, name: str = "maps", *, finite: bool = False) -> torch.Tensor:
    """:func:`camseg._checks.check_maps` for ``(B, H, W)`` loss inputs, in a compute dtype.

    Losses sit in training loops, so the finiteness check (a device sync) is opt-in.
    """
    return as_compute_dtype(_checks.check_maps(maps, name, finite=finite))


def reduce(
    per_image: torch.Tensor, reduction: str, applies: torch.Tensor | None = None
) -> torch.Tensor:
    """Combine per-image losses.

    ``"mean"`` averages over the images where ``applies`` is True (all when None) and
    gives 0 when there are none; ``"sum"`` sums; ``"none"`` returns ``per_image`` with
    zeros where the loss does not apply.
    """
    if applies is not None:
        per_image = torch.where(applies, per_image, torch.zeros_like(per_image))
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    if applies is None:
        return per_image.mean() if per_image.numel() else per_image.sum()
    count = applies.sum().clamp_min(1).to(per_image.dtype)
    return per_image.sum() / count
