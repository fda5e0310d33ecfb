"""The maps' range and value checks of the post-processing functions (kernel-aware).

The checks themselves live in :mod:`camseg._checks`; here the range of float32 CPU maps
comes from one pass of the C kernel, and the value checks are read off that range.
"""

from __future__ import annotations

import numpy as np
import torch

from camseg import _native
from camseg._checks import NAN_HINT, check_finite, check_maps, check_unit_range


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
        check_finite(maps, name, NAN_HINT)
    if unit and lo.numel():
        check_unit_range(float(lo.min()), float(hi.max()), name)


def flat_float32_numpy(maps: torch.Tensor) -> np.ndarray:
    """CPU maps ``(B, H, W)`` as a C-contiguous float32 ``(B, H*W)`` array (a view if possible)."""
    flat = maps.detach().reshape(maps.shape[0], -1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    return np.ascontiguousarray(flat.numpy())


def map_range(maps: object, name: str = "maps", *, unit: bool = False) -> torch.Tensor:
    """Validate float ``(B, H, W)`` maps; return the per-image ``(min, max)`` as ``(B, 2)``.

    One reduction pass gives the range of every image; NaN propagates through
    it and infinity shows in it, so the finiteness check costs nothing extra
    (float32 CPU maps: one pass of camseg's C kernel, which flags NaN and
    infinity itself). With ``unit=True`` the maps must lie in ``[0, 1]``.
    """
    t = check_maps(maps, name, finite=False, nonempty=True)
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
