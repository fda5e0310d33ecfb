"""Shared pieces of the loss functions: the callable and region aliases, and the reduction.

The checks live in :mod:`camseg._checks`; :func:`loss_maps` and :func:`loss_images` are
the losses' entry checks. Losses sit in training loops, so they check shapes (a batch of at
least one image of at least one pixel) but not values: a NaN or infinity reaches the loss
and makes it non-finite, as in torch's own losses (:func:`reduce` multiplies, never masks,
so it cannot hide one). Only losses that synchronise anyway (those running a model on the
images, the MIL logits) look at values too. They compute in float32 or float64
(``as_compute_dtype``: half precision under autocast is promoted).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from camseg._checks import (
    as_compute_dtype,
    check_finite,
    check_images,
    check_maps,
    check_nonempty,
    check_pixels,
)

__all__ = ["CamFn", "Region", "ScoreFn", "loss_images", "loss_maps", "reduce"]

CamFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> maps (B, h, w)`` (any CAM extractor)."""

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``images (B, C, H, W) -> scores (B,)`` with scores in ``[0, 1]``."""

Region = float | tuple[float, float, float, float] | torch.Tensor
"""A region of a map: the side of a centred square as a fraction of the map's side,
a box ``(top, left, bottom, right)`` in fractions of the map's height and width, or a
``torch.bool`` mask of shape ``(H, W)``."""


def _check_batch_nonempty(t: torch.Tensor, name: str) -> None:
    check_nonempty(t, name, "image", hint="An empty batch has no loss.")


def loss_maps(
    maps: object,
    name: str = "maps",
    *,
    layout: str = "(B, H, W)",
    unit: bool = False,
    empty_batch: bool = False,
) -> torch.Tensor:
    """A loss's maps, checked by shape only (no device sync) and in the compute dtype.

    At least one image of at least one pixel; NaN and infinity are not looked for (they
    reach the loss, which propagates them, as torch's losses do). ``unit`` also checks
    the values are finite and lie in ``[0, 1]`` (a sync: for losses that synchronise
    anyway). ``empty_batch`` allows ``B == 0`` (for the pooling ops, which map an empty
    batch to an empty one).
    """
    t = check_maps(maps, name, layout=layout, finite=unit, unit=unit, nonempty=True)
    if not empty_batch:
        _check_batch_nonempty(t, name)
    return as_compute_dtype(t)


def loss_images(images: object, name: str = "images", *, finite: bool = False) -> torch.Tensor:
    """A loss's ``(B, C, H, W)`` images: at least one image of at least one pixel.

    ``finite`` also rejects NaN and infinity (a sync: for the losses that run a model on
    the images, where a non-finite image would otherwise vanish into a normalised map).
    """
    t = check_images(images, name)
    _check_batch_nonempty(t, name)
    check_pixels(t, name)
    if finite:
        check_finite(t, name)
    return t


def reduce(
    per_image: torch.Tensor, reduction: str, applies: torch.Tensor | None = None
) -> torch.Tensor:
    """Combine per-image losses.

    ``"mean"`` averages over the images where ``applies`` is True (all when None) and
    gives 0 when there are none; ``"sum"`` sums; ``"none"`` returns ``per_image`` with
    zeros where the loss does not apply (NaN where such an image's loss is not finite).
    """
    if applies is not None:
        # a product, not torch.where: a NaN or infinity of an image the loss does not
        # apply to still makes the loss NaN (visible), as it would in torch's losses
        per_image = per_image * applies.to(per_image.dtype)
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    if applies is None:
        return per_image.mean() if per_image.numel() else per_image.sum()
    count = applies.sum().clamp_min(1).to(per_image.dtype)
    return per_image.sum() / count
