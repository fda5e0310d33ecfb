"""Losses on the maps of the current forward pass: suppression, centre evidence, size."""

from __future__ import annotations

import math

import torch
from torch import nn

from camseg._checks import (
    Reduction,
    check_device,
    check_in_range,
    check_labels,
    check_nonnegative,
    check_reduction,
    describe,
)
from camseg.losses._common import Region, loss_maps, reduce

__all__ = [
    "CenterEvidenceLoss",
    "SizeLoss",
    "SuppressionLoss",
    "center_evidence_loss",
    "region_mask",
    "size_loss",
    "suppression_loss",
]

_EPS = 1e-9
PCAM_REGION = 1.0 / 3.0


def _edge(value: float, size: int, *, upper: bool) -> int:
    x = value * size
    nearest = round(x)
    if abs(x - nearest) < 1e-6:
        return int(nearest)
    return math.ceil(x) if upper else math.floor(x)


def _with_nonfinite_of(per_image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """``per_image``, made NaN for every image whose map holds a NaN or infinity anywhere.

    A region loss reads only its region; without this, a NaN outside it would pass
    unseen. One reduction of the detached maps: no device sync, no change to the
    gradients.
    """
    return per_image + maps.detach().sum(dim=(-2, -1)) * 0.0


def region_mask(
    region: Region, size: tuple[int, int], *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean mask of a region of a map, at any map size.

    A fractional region covers every pixel that overlaps it: rows
    ``floor(top * H)`` to ``ceil(bottom * H) - 1`` (and likewise for columns), with
    values within ``1e-6`` of an integer taken as that integer. The PCam label region
    (the centre 32×32 of a 96×96 patch) is ``region=1/3``; on a 12×12 feature map it
    becomes the centre 4×4.

    Args:
        region: the side of a centred square as a fraction of the map's sides (a
            number in ``(0, 1]``), a box ``(top, left, bottom, right)`` in fractions of
            the map's height and width, or a ``torch.bool`` mask of shape ``(H, W)``.
        size: the map's ``(H, W)``.
        device: device of the returned mask (default: the mask's own device, or CPU).

    Returns:
        A ``torch.bool`` tensor of shape ``(H, W)`` with at least one True pixel.

    Raises:
        TypeError: if ``region`` is none of the accepted kinds.
        ValueError: if the region lies outside the map, is empty, or a mask does not
            have shape ``size``; if ``device`` names no torch device.

    Example:
        >>> region_mask(1 / 3, (6, 6)).int()
        tensor([[0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0],
                [0, 0, 1, 1, 0, 0],
                [0, 0, 1, 1, 0, 0],
                [0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0]], dtype=torch.int32)
        >>> int(region_mask((0.0, 0.0, 0.5, 1.0), (96, 96)).sum())
        4608
    """
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise TypeError(f"Expected `size` to be a pair of ints (H, W), but got {describe(size)}.")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"Expected `size` to have sides >= 1, but got {tuple(size)}.")
    device = check_device(device)
    h, w = size
    if isinstance(region, torch.Tensor):
        if region.dtype != torch.bool or region.ndim != 2:
            raise TypeError(
                "Expected `region` as a tensor to be a torch.bool mask of shape (H, W), "
                f"but got {describe(region)}."
            )
        if tuple(region.shape) != (h, w):
            raise ValueError(
                f"Expected the `region` mask to have the map's shape {(h, w)}, but got "
                f"{tuple(region.shape)}. Hint: give the region as fractions to have it "
                "scale with the map."
            )
        if not bool(region.any()):
            raise ValueError("Expected the `region` mask to hold at least one True pixel.")
        return region if device is None else region.to(device)
    if isinstance(region, (int, float)) and not isinstance(region, bool):
        if not 0.0 < region <= 1.0:
            raise ValueError(
                "Expected `region` as a number to be the side of a centred square as a "
                f"fraction of the map, in (0, 1], but got {region!r}."
            )
        lo = (1.0 - float(region)) / 2.0
        box = (lo, lo, 1.0 - lo, 1.0 - lo)
    elif isinstance(region, (tuple, list)) and len(region) == 4:
        box = tuple(float(v) for v in region)  # type: ignore[assignment]
        top, left, bottom, right = box
        if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
            raise ValueError(
                "Expected `region` as a box (top, left, bottom, right) to lie inside the "
                f"map, with fractions in [0, 1], top < bottom and left < right, but got {region!r}."
            )
    else:
        raise TypeError(
            "Expected `region` to be a fraction in (0, 1], a box (top, left, bottom, right) "
            f"of fractions, or a torch.bool mask of shape (H, W), but got {describe(region)}."
        )
    top, left, bottom, right = box
    r0, r1 = _edge(top, h, upper=False), _edge(bottom, h, upper=True)
    c0, c1 = _edge(left, w, upper=False), _edge(right, w, upper=True)
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[r0:r1, c0:c1] = True
    return mask


def _check_region_spec(region: Region) -> None:
    """Validate a region at construction time (a mask's shape is checked per call)."""
    if isinstance(region, torch.Tensor):
        region_mask(region, (region.shape[0], region.shape[1]) if region.ndim == 2 else (0, 0))
    else:
        region_mask(region, (96, 96))


def _region_values(maps: torch.Tensor, region: Region) -> torch.Tensor:
    """The map values inside the region, shape (B, R)."""
    mask = region_mask(region, (maps.shape[-2], maps.shape[-1]), device=maps.device)
    return maps.flatten(1)[:, mask.flatten()]


def suppression_loss(
    maps: torch.Tensor,
    labels: torch.Tensor,
    *,
    region: Region = PCAM_REGION,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Penalise evidence inside the label region of negative images.

    A PatchCamelyon negative has no tumour in its centre 32×32 but may hold tumour
    elsewhere, so the map of a negative is pushed to zero inside ``region`` only:

    .. math::

        \ell_b = [y_b = 0] \, \frac{1}{|R|} \sum_{p \in R} m_b(p)^2 .

    Args:
        maps: ``(B, H, W)`` maps on a fixed scale (raw CAMs, or per-pixel
            probabilities); not per-image min-max normalised, which cannot be zero.
        labels: ``(B,)`` 0/1 labels (bool, int or float).
        region: where the label is defined; see :func:`region_mask`. Default: the
            centred square of side 1/3 (PCam's 32×32 of 96×96).
        reduction: ``"mean"`` over the negatives (0 when there are none), ``"sum"``, or
            ``"none"`` for a ``(B,)`` tensor (0 for positives).

    Returns:
        The loss, a scalar (or ``(B,)``), ``>= 0`` and zero when every negative's map
        is zero inside the region.

    Raises:
        TypeError: if ``maps`` is not a floating tensor or ``region`` is malformed.
        ValueError: on wrong shapes, labels that are not 0/1, a region outside the map
            or an unknown ``reduction``.

    Example:
        >>> maps = torch.zeros(2, 6, 6)
        >>> maps[0, 2, 2] = 2.0  # evidence in the centre of a negative
        >>> suppression_loss(maps, torch.tensor([0, 1]))
        tensor(1.)

    References:
        Veeling et al., "Rotation Equivariant CNNs for Digital Pathology", MICCAI 2018
        (the PCam label rule).
    """
    maps = loss_maps(maps)
    negative = ~check_labels(labels, maps)
    check_reduction(reduction)
    per_image = _with_nonfinite_of(_region_values(maps, region).pow(2).mean(1), maps)
    return reduce(per_image, reduction, negative)


def center_evidence_loss(
    maps: torch.Tensor,
    labels: torch.Tensor,
    *,
    region: Region = PCAM_REGION,
    target: float = 1.0,
    top_fraction: float = 0.1,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Require strong evidence inside the label region of positive images.

    A PCam positive has tumour in its centre 32×32, so its map must reach ``target``
    there. Evidence is the mean of the largest ``k = ceil(top_fraction |R|)`` values of
    the map in the region (a smooth stand-in for the maximum):

    .. math::

        e_b = \operatorname{mean}\operatorname{top}_k \{ m_b(p) : p \in R \}, \qquad
        \ell_b = [y_b = 1] \, \max(0, t - e_b)^2 .

    Args:
        maps: ``(B, H, W)`` maps on a fixed scale, e.g. per-pixel probabilities.
        labels: ``(B,)`` 0/1 labels.
        region: the label region; see :func:`region_mask`. Default: centred 1/3 square.
        target: evidence ``t`` a positive must reach.
        top_fraction: fraction of the region's pixels averaged, in ``(0, 1]``.
        reduction: ``"mean"`` over the positives, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero when every positive's top values reach ``target``.

    Raises:
        TypeError: if ``maps`` is not a floating tensor or ``region`` is malformed.
        ValueError: on wrong shapes, labels that are not 0/1, a region outside the map,
            ``top_fraction`` outside ``(0, 1]`` or an unknown ``reduction``.

    Example:
        >>> maps = torch.zeros(2, 6, 6)
        >>> maps[1, 2:4, 2:4] = 0.5  # the positive's region reaches only 0.5
        >>> center_evidence_loss(maps, torch.tensor([0, 1]))
        tensor(0.2500)

    References:
        Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016
        (CAM); Veeling et al., MICCAI 2018 (the PCam label rule).
    """
    maps = loss_maps(maps)
    positive = check_labels(labels, maps)
    check_nonnegative(target, "target")
    _check_top_fraction(top_fraction)
    check_reduction(reduction)
    values = _region_values(maps, region)
    k = max(1, math.ceil(top_fraction * values.shape[1] - 1e-9))
    evidence = values.topk(k, dim=1).values.mean(1)
    per_image = _with_nonfinite_of(torch.relu(target - evidence).pow(2), maps)
    return reduce(per_image, reduction, positive)


def size_loss(
    maps: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    bounds: tuple[float, float] = (0.05, 0.9),
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Keep the mapped area of positive images within bounds.

    The soft area is the mean of the map (maps in ``[0, 1]``); outside
    ``[a_low, a_high]`` a quadratic penalty applies, as in the size constraints of
    Kervadec et al.:

    .. math::

        a_b = \frac{1}{HW} \sum_p m_b(p), \qquad
        \ell_b = [y_b = 1] \bigl(\max(0, a_{low} - a_b)^2 + \max(0, a_b - a_{high})^2\bigr).

    Args:
        maps: ``(B, H, W)`` maps in ``[0, 1]`` (per-pixel probabilities).
        labels: ``(B,)`` 0/1 labels; the loss applies to positives. None applies it
            to every image.
        bounds: ``(a_low, a_high)``, fractions of the map's area with
            ``0 <= a_low <= a_high <= 1``.
        reduction: ``"mean"`` over the images it applies to, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero when every area lies within the bounds.

    Raises:
        TypeError: if ``maps`` is not a floating tensor.
        ValueError: on wrong shapes, labels that are not 0/1, bad bounds, an unknown
            ``reduction``, or CPU maps outside ``[0, 1]`` (on other devices such maps
            make the loss NaN instead: checking there would synchronise every step).

    Example:
        >>> maps = torch.zeros(1, 4, 4)
        >>> size_loss(maps, torch.tensor([1]), bounds=(0.5, 1.0))  # area 0 < 0.5
        tensor(0.2500)

    References:
        Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation",
        Medical Image Analysis 2019.
    """
    maps = loss_maps(maps)
    applies = None if labels is None else check_labels(labels, maps)
    _check_bounds(bounds)
    check_reduction(reduction)
    low, high = bounds
    # an area is a fraction only for maps in [0, 1]: outside, the loss is NaN (no device
    # sync, as for a NaN map), and on the CPU, where checking costs no sync, an error
    outside = ((maps < 0) | (maps > 1)).flatten(1).any(dim=1)
    if maps.device.type == "cpu" and bool(outside.any()):
        lo, hi = (float(v) for v in torch.aminmax(maps.detach()))
        raise ValueError(
            f"Expected `maps` in [0, 1] (per-pixel probabilities), but got values in "
            f"[{lo:.4g}, {hi:.4g}]. Hint: pass probabilities or min-max normalised maps."
        )
    area = maps.mean(dim=(1, 2))
    per_image = torch.relu(low - area).pow(2) + torch.relu(area - high).pow(2)
    per_image = per_image.masked_fill(outside, float("nan"))
    return reduce(per_image, reduction, applies)


def _check_top_fraction(top_fraction: float) -> None:
    check_in_range(top_fraction, "top_fraction", 0.0, 1.0)
    if top_fraction <= 0:
        raise ValueError(f"Expected `top_fraction` to lie in (0, 1], but got {top_fraction!r}.")


def _check_bounds(bounds: object) -> None:
    if (
        not isinstance(bounds, (tuple, list))
        or len(bounds) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    ):
        raise TypeError(f"Expected `bounds` to be a pair (low, high), but got {describe(bounds)}.")
    low, high = bounds
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(
            f"Expected `bounds` to satisfy 0 <= low <= high <= 1, but got {tuple(bounds)!r}."
        )


class SuppressionLoss(nn.Module):
    """Module form of :func:`suppression_loss`.

    Args:
        region: the label region; see :func:`region_mask`.
        reduction: see :func:`suppression_loss`.

    Example:
        >>> loss = SuppressionLoss()
        >>> loss(torch.ones(2, 6, 6), torch.tensor([0, 0]))
        tensor(1.)
    """

    def __init__(self, *, region: Region = PCAM_REGION, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_region_spec(region)
        check_reduction(reduction)
        self.region = region
        self.reduction: Reduction = reduction

    def forward(self, maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Compute the loss; see :func:`suppression_loss`."""
        return suppression_loss(maps, labels, region=self.region, reduction=self.reduction)


class CenterEvidenceLoss(nn.Module):
    """Module form of :func:`center_evidence_loss`.

    Args:
        region: the label region; see :func:`region_mask`.
        target: evidence a positive must reach.
        top_fraction: fraction of the region's pixels averaged.
        reduction: see :func:`center_evidence_loss`.

    Example:
        >>> loss = CenterEvidenceLoss(target=1.0)
        >>> loss(torch.ones(2, 6, 6), torch.tensor([1, 1]))
        tensor(0.)
    """

    def __init__(
        self,
        *,
        region: Region = PCAM_REGION,
        target: float = 1.0,
        top_fraction: float = 0.1,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_region_spec(region)
        check_nonnegative(target, "target")
        _check_top_fraction(top_fraction)
        check_reduction(reduction)
        self.region = region
        self.target = target
        self.top_fraction = top_fraction
        self.reduction: Reduction = reduction

    def forward(self, maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Compute the loss; see :func:`center_evidence_loss`."""
        return center_evidence_loss(
            maps,
            labels,
            region=self.region,
            target=self.target,
            top_fraction=self.top_fraction,
            reduction=self.reduction,
        )


class SizeLoss(nn.Module):
    """Module form of :func:`size_loss`.

    Args:
        bounds: ``(a_low, a_high)`` area fractions.
        reduction: see :func:`size_loss`.

    Example:
        >>> loss = SizeLoss(bounds=(0.0, 0.5))
        >>> loss(torch.ones(1, 4, 4), torch.tensor([1]))  # area 1 > 0.5
        tensor(0.2500)
    """

    def __init__(
        self, *, bounds: tuple[float, float] = (0.05, 0.9), reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        _check_bounds(bounds)
        check_reduction(reduction)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.reduction: Reduction = reduction

    def forward(self, maps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the loss; see :func:`size_loss`."""
        return size_loss(maps, labels, bounds=self.bounds, reduction=self.reduction)
