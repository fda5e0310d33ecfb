"""Losses that need extra forward passes: equivariance, puzzle, attention mining.

They take a ``cam_fn`` / ``score_fn`` so that they work with any extractor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from camseg._checks import (
    Reduction,
    as_compute_dtype,
    check_callable,
    check_labels,
    check_nonnegative,
    check_one_of,
    check_positive_int,
    check_reduction,
    check_same_batch,
    check_tensor,
    describe,
)
from camseg.functional.transforms import Group, apply_transform, transform_group
from camseg.losses._common import CamFn, ScoreFn, loss_images, loss_maps, reduce

__all__ = [
    "AttentionMiningLoss",
    "EquivarianceLoss",
    "PuzzleLoss",
    "attention_mining_loss",
    "equivariance_loss",
    "puzzle_loss",
]

# a transform: ("rot", quarter turns, flip) or ("scale", factor, False)
_Element = tuple[str, float, bool]


def _resize(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def _call_cam(cam_fn: CamFn, images: torch.Tensor) -> torch.Tensor:
    out = cam_fn(images)
    check_tensor(out, "cam_fn(images)")
    if out.ndim != 3 or out.shape[0] != images.shape[0]:
        raise ValueError(
            "Expected `cam_fn` to return maps of shape (B, h, w) with the batch size of its "
            f"input ({images.shape[0]}), but got shape {tuple(out.shape)}."
        )
    return as_compute_dtype(out)


def _check_number(value: object, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise TypeError(f"Expected `{name}` to be a number, but got {describe(value)}.")


def equivariance_loss(
    cam_fn: CamFn,
    images: torch.Tensor,
    maps: torch.Tensor | None = None,
    *,
    transforms: Group | None = "d4",
    sample: int | Literal["all"] = 1,
    scales: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Maps of transformed images must equal the transformed maps (SEAM).

    For each sampled transform :math:`g` (a rotation/flip of the group, or a rescaling
    by one of ``scales``), with :math:`f` = ``cam_fn``:

    .. math::

        \ell_b = \frac{1}{|S|} \sum_{g \in S}
                  \operatorname{mean}_p \bigl| f(g x_b)(p) - g f(x_b)(p) \bigr| .

    For a rescaling, :math:`g f(x)` is :math:`f(x)` resized (bilinear) to the size of
    :math:`f(g x)`. Each sampled transform costs one call of ``cam_fn`` on the whole
    batch; both branches carry gradients.

    Args:
        cam_fn: ``images (B, C, H, W) -> maps (B, h, w)``, e.g. a closure over an
            extractor with ``create_graph=True``.
        images: ``(B, C, H, W)`` float images.
        maps: ``cam_fn(images)`` if already computed (saves a pass), else None.
        transforms: the rotation/flip group (see
            :func:`camseg.functional.transform_group`); None for rescalings only.
        sample: how many non-identity transforms to draw per call (without
            replacement), or ``"all"``.
        scales: optional rescaling factors ``> 0`` (e.g. ``(0.5,)``) added to the
            transforms that are sampled from.
        generator: random generator for the draw (reproducible training).
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero for an equivariant ``cam_fn``.

    Raises:
        TypeError: if ``cam_fn`` is not callable or a tensor argument is malformed.
        ValueError: on shape mismatches, bad ``sample``/``scales``, or a ``cam_fn``
            that does not return ``(B, h, w)`` maps.

    Example:
        >>> cam_fn = lambda x: x.mean(1)  # pointwise: exactly equivariant
        >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> equivariance_loss(cam_fn, x, sample="all")
        tensor(0.)

    References:
        Wang et al., "Self-supervised Equivariant Attention Mechanism for Weakly
        Supervised Semantic Segmentation", CVPR 2020.
    """
    check_callable(cam_fn, "cam_fn")
    images = loss_images(images, finite=True)
    if maps is not None:
        maps = loss_maps(maps)
        check_same_batch(images, "images", maps, "maps")
    check_reduction(reduction)
    elements: list[_Element] = [("rot", k, f) for k, f in transform_group(transforms)[1:]]
    if scales is not None:
        if not isinstance(scales, (list, tuple)):
            raise TypeError(
                f"Expected `scales` to be a sequence of numbers, but got {describe(scales)}."
            )
        for s in scales:
            check_nonnegative(s, "scales")
            if s <= 0:
                raise ValueError(f"Expected every value of `scales` to be > 0, but got {s!r}.")
        elements += [("scale", float(s), False) for s in scales]
    if not elements:
        raise ValueError(
            "Expected at least one transform other than the identity, but `transforms` "
            f"is {transforms!r} and `scales` is {scales!r}."
        )
    if sample == "all":
        chosen = elements
    else:
        check_positive_int(sample, "sample")
        if sample > len(elements):
            raise ValueError(
                f"Expected `sample` to be at most the number of non-identity transforms "
                f"({len(elements)}), but got {sample}."
            )
        order = torch.randperm(len(elements), generator=generator)[:sample].tolist()
        chosen = [elements[i] for i in order]
    if maps is None:
        maps = _call_cam(cam_fn, images)
    total = torch.zeros(images.shape[0], dtype=maps.dtype, device=maps.device)
    for element in chosen:
        if element[0] == "scale":
            factor = float(element[1])
            h = max(1, round(images.shape[-2] * factor))
            w = max(1, round(images.shape[-1] * factor))
            moved = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
            out = _call_cam(cam_fn, moved)
            ref = _resize(maps, out.shape[-2:])
        else:
            rot = (int(element[1]), bool(element[2]))
            out = _call_cam(cam_fn, apply_transform(images, rot))
            ref = apply_transform(maps, rot)
            if out.shape != ref.shape:
                ref = _resize(ref, out.shape[-2:])
        total = total + (out - ref).abs().mean(dim=(1, 2))
    return reduce(total / len(chosen), reduction)


