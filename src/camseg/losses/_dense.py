"""Losses on whole maps: total-variation smoothness and (semi-weak) mask supervision."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from camseg._checks import (
    Reduction,
    check_binary_labels,
    check_bool_mask,
    check_in_range,
    check_nonnegative,
    check_one_of,
    check_reduction,
    check_same_batch,
)
from camseg.losses._common import loss_maps, reduce

__all__ = ["MaskLoss", "SmoothnessLoss", "mask_loss", "smoothness_loss"]

TVNorm = Literal["l1", "l2"]
MaskKind = Literal["dice", "bce", "dice+bce"]
_LOG_EPS = 1e-12


def smoothness_loss(
    maps: torch.Tensor, *, norm: TVNorm = "l1", reduction: Reduction = "mean"
) -> torch.Tensor:
    r"""Total variation of the maps (anisotropic).

    .. math::

        \ell_b = \frac{1}{(H-1)W} \sum |m_b(i+1, j) - m_b(i, j)|^q
                + \frac{1}{H(W-1)} \sum |m_b(i, j+1) - m_b(i, j)|^q ,

    with :math:`q = 1` (``"l1"``) or :math:`q = 2` (``"l2"``).

    Args:
        maps: ``(B, H, W)`` maps with ``H, W >= 2``.
        norm: ``"l1"`` (total variation) or ``"l2"`` (squared differences).
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero for constant maps.

    Raises:
        TypeError: if ``maps`` is not a floating tensor.
        ValueError: on a wrong shape, a map smaller than 2×2, or an unknown option.

    Example:
        >>> maps = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
        >>> smoothness_loss(maps)  # vertical 0, horizontal 1
        tensor(1.)

    References:
        Rudin, Osher and Fatemi, "Nonlinear total variation based noise removal
        algorithms", Physica D 1992.
    """
    maps = loss_maps(maps)
    check_one_of(norm, "norm", ("l1", "l2"))
    check_reduction(reduction)
    if maps.shape[-2] < 2 or maps.shape[-1] < 2:
        raise ValueError(f"Expected `maps` to be at least 2×2, but got shape {tuple(maps.shape)}.")
    dv = maps[:, 1:, :] - maps[:, :-1, :]
    dh = maps[:, :, 1:] - maps[:, :, :-1]
    if norm == "l1":
        per_image = dv.abs().mean(dim=(1, 2)) + dh.abs().mean(dim=(1, 2))
    else:
        per_image = dv.pow(2).mean(dim=(1, 2)) + dh.pow(2).mean(dim=(1, 2))
    return reduce(per_image, reduction)


def mask_loss(
    maps: torch.Tensor,
    masks: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    kind: MaskKind = "dice",
    smooth: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Supervise maps with pixel masks where an image has one (semi-weak supervision).

    With maps :math:`m \in [0, 1]` and masks :math:`g`, per image

    .. math::

        \ell^{dice}_b = 1 - \frac{2 \sum_p m_b g_b + s}{\sum_p m_b + \sum_p g_b + s},
        \qquad
        \ell^{bce}_b = -\frac{1}{HW} \sum_p g_b \log m_b + (1 - g_b) \log (1 - m_b),

    and ``"dice+bce"`` adds the two. The smoothing :math:`s` makes an empty mask with
    an empty map a perfect match.

    Args:
        maps: ``(B, H, W)`` maps in ``[0, 1]`` (per-pixel probabilities).
        masks: ``(B, H, W)`` ``torch.bool`` masks.
        valid: optional ``(B,)`` 0/1 flags: which images have a mask. Default: all.
        kind: ``"dice"``, ``"bce"`` or ``"dice+bce"``.
        smooth: the Dice smoothing :math:`s > 0`.
        reduction: ``"mean"`` over the valid images, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero when maps equal the masks.

    Raises:
        TypeError: if ``maps`` is not floating or ``masks`` is not bool.
        ValueError: on shape mismatches, maps outside ``[0, 1]``, ``valid`` not 0/1,
            ``smooth <= 0`` or an unknown option.

    Example:
        >>> masks = torch.zeros(1, 2, 2, dtype=torch.bool)
        >>> masks[0, 0] = True
        >>> mask_loss(masks.float(), masks)
        tensor(0.)
        >>> mask_loss(torch.full((1, 2, 2), 0.5), masks, smooth=1.0)  # 1 - 3/5
        tensor(0.4000)

    References:
        Milletari et al., "V-Net", 3DV 2016 (Dice loss).
    """
    maps = loss_maps(maps)
    check_bool_mask(masks, "masks")
    if maps.shape != masks.shape:
        raise ValueError(
            "Expected `maps` and `masks` to have the same shape, but got "
            f"{tuple(maps.shape)} and {tuple(masks.shape)}. Hint: upsample the maps "
            "to the mask size first."
        )
    applies = None
    if valid is not None:
        applies = check_binary_labels(valid, "valid").to(maps.device)
        check_same_batch(maps, "maps", applies, "valid")
    check_one_of(kind, "kind", ("dice", "bce", "dice+bce"))
    check_nonnegative(smooth, "smooth")
    if smooth <= 0:
        raise ValueError(f"Expected `smooth` to be > 0, but got {smooth!r}.")
    check_reduction(reduction)
    check_in_range(maps.detach(), "maps", 0.0, 1.0, hint="Hint: use per-pixel probabilities.")
    g = masks.to(maps.dtype)
    per_image = torch.zeros(maps.shape[0], dtype=maps.dtype, device=maps.device)
    if kind in ("dice", "dice+bce"):
        inter = (maps * g).sum(dim=(1, 2))
        total = maps.sum(dim=(1, 2)) + g.sum(dim=(1, 2))
        per_image = per_image + 1 - (2 * inter + smooth) / (total + smooth)
    if kind in ("bce", "dice+bce"):
        pos = torch.log(maps.clamp_min(_LOG_EPS))
        neg = torch.log((1 - maps).clamp_min(_LOG_EPS))
        per_image = per_image - torch.where(masks, pos, neg).mean(dim=(1, 2))
    return reduce(per_image, reduction, applies)


