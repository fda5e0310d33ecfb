"""Tissue/background separation of H&E images."""

from __future__ import annotations

from typing import Literal

import torch

from camseg._checks import (
    check_in_range,
    check_nonnegative,
    check_one_of,
    describe,
    to_unit_rgb,
)
from camseg.functional import gaussian_blur

__all__ = ["tissue_mask"]

_DEFAULT_THRESHOLD = {"saturation": 0.07, "brightness": 200.0 / 255.0}


def tissue_mask(
    images: torch.Tensor,
    *,
    method: Literal["saturation", "brightness"] = "saturation",
    threshold: float | None = None,
    sigma: float = 1.0,
) -> torch.Tensor:
    r"""Tissue (True) versus glass background (False) of every H&E image.

    ``"saturation"`` follows how PatchCamelyon was built: stained tissue is
    coloured, glass is grey or white. The HSV saturation of every pixel,

    .. math::

        S = \frac{\max(R, G, B) - \min(R, G, B)}{\max(R, G, B)}
        \quad (S = 0 \text{ where } \max = 0),

    is blurred with a Gaussian of standard deviation ``sigma`` pixels (edges
    replicated), and tissue is where the blurred saturation exceeds
    ``threshold`` (default 0.07, the value PCam's authors used on their
    patches' maximum saturation).

    ``"brightness"`` is the rule of the HCC sliding-window pipeline: a pixel is
    background when its mean RGB exceeds ``threshold`` (default 200/255), so
    tissue is where the mean is at most ``threshold``; ``sigma`` is not used.

    Batched in torch on the images' device. Tile-level rules (tissue fraction
    per tile, blur checks) build on this mask; its signature is kept stable.

    Args:
        images: RGB images ``(B, 3, H, W)``, float in ``[0, 1]`` or uint8 in
            ``[0, 255]``.
        method: ``"saturation"`` or ``"brightness"``.
        threshold: the cut-off on the ``[0, 1]`` scale, or None for the
            method's default (0.07 or 200/255).
        sigma: standard deviation of the Gaussian blur for ``"saturation"``, in
            pixels (``0`` disables the blur).

    Returns:
        ``torch.bool`` masks ``(B, H, W)``, True on tissue.

    Raises:
        TypeError: if ``images`` is neither float nor uint8, or ``threshold`` /
            ``sigma`` is not a number.
        ValueError: if ``images`` is not ``(B, 3, H, W)``, holds NaN or float
            values outside ``[0, 1]``, ``method`` is unknown, ``threshold`` lies
            outside ``[0, 1]``, or ``sigma`` is negative.

    Example:
        >>> img = torch.ones(1, 3, 2, 2)  # white glass
        >>> img[0, :, 0, 0] = torch.tensor([0.8, 0.4, 0.6])  # one pink pixel
        >>> tissue_mask(img, sigma=0)[0]
        tensor([[ True, False],
                [False, False]])
        >>> tissue_mask(img, method="brightness")[0]
        tensor([[ True, False],
                [False, False]])

    References:
        Veeling et al., "Rotation Equivariant CNNs for Digital Pathology",
        MICCAI 2018 (PatchCamelyon; background removed by HSV saturation).
    """
    x = to_unit_rgb(images)
    check_one_of(method, "method", ("saturation", "brightness"))
    if threshold is None:
        thr = _DEFAULT_THRESHOLD[method]
    else:
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise TypeError(
                f"Expected `threshold` to be a number or None, but got {describe(threshold)}."
            )
        check_in_range(threshold, "threshold", 0.0, 1.0)
        thr = float(threshold)
    check_nonnegative(sigma, "sigma")
    if method == "brightness":
        return x.mean(dim=1) <= thr
    cmax = x.amax(dim=1, keepdim=True)
    cmin = x.amin(dim=1, keepdim=True)
    sat = torch.where(cmax > 0, (cmax - cmin) / cmax.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    if x.shape[-1] and x.shape[-2]:
        # truncated at 4 sigma, as scipy.ndimage.gaussian_filter (the function's default)
        sat = gaussian_blur(sat, float(sigma), truncate=4.0)
    return sat.squeeze(1) > thr
