"""Image filters used across camseg: one Gaussian blur for every caller.

Pure and batched; the result stays on the input's device and in its dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from camseg._checks import check_floating, check_ndim, check_positive_int, describe

__all__ = ["gaussian_blur"]


def _check_positive_number(value: object, name: str, *, allow_zero: bool) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number, but got {describe(value)}.")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Expected `{name}` to be a finite number {bound}, but got {value!r}.")
    return float(value)


def _gaussian_kernel1d(
    sigma: float, radius: int, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Normalized 1-D Gaussian weights at offsets ``-radius .. radius``, shape ``(2r+1,)``."""
    work = torch.promote_types(dtype, torch.float32)
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=work)
    kernel = torch.exp(-0.5 / (sigma * sigma) * offsets**2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(
    images: torch.Tensor,
    sigma: float,
    *,
    truncate: float = 4.0,
    radius: int | None = None,
) -> torch.Tensor:
    r"""Separable Gaussian blur of every channel of every image, edges replicated.

    Each channel is convolved with the normalized kernel
    :math:`k_i \propto \exp(-i^2 / 2\sigma^2)` for :math:`i = -r, \dots, r`,
    first along the width and then along the height, with the border pixels
    replicated (scipy's ``mode="nearest"``). The half-width is

    .. math::

        r = \max\big(1, \lfloor \mathrm{truncate} \cdot \sigma + 0.5 \rfloor\big)

    as :func:`scipy.ndimage.gaussian_filter` (which has no lower bound of 1),
    unless ``radius`` is given, which then wins (also as in scipy).
    ``sigma == 0`` returns ``images`` unchanged.

    Args:
        images: floating tensor of shape ``(B, C, H, W)``; ``H`` and ``W`` at least 1.
        sigma: standard deviation in pixels, a finite number ``>= 0``.
        truncate: half-width of the kernel in standard deviations (default 4, scipy's).
        radius: half-width in pixels, an int ``>= 1``; overrides ``truncate``.

    Returns:
        Blurred images, same shape, dtype and device as ``images``. The kernel is
        computed in at least float32 and cast to the images' dtype.

    Raises:
        TypeError: if ``images`` is not a floating tensor, or an option is not a number.
        ValueError: if ``images`` is not 4-D or empty in ``H`` or ``W``, ``sigma`` is
            negative or not finite, ``truncate`` is not a finite number ``> 0``, or
            ``radius < 1``.

    Example:
        >>> x = torch.zeros(1, 1, 5, 5)
        >>> x[0, 0, 2, 2] = 1.0
        >>> y = gaussian_blur(x, 1.0, truncate=1.0)  # 3x3 kernel
        >>> round(float(y.sum()), 6), tuple(y.shape)
        (1.0, (1, 1, 5, 5))
        >>> bool(y[0, 0, 0, 0] == 0), bool(y[0, 0, 1, 1] > 0)
        (True, True)
    """
    check_ndim(images, "images", 4, "(B, C, H, W)")
    check_floating(images, "images")
    if images.shape[-2] == 0 or images.shape[-1] == 0:
        raise ValueError(
            f"Expected `images` to have H, W >= 1, but got shape {tuple(images.shape)}."
        )
    sigma = _check_positive_number(sigma, "sigma", allow_zero=True)
    truncate = _check_positive_number(truncate, "truncate", allow_zero=False)
    if radius is not None:
        check_positive_int(radius, "radius")
    if sigma == 0:
        return images
    r = radius if radius is not None else max(1, int(truncate * sigma + 0.5))
    kernel = _gaussian_kernel1d(sigma, r, dtype=images.dtype, device=images.device)
    b, c, h, w = images.shape
    flat = images.reshape(b * c, 1, h, w)
    out = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    return out.reshape(b, c, h, w)
