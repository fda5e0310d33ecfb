"""Tissue detection per tile: tissue fraction, focus check, and a slide-wide mask.

Pixel-level tissue detection lives in :func:`camseg.postprocess.tissue_mask`;
this module turns it into per-tile decisions (minimum tissue fraction) and adds
the one slide-specific check: focus, measured as the variance of the Laplacian.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from camseg._checks import check_tensor, describe, to_unit_rgb
from camseg.postprocess import tissue_mask
from camseg.slide._readers import MAX_REGION_PIXELS, RegionReader, check_reader

__all__ = ["TissueFilter", "laplacian_variance", "slide_tissue_mask", "tissue_fraction"]

TissueMethod = Literal["saturation", "brightness"]

# ITU-R BT.601 luma weights: the usual RGB -> grey conversion (OpenCV, PIL).
_LUMA = (0.299, 0.587, 0.114)


def laplacian_variance(tiles: torch.Tensor) -> torch.Tensor:
    r"""Focus measure per tile: the variance of the Laplacian of the grey image.

    The grey image is taken on the 0--255 scale (BT.601 luma), filtered with the
    4-neighbour Laplacian kernel over the valid region (no padding), and the
    variance is taken over each tile. Sharp, structured tissue gives large values;
    blurred or flat tiles give values near zero.

    .. math::

        \operatorname{focus}(I) = \operatorname{Var}\left(\nabla^2 I\right),\qquad
        \nabla^2 = \begin{pmatrix}0 & 1 & 0\\ 1 & -4 & 1\\ 0 & 1 & 0\end{pmatrix}

    Args:
        tiles: ``(B, 3, H, W)`` uint8, or floating in [0, 1]; ``H, W >= 3``.

    Returns:
        ``(B,)`` floating tensor on the tiles' device.

    Raises:
        TypeError: if ``tiles`` is not a uint8 or floating tensor.
        ValueError: if ``tiles`` is not ``(B, 3, H, W)`` with ``H, W >= 3``.

    Example:
        >>> import torch
        >>> flat = torch.full((1, 3, 8, 8), 0.5)
        >>> checker = (torch.arange(8)[:, None] + torch.arange(8)).remainder(2).float()
        >>> sharp = checker.expand(1, 3, 8, 8)
        >>> laplacian_variance(torch.cat([flat, sharp])).round()  # sharp: (4 * 255) ** 2
        tensor([      0., 1040400.])

    References:
        Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
        comparative study", ICPR 2000.
    """
    x = to_unit_rgb(tiles, "tiles")
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(
            f"Expected `tiles` to be at least 3x3 pixels, but got shape {tuple(x.shape)}."
        )
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = (x * luma).sum(1, keepdim=True) * 255.0
    kernel = torch.tensor(
        [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device
    ).view(1, 1, 3, 3)
    lap = F.conv2d(grey, kernel)
    return lap.flatten(1).var(dim=1, unbiased=False)


def tissue_fraction(
    tiles: torch.Tensor, *, method: TissueMethod = "saturation", **kwargs: Any
) -> torch.Tensor:
    """Fraction of tissue pixels per tile, from :func:`camseg.postprocess.tissue_mask`.

    Args:
        tiles: ``(B, 3, H, W)`` uint8, or floating in [0, 1].
        method: ``"saturation"`` (HSV saturation, PCam's rule) or ``"brightness"``
            (a pixel is background when its mean RGB is above 200 of 255).
        **kwargs: further options of :func:`camseg.postprocess.tissue_mask`.

    Returns:
        ``(B,)`` floating tensor in [0, 1].

    Raises:
        ValueError: if ``tiles`` is not ``(B, 3, H, W)`` or ``method`` is unknown.

    Example:
        >>> import torch
        >>> tiles = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)  # white glass
        >>> tiles[1, :, :, :3] = torch.tensor([150, 60, 140], dtype=torch.uint8).view(3, 1, 1)
        >>> tissue_fraction(tiles, method="brightness")
        tensor([0.0000, 0.7500])
    """
    x = to_unit_rgb(tiles, "tiles")  # checked here, so errors name `tiles`
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(
            f"Expected `tiles` to have at least one pixel (H, W > 0), but got shape "
            f"{tuple(x.shape)}."
        )
    mask = tissue_mask(x, method=method, **kwargs)
    return mask.flatten(1).float().mean(dim=1)


@dataclass(frozen=True, kw_only=True)
class TissueFilter:
    """Per-tile keep/drop rule: enough tissue, and in focus.

    A tile is kept when its tissue fraction (see :func:`tissue_fraction`) is at
    least ``min_fraction`` and, unless ``min_focus`` is ``None``, its
    :func:`laplacian_variance` is at least ``min_focus``.

    The defaults follow the Camelyon17 pipeline this library grew out of: at
    least 40% tissue and a structure (variance) threshold of 5 on the 0--255
    scale. The rule of the HCC sliding-window study ("background when more than
    half the pixels have mean RGB > 200") is ``TissueFilter(method="brightness",
    min_fraction=0.5)``.

    Args:
        method: pixel-level rule, ``"saturation"`` or ``"brightness"``.
        min_fraction: minimum tissue fraction in [0, 1].
        min_focus: minimum variance of the Laplacian, or ``None`` to skip the check.
        options: further keyword options of :func:`camseg.postprocess.tissue_mask`.

    Raises:
        ValueError: if ``method`` is unknown, ``min_fraction`` is outside [0, 1] or
            ``min_focus`` is negative.

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> glass = torch.full((1, 3, 16, 16), 250, dtype=torch.uint8)
        >>> tissue = torch.randint(60, 180, (1, 3, 16, 16), dtype=torch.uint8)
        >>> blurred = torch.full((1, 3, 16, 16), 120, dtype=torch.uint8)
        >>> TissueFilter(method="brightness")(torch.cat([glass, tissue, blurred]))
        tensor([False,  True, False])
    """

    method: TissueMethod = "saturation"
    min_fraction: float = 0.4
    min_focus: float | None = 5.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from camseg._checks import check_nonnegative, check_one_of, check_probability

        check_one_of(self.method, "method", ("saturation", "brightness"))
        if not isinstance(self.options, Mapping):
            raise TypeError(
                "Expected `options` to be a mapping of tissue_mask options, but got "
                f"{describe(self.options)}."
            )
        check_probability(self.min_fraction, "min_fraction")
        if self.min_focus is not None:
            check_nonnegative(self.min_focus, "min_focus")

    def fraction(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tissue fraction per tile, ``(B,)``."""
        return tissue_fraction(tiles, method=self.method, **self.options)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        """Keep mask for ``(B, 3, H, W)`` tiles: ``torch.bool`` ``(B,)``."""
        keep = self.fraction(tiles) >= self.min_fraction
        if self.min_focus is not None:
            keep = keep & (laplacian_variance(tiles) >= self.min_focus)
        return keep