class SmoothnessLoss(nn.Module):
    """Module form of :func:`smoothness_loss`.

    Args:
        norm: ``"l1"`` or ``"l2"``.
        reduction: see :func:`smoothness_loss`.

    Example:
        >>> SmoothnessLoss()(torch.ones(2, 4, 4))
        tensor(0.)
    """

    def __init__(self, *, norm: TVNorm = "l1", reduction: Reduction = "mean") -> None:
        super().__init__()
        check_one_of(norm, "norm", ("l1", "l2"))
        check_reduction(reduction)
        self.norm: TVNorm = norm
        self.reduction: Reduction = reduction

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Compute the loss; see :func:`smoothness_loss`."""
        return smoothness_loss(maps, norm=self.norm, reduction=self.reduction)


class MaskLoss(nn.Module):
    """Module form of :func:`mask_loss`.

    Args:
        kind: ``"dice"``, ``"bce"`` or ``"dice+bce"``.
        smooth: Dice smoothing.
        reduction: see :func:`mask_loss`.

    Example:
        >>> masks = torch.ones(1, 2, 2, dtype=torch.bool)
        >>> MaskLoss(kind="bce")(torch.ones(1, 2, 2), masks)
        tensor(0.)
    """

    def __init__(
        self, *, kind: MaskKind = "dice", smooth: float = 1.0, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_one_of(kind, "kind", ("dice", "bce", "dice+bce"))
        check_nonnegative(smooth, "smooth")
        check_reduction(reduction)
        self.kind: MaskKind = kind
        self.smooth = smooth
        self.reduction: Reduction = reduction

    def forward(
        self, maps: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute the loss; see :func:`mask_loss`."""
        return mask_loss(
            maps, masks, valid, kind=self.kind, smooth=self.smooth, reduction=self.reduction
        )
