"""Operations on class-activation maps: resizing, normalization, token grids.

All functions are pure, batched and stay on the input's device. Maps are
``(B, h, w)`` or ``(B, K, h, w)`` (``K`` targets per image); any number of
leading dimensions is accepted.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from camseg._checks import (
    NAN_HINT,
    check_finite,
    check_floating,
    check_ndim,
    check_one_of,
    check_positive_int,
)

__all__ = ["NormalizeMode", "normalize", "tokens_to_grid", "upsample"]

NormalizeMode = Literal["minmax", "max"] | None
"""Per-map normalization: ``"minmax"``, ``"max"`` or ``None`` (raw)."""

_NORMALIZE_MODES = ("minmax", "max", None)


def upsample(
    maps: torch.Tensor,
    size: tuple[int, int],
    *,
    mode: Literal["bilinear", "bicubic", "nearest"] = "bilinear",
) -> torch.Tensor:
    """Resize maps to ``size`` with interpolation over the last two dimensions.

    Bilinear interpolation (the default) uses ``align_corners=False``: each
    output pixel is a convex combination of input pixels, so the output stays
    within the input's range. Leading dimensions are flattened for the call and
    restored afterwards.

    Args:
        maps: maps of shape ``(..., h, w)`` with at least one leading dimension.
        size: output ``(H, W)``.
        mode: interpolation mode of :func:`torch.nn.functional.interpolate`.

    Returns:
        Maps of shape ``(..., H, W)``, same dtype and device.

    Raises:
        TypeError: if ``maps`` is not a floating-point tensor.
        ValueError: if ``maps`` has fewer than 3 dimensions or ``size`` is not
            two positive ints.

    Example:
        >>> m = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
        >>> upsample(m, (4, 4)).shape
        torch.Size([1, 4, 4])
    """
    check_floating(maps, "maps")
    if maps.ndim < 3:
        raise ValueError(
            f"Expected `maps` to be a tensor of shape (B, h, w) or (B, K, h, w), "
            f"but got shape {tuple(maps.shape)}."
        )
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise ValueError(f"Expected `size` to be a pair (H, W) of ints, but got {size!r}.")
    for s in size:
        check_positive_int(s, "size")
    check_one_of(mode, "mode", ("bilinear", "bicubic", "nearest"))
    h, w = maps.shape[-2:]
    if h == 0 or w == 0:
        raise ValueError(
            "Expected `maps` to have at least one pixel per map, but got shape "
            f"{tuple(maps.shape)}."
        )
    if (h, w) == tuple(size):
        return maps
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, h, w)
    if mode == "nearest":
        out = F.interpolate(flat, size=tuple(size), mode="nearest")
    else:
        out = F.interpolate(flat, size=tuple(size), mode=mode, align_corners=False)
    return out.reshape(*lead, *size)


def normalize(maps: torch.Tensor, *, mode: NormalizeMode = "minmax") -> torch.Tensor:
    r"""Normalize each map to ``[0, 1]``.

    - ``"minmax"``: :math:`(m - \min m) / (\max m - \min m)` per map; a constant
      map becomes all zeros. Good for display; it cannot say "nothing here",
      since every non-constant map reaches 1.
    - ``"max"``: :math:`m / \max m` per map (zero stays zero, so an empty map
      stays empty); a map whose maximum is ``<= 0`` becomes all zeros. Use it
      for maps that are non-negative (every ReLU-ed CAM).
    - ``None``: the maps unchanged.

    NaN or infinite values raise (rather than turning the map into zeros or NaN).

    The operation is differentiable (no in-place writes), so it can sit in a loss.

    Args:
        maps: maps of shape ``(..., h, w)``.
        mode: ``"minmax"``, ``"max"`` or ``None``.

    Returns:
        Tensor of the same shape, dtype and device.

    Raises:
        TypeError: if ``maps`` is not floating point.
        ValueError: if ``mode`` is unknown, ``maps`` has fewer than 2 dims, or
            ``maps`` holds NaN or infinity.

    Example:
        >>> m = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])
        >>> normalize(m, mode="minmax")
        tensor([[[0.0000, 0.2500],
                 [0.5000, 1.0000]]])
        >>> normalize(m, mode="max")
        tensor([[[0.2000, 0.4000],
                 [0.6000, 1.0000]]])
    """
    check_one_of(mode, "mode", _NORMALIZE_MODES)
    check_floating(maps, "maps")
    if maps.ndim < 2:
        raise ValueError(
            f"Expected `maps` to be a tensor of shape (..., h, w), but got shape "
            f"{tuple(maps.shape)}."
        )
    if maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(
            "Expected `maps` to have at least one pixel per map, but got shape "
            f"{tuple(maps.shape)}."
        )
    # a NaN would make min/max NaN and the ``rng > 0`` test False: the whole map
    # would silently become zeros. torch users expect an error, as for NaN losses.
    check_finite(maps, "maps", NAN_HINT)
    if mode is None:
        return maps
    flat = maps.flatten(-2)
    hi = flat.amax(dim=-1, keepdim=True)
    if mode == "minmax":
        lo = flat.amin(dim=-1, keepdim=True)
        rng = hi - lo
        out = torch.where(rng > 0, (flat - lo) / rng.clamp_min(torch.finfo(rng.dtype).tiny), 0.0)
    else:
        out = torch.where(hi > 0, flat / hi.clamp_min(torch.finfo(hi.dtype).tiny), 0.0)
    return out.reshape(maps.shape)


def tokens_to_grid(
    tokens: torch.Tensor,
    *,
    grid: tuple[int, int] | None = None,
    prefix_tokens: int = 1,
) -> torch.Tensor:
    """Reshape transformer tokens ``(B, N, C)`` into a feature map ``(B, C, h, w)``.

    The first ``prefix_tokens`` tokens (class token, register tokens) are
    dropped; the remaining ``h * w`` patch tokens are laid out row by row, as
    ViT-style models order them. Pass it to :class:`camseg.LayerCapture` or an
    extractor as ``reshape=functools.partial(tokens_to_grid, prefix_tokens=1)``.

    Args:
        tokens: tensor of shape ``(B, N, C)``.
        grid: ``(h, w)`` of the patch grid; ``None`` infers a square grid and
            raises if ``N - prefix_tokens`` is not a perfect square.
        prefix_tokens: number of leading non-patch tokens to drop.

    Returns:
        Tensor of shape ``(B, C, h, w)`` (a view where possible).

    Raises:
        ValueError: if the token count does not match the grid.

    Example:
        >>> t = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
        >>> tokens_to_grid(t, grid=(2, 3), prefix_tokens=1).shape
        torch.Size([2, 3, 2, 3])
    """
    check_ndim(tokens, "tokens", 3, "(B, N, C)")
    check_positive_int(prefix_tokens, "prefix_tokens", minimum=0)
    n_patch = tokens.shape[1] - prefix_tokens
    if grid is None:
        side = math.isqrt(max(n_patch, 0))
        if n_patch <= 0 or side * side != n_patch:
            raise ValueError(
                f"Expected `tokens` to hold a square grid of patch tokens after dropping "
                f"{prefix_tokens} prefix tokens, but got {n_patch} patch tokens. "
                "Hint: pass `grid=(h, w)` for a non-square grid."
            )
        grid = (side, side)
    if not (isinstance(grid, (tuple, list)) and len(grid) == 2):
        raise ValueError(f"Expected `grid` to be a pair (h, w) of ints, but got {grid!r}.")
    h, w = grid
    check_positive_int(h, "grid")
    check_positive_int(w, "grid")
    if h * w != n_patch:
        raise ValueError(
            f"Expected `grid` {tuple(grid)} to cover the {n_patch} patch tokens of `tokens` "
            f"(shape {tuple(tokens.shape)}, {prefix_tokens} prefix tokens), but h * w = {h * w}."
        )
    patches = tokens[:, prefix_tokens:, :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
