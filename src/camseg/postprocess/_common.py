"""The maps' range and the value checks read off it, shared by the post-processing functions.

The checks themselves live in :mod:`camseg._checks`. The range of every image is one
reduction (one C pass where :mod:`camseg._native` applies); NaN propagates into it and
infinity shows in it, so the finiteness check costs nothing extra.
"""

from __future__ import annotations

import torch

from camseg import _native
from camseg._checks import NAN_HINT, check_finite, check_maps, check_unit_range


def check_range(
    maps: torch.Tensor, rng: torch.Tensor, name: str = "maps", *, unit: bool = False
) -> None:
    """Raise for NaN/infinite maps, or maps outside ``[0, 1]`` (``unit``), from their range.

    ``rng`` is the per-image ``(min, max)`` ``(B, 2)``; a NaN or an infinity in it
    sends the maps themselves to :func:`camseg._checks.check_finite` for the message.
    """
    if not bool(torch.isfinite(rng).all()):
        check_finite(maps, name, NAN_HINT)
    if unit and rng.numel():
        check_unit_range(float(rng[:, 0].min()), float(rng[:, 1].max()), name)


def map_range(maps: object, name: str = "maps", *, unit: bool = False) -> torch.Tensor:
    """Validate float ``(B, H, W)`` maps; return the per-image ``(min, max)`` as ``(B, 2)``.

    With ``unit=True`` the maps must lie in ``[0, 1]``.
    """
    t = check_maps(maps, name, finite=False, nonempty=True)
    if t.shape[0] == 0:
        return torch.zeros(0, 2, dtype=t.dtype, device=t.device)
    rng = _native.map_range(t)
    if rng is None:
        flat = t.detach().reshape(t.shape[0], -1)
        # two reductions: much faster than torch.aminmax(dim=...) on the CPU
        rng = torch.stack([flat.amin(dim=1), flat.amax(dim=1)], dim=1)
    check_range(t, rng, name, unit=unit)
    return rng
