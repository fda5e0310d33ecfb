"""Private validation helpers shared by the post-processing functions."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from camseg import _native
from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_same_shape,
    check_tensor,
)

_NAN_HINT = "Hint: NaN maps come from a 0/0 normalisation of a flat map."
_UNIT_HINT = (
    "Hint: normalise the maps first, e.g. camseg.functional.normalize(maps, 'minmax'), "
    "or threshold raw maps with threshold_fixed/threshold_otsu and compare yourself."
)


def check_map_layout(maps: object, name: str = "maps") -> torch.Tensor:
    """Validate the type, dtype and shape of float ``(B, H, W)`` maps (not their values)."""
    t = check_tensor(maps, name)
    check_ndim(t, name, 3, "(B, H, W)")
    check_floating(t, name)
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise ValueError(
            f"Expected `{name}` to have at least one pixel per image, "
            f"but got shape {tuple(t.shape)}."
        )
    return t


def check_map_values(
    maps: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    name: str = "maps",
    *,
    unit: bool = False,
    bad: bool = False,
) -> None:
    """Raise for NaN/infinite maps, or maps outside ``[0, 1]`` (``unit``), from their range.

    ``lo``, ``hi`` are the per-image minima and maxima ``(B,)``; NaN propagates
    into them and infinity shows in them. ``bad`` says a kernel has already
    seen a NaN or infinity (its ``lo``/``hi`` are then meaningless).
    """
    if bad or not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        check_finite(maps, name, _NAN_HINT)
    if unit and lo.numel():
        low, high = float(lo.min()), float(hi.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Expected `{name}` to be normalised maps with values in [0, 1], but got "
                f"values in [{low:.6g}, {high:.6g}]. {_UNIT_HINT}"
            )


def flat_float32_numpy(maps: torch.Tensor) -> np.ndarray:
    """CPU maps ``(B, H, W)`` as a C-contiguous float32 ``(B, H*W)`` array (a view if possible)."""
    flat = maps.detach().reshape(maps.shape[0], -1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    return np.ascontiguousarray(flat.numpy())


def check_maps(maps: object, name: str = "maps", *, unit: bool = False) -> torch.Tensor:
    """Validate float ``(B, H, W)`` maps; return the per-image ``(min, max)`` as ``(B, 2)``.

    One reduction pass gives the range of every image; NaN propagates through
    it and infinity shows in it, so the finiteness check costs nothing extra
    (float32 CPU maps: one pass of camseg's C kernel, which flags NaN and
    infinity itself). With ``unit=True`` the maps must lie in ``[0, 1]``.
    """
    t = check_map_layout(maps, name)
    if t.shape[0] == 0:
        return torch.zeros(0, 2, dtype=t.dtype, device=t.device)
    bad = False
    if _native.available() and t.device.type == "cpu" and t.dtype == torch.float32:
        lo_np, hi_np, bad = _native.range_f32(flat_float32_numpy(t))
        lo, hi = torch.from_numpy(lo_np), torch.from_numpy(hi_np)
    else:
        flat = t.detach().reshape(t.shape[0], -1)
        # two reductions: much faster than torch.aminmax(dim=...) on the CPU
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    check_map_values(t, lo, hi, name, unit=unit, bad=bad)
    return torch.stack([lo, hi], dim=1)


def check_masks(masks: object, name: str = "masks") -> torch.Tensor:
    """Validate a ``torch.bool`` ``(B, H, W)`` mask and return it."""
    check_bool_mask(masks, name)
    return cast(torch.Tensor, masks)


def check_mask_like(mask: object, name: str, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """Validate a bool mask with the same shape as ``ref``."""
    m = check_masks(mask, name)
    check_same_shape(m, name, ref, ref_name)
    return m