#: Pixels per band that :func:`slide_tissue_mask` reads at a time (12 MiB of RGB).
_BAND_PIXELS = 1 << 22


def _blur_halo(method: str, kwargs: dict[str, Any]) -> int:
    """Rows of context a band needs so the saturation blur matches a one-shot read."""
    if method != "saturation":
        return 0
    sigma = kwargs.get("sigma", 1.0)
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and math.isfinite(sigma):
        return max(0, int(4.0 * float(sigma) + 0.5)) + 1  # tissue_mask truncates at 4 sigma
    return 1  # tissue_mask rejects the value with its own message


def slide_tissue_mask(
    reader: RegionReader,
    *,
    level: int | None = None,
    method: TissueMethod = "saturation",
    max_pixels: int = MAX_REGION_PIXELS,
    **kwargs: Any,
) -> torch.Tensor:
    """Tissue mask of a whole (low-resolution) level, for cheap tile pre-selection.

    The level is read in bands of rows (about 4 million pixels each, with enough
    overlap for the saturation blur, so the mask equals a one-shot read), so only
    the mask itself -- one byte per pixel -- grows with the level. Pick a coarse
    level (the default is the last, smallest one); a level of more than
    ``max_pixels`` pixels is refused before anything is read. Pass the result as
    ``tissue=`` to :func:`camseg.slide.sliding_window` to skip background tiles
    without reading them at full resolution.

    Args:
        reader: a :class:`~camseg.slide.RegionReader`.
        level: the level to read; the coarsest by default.
        method: pixel rule of :func:`camseg.postprocess.tissue_mask`.
        max_pixels: the largest level (width x height) to build a mask of.
        **kwargs: further options of :func:`camseg.postprocess.tissue_mask`.

    Returns:
        ``torch.bool`` mask of shape ``(H_level, W_level)`` on the CPU.

    Raises:
        TypeError: if ``reader`` is not a region reader or ``level`` is not an int.
        ValueError: if the level does not exist or has more than ``max_pixels``
            pixels.

    Example:
        >>> import numpy as np
        >>> from camseg.slide import ArrayReader
        >>> img = np.full((8, 8, 3), 245, np.uint8); img[:4] = (160, 80, 150)
        >>> slide_tissue_mask(ArrayReader(img), method="brightness").sum(dim=1)
        tensor([8, 8, 8, 8, 0, 0, 0, 0])
    """
    check_reader(reader)
    if level is None:
        level = reader.level_count - 1
    if not isinstance(level, int) or isinstance(level, bool):
        raise TypeError(f"Expected `level` to be an int or None, but got {describe(level)}.")
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
        raise ValueError(
            f"Expected `max_pixels` to be an int >= 1, but got {describe(max_pixels)}."
        )
    width, height = reader.dimensions(level)
    if width * height > max_pixels:
        raise ValueError(
            f"Expected a level of at most `max_pixels`={max_pixels} pixels for the tissue mask, "
            f"but level {level} is {width} x {height} ({width * height} pixels). Hint: pass a "
            "coarser `level` (the slide has "
            f"{reader.level_count} level(s)), or a larger `max_pixels`."
        )
    halo = _blur_halo(method, kwargs)
    rows = max(1, _BAND_PIXELS // max(1, width) - 2 * halo)
    mask = torch.empty(height, width, dtype=torch.bool)
    for y in range(0, height, rows):
        n = min(rows, height - y)
        top, bottom = max(0, y - halo), min(height, y + n + halo)
        region = np.ascontiguousarray(reader.read(level, 0, top, width, bottom - top))
        image = torch.from_numpy(region).permute(2, 0, 1).unsqueeze(0)
        band = tissue_mask(image, method=method, **kwargs)
        check_tensor(band, "tissue_mask(...)")
        mask[y : y + n] = band[0, y - top : y - top + n].cpu()
    return mask
