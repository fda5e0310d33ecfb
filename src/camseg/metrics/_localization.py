"""Localization metrics of maps against masks: pointing games and label-region energy."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_nonempty,
    check_one_of,
    check_pixels,
    check_positive_int,
    check_same_shape,
    check_tensor,
    describe,
)

__all__ = ["energy_pointing_game", "label_region_energy", "pointing_game"]

PerImageAverage = Literal["macro", "none"]


def _check_maps(maps: torch.Tensor, *, nonnegative: bool = False) -> None:
    check_tensor(maps, "maps")
    check_ndim(maps, "maps", 3, "(B, H, W)")
    check_floating(maps, "maps")
    check_pixels(maps, "maps")
    check_finite(maps, "maps", "Hint: NaN maps come from a 0/0 normalization of a flat map.")
    if nonnegative and maps.numel() and float(maps.min()) < 0:
        raise ValueError(
            f"Expected `maps` to be >= 0 (an energy), but got a minimum of "
            f"{float(maps.min()):.6g}. Hint: apply ReLU or min-max normalize first."
        )


def _check_average(average: object, maps: torch.Tensor) -> None:
    """Validate ``average``; a mean (``"macro"``) of an empty batch raises ``ValueError``."""
    check_one_of(average, "average", ("macro", "none"))
    if average == "macro":
        check_nonempty(
            maps,
            "maps",
            "image",
            hint="Hint: the mean over no image is undefined; average='none' gives a (0,) tensor.",
        )


def _average(values: torch.Tensor, average: str) -> torch.Tensor:
    """``"macro"``: the mean over images, NaN (excluded images) left out; ``"none"``: all."""
    check_one_of(average, "average", ("macro", "none"))
    if average == "none":
        return values
    return values.nanmean() if values.numel() else values.new_tensor(math.nan)


def _disk(radius: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2).float()


def pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    tolerance: int = 0,
    average: PerImageAverage = "macro",
) -> torch.Tensor:
    r"""Pointing game: does the map's maximum fall inside the true mask?

    An image scores a hit (1) when its maximum lies in the mask dilated by a
    disk of radius ``tolerance`` pixels (Zhang et al. use 15 px at 224 px),
    a miss (0) otherwise. Rules for the corner cases:

    - an image whose mask is **empty is excluded**: NaN with
      ``average="none"``, left out of the mean, never a hit. On PCam about
      half the patches have empty masks, so counting them either way would
      swamp the score.
    - a map with several maximal pixels (e.g. a flat map) is a hit only if
      **every** maximal pixel lies in the dilated mask, so a flat or gated
      (all-zero) map cannot score by luck. Quantus's ``PointingGame`` counts a
      hit when *any* maximal pixel is in the mask, so there a flat map is a hit
      for every non-empty mask; the two agree when the maximum is unique.

    .. math::

        \mathrm{PG} = \frac{\#\text{hits}}{\#\text{hits} + \#\text{misses}}

    Args:
        maps: float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        tolerance: dilation radius in pixels (0: the exact mask).
        average: ``"macro"`` (default: 0-d, fraction of hits over images with
            a non-empty mask; NaN if there is none) or ``"none"`` (``(B,)`` of
            1.0 / 0.0 / NaN).

    Returns:
        float tensor (maps' dtype), 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps, non-bool masks, a non-int tolerance.
        ValueError: on shape mismatches, images without pixels, NaN maps, a
            negative tolerance, an unknown ``average``, or an empty batch with
            ``average="macro"``.

    Example:
        >>> maps = torch.zeros(3, 4, 4)
        >>> maps[:, 1, 1] = 1.0
        >>> masks = torch.zeros(3, 4, 4, dtype=torch.bool)
        >>> masks[0, 1, 1] = True   # hit
        >>> masks[1, 3, 3] = True   # miss (a hit with tolerance=3)
        >>> pointing_game(maps, masks, average="none")   # image 2: empty mask
        tensor([1., 0., nan])
        >>> pointing_game(maps, masks, tolerance=3)
        tensor(1.)

    References:
        Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, "Top-down neural
        attention by excitation backprop", IJCV 2018 (ECCV 2016).
    """
    _check_maps(maps)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    tol = check_positive_int(tolerance, "tolerance", minimum=0)
    _check_average(average, maps)
    target = masks
    if tol > 0:
        kernel = _disk(tol, maps.device)[None, None]
        grown = F.conv2d(masks[:, None].float(), kernel, padding=tol)
        target = grown[:, 0] > 0.5
    peak = maps.amax(dim=(1, 2), keepdim=True)
    is_max = maps == peak
    miss = (is_max & ~target).flatten(1).any(dim=1)
    hit = (~miss).to(maps.dtype)
    empty = ~masks.flatten(1).any(dim=1)
    values = torch.where(empty, torch.full_like(hit, math.nan), hit)
    return _average(values, average)


def energy_pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: PerImageAverage = "macro",
) -> torch.Tensor:
    r"""Energy-based pointing game: the fraction of map energy inside the mask.

    .. math::

        \mathrm{proportion} = \frac{\sum_{x \in M} E(x)}{\sum_{x} E(x)}

    as proposed with Score-CAM. The map must be non-negative (apply ReLU or
    normalize first). Images with an empty mask, or a map without energy (all
    zero), are excluded: NaN with ``average="none"`` and left out of the
    mean, as in :func:`pointing_game`.

    Args:
        maps: non-negative float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"macro"`` (default: the mean over images, 0-d) or ``"none"``
            (``(B,)``).

    Returns:
        float tensor in [0, 1] (maps' dtype), 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps or non-bool masks.
        ValueError: on shape mismatches, images without pixels, NaN or negative
            maps, an unknown ``average``, or an empty batch with
            ``average="macro"``.

    Example:
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
        >>> masks = torch.tensor([[[True, False], [False, False]]] * 2)
        >>> energy_pointing_game(maps, masks, average="none")
        tensor([0.7500, 0.2500])

    References:
        Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu, "Score-CAM:
        Score-weighted visual explanations for convolutional neural
        networks", CVPR Workshops 2020.
    """
    _check_maps(maps, nonnegative=True)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    _check_average(average, maps)
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    valid = (total > 0) & masks.flatten(1).any(dim=1)
    values = torch.where(valid, inside / torch.where(valid, total, 1), math.nan)
    return _average(values, average)


def label_region_energy(
    maps: torch.Tensor,
    *,
    region: int | torch.Tensor = 32,
    average: PerImageAverage = "macro",
) -> torch.Tensor:
    r"""Fraction of map energy inside the PCam label region (the centre of the patch).

    .. math::

        \rho = \frac{\sum_{x \in R} E(x)}{\sum_{x} E(x)}

    A PatchCamelyon label says whether the centre 32×32 pixels of the 96×96
    patch hold tumour. ``region`` given as an int is the side of that centre
    square **in pixels of a 96×96 patch**, scaled to the map: a map of size
    ``(H, W)`` uses a centred box of ``round(region * H / 96)`` by
    ``round(region * W / 96)`` pixels (a 12×12 map with the default 32 uses
    its centre 4×4). A bool tensor ``(H, W)`` gives the region directly.
    Maps without energy give NaN (excluded from the mean).

    Args:
        maps: non-negative float maps, shape ``(B, H, W)``.
        region: side of the centred box in 96-pixel units, or a bool mask
            ``(H, W)``.
        average: ``"macro"`` (default: the mean over images, 0-d) or ``"none"``
            (``(B,)``).

    Returns:
        float tensor in [0, 1] (maps' dtype), ``(B,)`` or 0-d.

    Raises:
        TypeError: on non-floating maps or a region of the wrong type.
        ValueError: on images without pixels, NaN or negative maps, a region
            larger than 96, a mask region of the wrong shape, a box that rounds
            to zero pixels, an unknown ``average``, or an empty batch with
            ``average="macro"``.

    Example:
        >>> maps = torch.zeros(2, 96, 96)
        >>> maps[0, 40:50, 40:50] = 1.0        # all inside the centre
        >>> maps[1, :, :] = 1.0                # uniform: 32² / 96² of the energy
        >>> label_region_energy(maps, average="none")
        tensor([1.0000, 0.1111])
        >>> label_region_energy(maps)
        tensor(0.5556)
    """
    _check_maps(maps, nonnegative=True)
    _check_average(average, maps)
    h, w = maps.shape[1], maps.shape[2]
    if isinstance(region, torch.Tensor):
        check_bool_mask(region, "region", "(H, W)", ndim=2)
        if tuple(region.shape) != (h, w):
            raise ValueError(
                f"Expected `region` to have the maps' spatial shape {(h, w)}, "
                f"but got {tuple(region.shape)}."
            )
        inside_mask = region.to(maps.device)
    else:
        if not isinstance(region, int) or isinstance(region, bool):
            raise TypeError(
                "Expected `region` to be an int (pixels of a 96 patch) or a bool tensor, "
                f"but got {describe(region)}."
            )
        if not 1 <= region <= 96:
            raise ValueError(
                f"Expected `region` to be in [1, 96] pixels of a 96x96 patch, but got {region}."
            )
        rh, rw = round(region * h / 96), round(region * w / 96)
        if rh == 0 or rw == 0:
            raise ValueError(
                f"Expected `region`={region} to cover at least one pixel of a {h}x{w} map, "
                "but it rounds to zero. Hint: pass the region as a bool mask."
            )
        top, left = (h - rh) // 2, (w - rw) // 2
        inside_mask = torch.zeros(h, w, dtype=torch.bool, device=maps.device)
        inside_mask[top : top + rh, left : left + rw] = True
    total = maps.sum(dim=(1, 2))
    inside = (maps * inside_mask).sum(dim=(1, 2))
    valid = total > 0
    values = torch.where(valid, inside / torch.where(valid, total, 1), math.nan)
    return _average(values, average)
