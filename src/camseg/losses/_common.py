"""Shared pieces of the loss functions: the callable and region aliases, and the reduction.

The checks live in :mod:`camseg._checks` and the loss modules import them from there.
Losses sit in training loops, so they check their maps' finiteness only where a NaN would
otherwise pass silently (``check_maps(..., finite=False)``: the check is a device sync),
and they compute in float32 or float64 (``as_compute_dtype``: half precision under autocast
is promoted).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["CamFn", "Region", "ScoreFn", "reduce"]

CamFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> maps (B, h, w)`` (any CAM extractor)."""

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> scores (B,)`` with scores in ``[0, 1]``."""

Region = float | tuple[float, float, float, float] | torch.Tensor
"""A region of a map: the side of a centred square as a fraction of the map's side,
a box ``(top, left, bottom, right)`` in fractions of the map's height and width, or a
``torch.bool`` mask of shape ``(H, W)``."""


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