def puzzle_loss(
    cam_fn: CamFn,
    images: torch.Tensor,
    maps: torch.Tensor | None = None,
    *,
    tiles: int = 2,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""The maps of an image's tiles, merged, must equal the map of the whole image.

    The image is cut into ``tiles × tiles`` equal tiles, ``cam_fn`` runs once on all
    tiles of the batch, and the tile maps are put back in place (:math:`M`) and
    compared with the whole-image map, resized to it if the sizes differ:

    .. math::

        \ell_b = \operatorname{mean}_p \bigl| M(f, x_b)(p) - f(x_b)(p) \bigr| .

    Args:
        cam_fn: ``images (B, C, H, W) -> maps (B, h, w)``.
        images: ``(B, C, H, W)`` float images with ``H`` and ``W`` divisible by ``tiles``.
        maps: ``cam_fn(images)`` if already computed, else None.
        tiles: tiles per side (2 gives the 4 tiles of Puzzle-CAM).
        reduction: ``"mean"`` over the batch, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero when ``cam_fn`` acts locally (tile maps equal the
        crops of the whole map).

    Raises:
        TypeError: if ``cam_fn`` is not callable or a tensor argument is malformed.
        ValueError: if the image sides are not divisible by ``tiles`` or on shape
            mismatches.

    Example:
        >>> cam_fn = lambda x: x.mean(1)
        >>> puzzle_loss(cam_fn, torch.rand(2, 3, 8, 8))
        tensor(0.)

    References:
        Jo and Yu, "Puzzle-CAM: Improved localization via matching partial and full
        features", ICIP 2021.
    """
    check_callable(cam_fn, "cam_fn")
    images = loss_images(images, finite=True)
    check_positive_int(tiles, "tiles")
    check_reduction(reduction)
    b, c, h, w = images.shape
    if h % tiles or w % tiles:
        raise ValueError(
            f"Expected the sides of `images` to be divisible by `tiles` ({tiles}), but got "
            f"shape {tuple(images.shape)}."
        )
    if maps is None:
        maps = _call_cam(cam_fn, images)
    else:
        maps = loss_maps(maps)
        check_same_batch(images, "images", maps, "maps")
    th, tw = h // tiles, w // tiles
    parts = images.reshape(b, c, tiles, th, tiles, tw).permute(0, 2, 4, 1, 3, 5)
    parts = parts.reshape(b * tiles * tiles, c, th, tw)
    out = _call_cam(cam_fn, parts)
    ph, pw = out.shape[-2:]
    merged = out.reshape(b, tiles, tiles, ph, pw).permute(0, 1, 3, 2, 4)
    merged = merged.reshape(b, tiles * ph, tiles * pw)
    merged = _resize(merged, maps.shape[-2:])
    return reduce((merged - maps).abs().mean(dim=(1, 2)), reduction)


def attention_mining_loss(
    score_fn: ScoreFn,
    images: torch.Tensor,
    maps: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    omega: float = 10.0,
    sigma: float = 0.5,
    fill: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""The class score must drop once the mapped region is erased (GAIN).

    The map is turned into a soft mask :math:`T = \sigma(\omega (m - \sigma_0))`,
    the masked region is replaced by ``fill`` and the class score of what is left is
    the loss:

    .. math::

        x^* = x \odot (1 - T) + \text{fill} \cdot T, \qquad
        \ell_b = [y_b = 1] \, s(x^*_b) .

    Args:
        score_fn: ``images (B, C, H, W) -> scores (B,)`` in ``[0, 1]`` (the class
            probability, e.g. ``lambda x: model(x).sigmoid()[:, 0]``).
        images: ``(B, C, H, W)`` float images.
        maps: ``(B, H, W)`` maps in ``[0, 1]`` at the images' resolution.
        labels: optional ``(B,)`` 0/1 labels; the loss applies to positives (to all
            images when None).
        omega: sharpness :math:`\omega > 0` of the soft mask.
        sigma: threshold :math:`\sigma_0` of the soft mask, in ``(0, 1)``.
        fill: value that erased pixels take (0 as in GAIN; white, 1, suits H&E).
        reduction: ``"mean"`` over the images it applies to, ``"sum"`` or ``"none"``.

    Returns:
        The loss, ``>= 0`` and zero when erasing the mapped region removes all evidence.

    Raises:
        TypeError: if ``score_fn`` is not callable or a tensor argument is malformed.
        ValueError: on shape mismatches, ``omega <= 0``, or scores outside ``[0, 1]``.

    Example:
        >>> score_fn = lambda x: x.amax(dim=(1, 2, 3))  # evidence = brightest pixel
        >>> x = torch.zeros(1, 1, 4, 4)
        >>> x[0, 0, 1, 1] = 1.0
        >>> maps = x[:, 0]  # the map covers the evidence exactly
        >>> attention_mining_loss(score_fn, x, maps, omega=100.0)
        tensor(0.)

    References:
        Li et al., "Tell Me Where to Look: Guided Attention Inference Network", CVPR 2018.
    """
    check_callable(score_fn, "score_fn")
    images = loss_images(images, finite=True)
    maps = loss_maps(maps, unit=True)
    if maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            "Expected `maps` to have shape (B, H, W) matching `images` (B, C, H, W), but got "
            f"{tuple(maps.shape)} and {tuple(images.shape)}. Hint: upsample the maps to the "
            "image size."
        )
    applies = None if labels is None else check_labels(labels, maps)
    check_nonnegative(omega, "omega")
    if omega <= 0:
        raise ValueError(f"Expected `omega` to be > 0, but got {omega!r}.")
    _check_number(sigma, "sigma")
    if not 0.0 < sigma < 1.0:  # 0 or 1 would erase everything or nothing
        raise ValueError(
            f"Expected `sigma` to lie in (0, 1), but got {sigma!r}. "
            "Hint: `sigma` thresholds maps normalized to [0, 1]."
        )
    _check_number(fill, "fill")
    check_reduction(reduction)
    soft = torch.sigmoid(omega * (maps - sigma)).to(images.dtype)[:, None]
    erased = images * (1 - soft) + fill * soft
    scores = score_fn(erased)
    check_tensor(scores, "score_fn(images)")
    if scores.shape != (images.shape[0],):
        raise ValueError(
            f"Expected `score_fn` to return scores of shape ({images.shape[0]},), but got "
            f"shape {tuple(scores.shape)}."
        )
    scores = as_compute_dtype(scores)
    lo, hi = torch.aminmax(scores.detach())
    if scores.numel() and (float(lo) < 0 or float(hi) > 1):
        raise ValueError(
            "Expected `score_fn` to return probabilities in [0, 1], but got values in "
            f"[{float(lo):.4g}, {float(hi):.4g}]. Hint: apply sigmoid or softmax to the logits."
        )
    return reduce(scores, reduction, applies)


