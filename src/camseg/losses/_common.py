"""Shared helpers of the loss functions: input checks, dtype handling, reductions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from camseg._checks import (
    check_binary_labels,
    check_floating,
    check_ndim,
    check_one_of,
    check_same_batch,
    check_tensor,
    describe,
)

Reduction = Literal["mean", "sum", "none"]
"""How per-image losses are combined: ``"mean"`` over the images the loss applies to,
``"sum"``, or ``"none"`` (a ``(B,)`` tensor)."""

CamFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> maps (B, h, w)`` (any CAM extractor)."""

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> scores (B,)`` with scores in ``[0, 1]``."""

Region = float | tuple[float, float, float, float] | torch.Tensor
"""A region of a map: the side of a centred square as a fraction of the map's side,
a box ``(top, left, bottom, right)`` in fractions of the map's height and width, or a
``torch.bool`` mask of shape ``(H, W)``."""

REDUCTIONS = ("mean", "sum", "none")


def as_compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (autocast) are promoted to float32; others pass through."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def check_maps(maps: object, name: str = "maps") -> torch.Tensor:
    """Check a ``(B, H, W)`` floating map tensor and return it in a compute dtype."""
    maps = check_tensor(maps, name)
    check_ndim(maps, name, 3, "(B, H, W)")
    check_floating(maps, name)
    return as_compute_dtype(maps)


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Check a ``(B, C, H, W)`` floating image tensor."""
    images = check_tensor(images, name)
    check_ndim(images, name, 4, "(B, C, H, W)")
    check_floating(images, name)
    return images


def check_labels(labels: object, maps: torch.Tensor, name: str = "labels") -> torch.Tensor:
    """Check 0/1 labels of shape ``(B,)`` matching the batch of ``maps``; return bool."""
    out = check_binary_labels(labels, name)
    check_same_batch(maps, "maps", out, name)
    return out.to(maps.device)


def check_reduction(reduction: object) -> None:
    """Raise unless ``reduction`` is one of :data:`REDUCTIONS`."""
    check_one_of(reduction, "reduction", REDUCTIONS)


def check_callable(fn: object, name: str) -> None:
    """Raise ``TypeError`` unless ``fn`` is callable."""
    if not callable(fn):
        raise TypeError(f"Expected `{name}` to be callable, but got {describe(fn)}.")


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