class EquivarianceLoss(nn.Module):
    """Module form of :func:`equivariance_loss`.

    Args:
        transforms: the rotation/flip group, see :func:`camseg.functional.transform_group`.
        sample: non-identity transforms drawn per call, or ``"all"``.
        scales: optional rescaling factors.
        reduction: see :func:`equivariance_loss`.

    Example:
        >>> loss = EquivarianceLoss(sample="all")
        >>> loss(lambda x: x.mean(1), torch.rand(2, 3, 8, 8))
        tensor(0.)
    """

    def __init__(
        self,
        *,
        transforms: Group | None = "d4",
        sample: int | Literal["all"] = 1,
        scales: Sequence[float] | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_one_of(transforms, "transforms", ("d4", "c4", "flips", None))
        if sample != "all":
            check_positive_int(sample, "sample")
        check_reduction(reduction)
        self.transforms: Group | None = transforms
        self.sample: int | Literal["all"] = sample
        self.scales = None if scales is None else tuple(scales)
        self.reduction: Reduction = reduction

    def forward(
        self,
        cam_fn: CamFn,
        images: torch.Tensor,
        maps: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Compute the loss; see :func:`equivariance_loss`."""
        return equivariance_loss(
            cam_fn,
            images,
            maps,
            transforms=self.transforms,
            sample=self.sample,
            scales=self.scales,
            generator=generator,
            reduction=self.reduction,
        )


class PuzzleLoss(nn.Module):
    """Module form of :func:`puzzle_loss`.

    Args:
        tiles: tiles per side.
        reduction: see :func:`puzzle_loss`.

    Example:
        >>> PuzzleLoss(tiles=4)(lambda x: x.mean(1), torch.rand(1, 3, 8, 8))
        tensor(0.)
    """

    def __init__(self, *, tiles: int = 2, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_positive_int(tiles, "tiles")
        check_reduction(reduction)
        self.tiles = tiles
        self.reduction: Reduction = reduction

    def forward(
        self, cam_fn: CamFn, images: torch.Tensor, maps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute the loss; see :func:`puzzle_loss`."""
        return puzzle_loss(cam_fn, images, maps, tiles=self.tiles, reduction=self.reduction)


class AttentionMiningLoss(nn.Module):
    """Module form of :func:`attention_mining_loss`.

    Args:
        omega: sharpness of the soft mask.
        sigma: threshold of the soft mask.
        fill: value of erased pixels.
        reduction: see :func:`attention_mining_loss`.

    Example:
        >>> loss = AttentionMiningLoss()
        >>> x = torch.ones(2, 3, 4, 4)
        >>> loss(lambda im: im.mean(dim=(1, 2, 3)), x, torch.ones(2, 4, 4))  # 1 - sigmoid(5)
        tensor(0.0067)
    """

    def __init__(
        self,
        *,
        omega: float = 10.0,
        sigma: float = 0.5,
        fill: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_nonnegative(omega, "omega")
        check_reduction(reduction)
        self.omega = omega
        self.sigma = sigma
        self.fill = fill
        self.reduction: Reduction = reduction

    def forward(
        self,
        score_fn: ScoreFn,
        images: torch.Tensor,
        maps: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss; see :func:`attention_mining_loss`."""
        return attention_mining_loss(
            score_fn,
            images,
            maps,
            labels,
            omega=self.omega,
            sigma=self.sigma,
            fill=self.fill,
            reduction=self.reduction,
        )
