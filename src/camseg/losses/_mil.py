"""Multiple-instance learning on per-location logits, and dense BCE on pseudo-masks.

The PatchCamelyon label rule is a multiple-instance statement: a patch is positive
when *some* location of its centre region holds tumor, negative when *none* does,
and says nothing about the periphery. :func:`mil_loss` pools per-location logits
over the label region with a smooth maximum and compares the pooled logit with the
image label (binary cross-entropy), so a negative's whole centre becomes dense
negative supervision while a positive asks for evidence in at least one place.
:func:`pseudo_mask_loss` is the second, self-training stage: a per-pixel binary
cross-entropy on pseudo-masks (``1`` foreground, ``0`` background, ``-1`` ignore).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from camseg._checks import (
    Reduction,
    check_labels,
    check_nonnegative,
    check_one_of,
    check_positive_int,
    check_reduction,
    describe,
)
from camseg.losses._common import Region, loss_maps, reduce
from camseg.losses._region import region_mask

__all__ = ["MILLoss", "Pooling", "PseudoMaskLoss", "mil_loss", "mil_pool", "pseudo_mask_loss"]

Pooling = Literal["lse", "max", "mean", "topk"]
"""How :func:`mil_pool` combines the logits of a region: ``"lse"`` (log-mean-exp with a
temperature), ``"max"``, ``"mean"`` or ``"topk"`` (mean of the ``k`` largest)."""

POOLINGS = ("lse", "max", "mean", "topk")
PCAM_REGION = 1.0 / 3.0


def _check_logits(logits: object, *, empty_batch: bool = False) -> torch.Tensor:
    out = loss_maps(logits, "logits", empty_batch=empty_batch)
    if out.shape[0] and not bool(torch.isfinite(out.detach()).all()):
        raise ValueError(
            "Expected `logits` to be finite, but got NaN or inf values. "
            "Hint: check the model's output (diverged training, a bad input)."
        )
    return out


def _check_pos_weight(pos_weight: float) -> None:
    check_nonnegative(pos_weight, "pos_weight")  # a number, not NaN
    if pos_weight == 0:
        raise ValueError(
            "Expected `pos_weight` to be > 0, but got 0 (the loss would ignore every "
            "foreground pixel). Hint: mark pixels to ignore with -1 in the targets."
        )


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"Expected `temperature` to be a number, but got {describe(temperature)}.")
    t = float(temperature)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(
            f"Expected `temperature` to be a finite number > 0, but got {temperature!r}."
        )
    return t


def mil_pool(
    logits: torch.Tensor,
    *,
    region: Region = PCAM_REGION,
    pooling: Pooling = "lse",
    temperature: float = 1.0,
    k: int = 1,
) -> torch.Tensor:
    r"""Pool per-location logits over a region into one logit per image.

    With logits :math:`z_b(p)` on the region :math:`R` (``region``, resized to the map
    by :func:`camseg.losses.region_mask`), ``"lse"`` is the log-mean-exp

    .. math::

        s_b = \tau \log \frac{1}{|R|} \sum_{p \in R} \exp\bigl(z_b(p) / \tau\bigr),

    a smooth maximum between the mean (:math:`\tau \to \infty`) and the maximum
    (:math:`\tau \to 0`); ``"max"``, ``"mean"`` and ``"topk"`` (the mean of the ``k``
    largest logits) are the usual alternatives. A constant map pools to that constant
    under every rule.

    Args:
        logits: ``(B, h, w)`` floating per-location logits (e.g. a GAP + linear head's
            linear CAM plus the bias, without ReLU).
        region: the label region (default the PCam rule: the centred third), or a
            ``torch.bool`` mask ``(B, h, w)`` with a region per sample (for
            augmentations that move the label region with the image, e.g.
            :func:`camseg_pcam.augment.label_crops` in the example).
        pooling: ``"lse"``, ``"max"``, ``"mean"`` or ``"topk"``.
        temperature: :math:`\tau > 0` of ``"lse"``, in logit units.
        k: how many logits ``"topk"`` averages (clipped to ``|R|``).

    Returns:
        ``(B,)`` pooled logits.

    Raises:
        TypeError: if ``logits`` is not a floating tensor or an option has the wrong type.
        ValueError: for a wrong shape, non-finite logits, a bad region or option.

    Example:
        >>> z = torch.full((1, 6, 6), -4.0)
        >>> z[0, 2, 3] = 4.0  # one tumor location in the centre 2x2
        >>> mil_pool(z, pooling="max").item(), round(mil_pool(z).item(), 3)
        (4.0, 2.615)

    References:
        Pinheiro and Collobert, "From image-level to pixel-level labeling with
        convolutional networks", CVPR 2015 (log-sum-exp pooling).
    """
    z = _check_logits(logits, empty_batch=True)  # pooling, not a loss: empty in, empty out
    check_one_of(pooling, "pooling", POOLINGS)
    tau = _check_temperature(temperature)
    check_positive_int(k, "k")
    if isinstance(region, torch.Tensor) and region.ndim == 3:
        return _pool_per_sample(z, _sample_regions(region, z), pooling, tau, k)
    inside = region_mask(region, (z.shape[1], z.shape[2]), device=z.device)
    vals = z[:, inside]  # (B, |R|)
    if pooling == "max":
        return vals.amax(dim=1) if vals.shape[0] else vals.sum(dim=1)
    if pooling == "mean":
        return vals.mean(dim=1)
    if pooling == "topk":
        kk = min(k, vals.shape[1])
        return vals.topk(kk, dim=1).values.mean(dim=1)
    return tau * (torch.logsumexp(vals / tau, dim=1) - math.log(vals.shape[1]))


def _sample_regions(region: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Check a per-sample region mask ``(B, h, w)`` against logits ``(B, h, w)``."""
    if region.dtype != torch.bool:
        raise TypeError(
            f"Expected `region` as a tensor to be a torch.bool mask, but got {describe(region)}."
        )
    if tuple(region.shape) != tuple(z.shape):
        raise ValueError(
            "Expected a per-sample `region` mask to have the shape of `logits` "
            f"{tuple(z.shape)}, but got {tuple(region.shape)}."
        )
    m = region.to(z.device)
    if m.shape[0] and not bool(m.flatten(1).any(dim=1).all()):
        raise ValueError("Expected every sample's `region` mask to hold at least one True pixel.")
    return m


def _pool_per_sample(
    z: torch.Tensor, m: torch.Tensor, pooling: str, tau: float, k: int
) -> torch.Tensor:
    """The pooling rules of :func:`mil_pool` over a different region per sample."""
    flat, keep = z.flatten(1), m.flatten(1)
    if flat.shape[0] == 0:
        return flat.sum(dim=1)
    count = keep.sum(dim=1).to(z.dtype)
    if pooling == "mean":
        return torch.where(keep, flat, torch.zeros_like(flat)).sum(dim=1) / count
    hidden = flat.masked_fill(~keep, -math.inf)
    if pooling == "max":
        return hidden.amax(dim=1)
    if pooling == "topk":
        kk = min(k, int(count.min()))
        return hidden.topk(kk, dim=1).values.mean(dim=1)
    return tau * (torch.logsumexp(hidden / tau, dim=1) - torch.log(count))


def mil_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    region: Region = PCAM_REGION,
    pooling: Pooling = "lse",
    temperature: float = 1.0,
    k: int = 1,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Multiple-instance loss: the pooled label-region logit against the image label.

    .. math::

        \ell_b = \mathrm{BCE}\bigl(\sigma(s_b), y_b\bigr)
               = \log\bigl(1 + e^{s_b}\bigr) - y_b s_b,

    with :math:`s_b` the :func:`mil_pool` of the logits over ``region``. Locations
    outside the region get no gradient: the label says nothing about them.

    Args:
        logits: ``(B, h, w)`` floating per-location logits.
        labels: ``(B,)`` 0/1 image labels (bool, integer or floating).
        region: the label region (default the PCam rule: the centred third).
        pooling: ``"lse"``, ``"max"``, ``"mean"`` or ``"topk"`` (see :func:`mil_pool`).
        temperature: :math:`\tau > 0` of ``"lse"``.
        k: how many logits ``"topk"`` averages.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (a ``(B,)`` tensor).

    Returns:
        The loss, ``>= 0``; it tends to 0 as the region's logits of positives go to
        :math:`+\infty` and those of negatives to :math:`-\infty`.

    Raises:
        TypeError: if ``logits`` is not a floating tensor or ``labels`` not a tensor.
        ValueError: for shape mismatches, non-finite logits, labels other than 0/1 or a
            bad option.

    Example:
        >>> z = torch.full((2, 6, 6), -8.0)
        >>> z[0, 2, 2] = 8.0
        >>> mil_loss(z, torch.tensor([1, 0]), pooling="max") < 1e-3
        tensor(True)

    References:
        Dietterich et al., "Solving the multiple instance problem with axis-parallel
        rectangles", Artif. Intell. 1997. Veeling et al., "Rotation Equivariant CNNs
        for Digital Pathology", MICCAI 2018 (the PCam label rule).
    """
    z = _check_logits(logits)
    y = check_labels(labels, z).to(z.dtype)
    check_reduction(reduction)
    s = mil_pool(z, region=region, pooling=pooling, temperature=temperature, k=k)
    per_image = F.binary_cross_entropy_with_logits(s, y, reduction="none")
    return reduce(per_image, reduction)


class MILLoss(nn.Module):
    """Module form of :func:`mil_loss`.

    Args:
        region: the label region.
        pooling: ``"lse"``, ``"max"``, ``"mean"`` or ``"topk"``.
        temperature: the log-sum-exp temperature.
        k: how many logits ``"topk"`` averages.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> loss = MILLoss(pooling="max")
        >>> float(loss(torch.zeros(2, 6, 6), torch.tensor([1, 0])))  # log 2
        0.6931471824645996
    """

    def __init__(
        self,
        *,
        region: Region = PCAM_REGION,
        pooling: Pooling = "lse",
        temperature: float = 1.0,
        k: int = 1,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_one_of(pooling, "pooling", POOLINGS)
        _check_temperature(temperature)
        check_positive_int(k, "k")
        check_reduction(reduction)
        self.region, self.pooling, self.temperature = region, pooling, float(temperature)
        self.k, self.reduction = k, reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """See :func:`mil_loss`."""
        return mil_loss(
            logits,
            labels,
            region=self.region,
            pooling=self.pooling,
            temperature=self.temperature,
            k=self.k,
            reduction=self.reduction,
        )


def _check_pseudo(pseudo_masks: object, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(pseudo_masks, torch.Tensor):
        raise TypeError(
            f"Expected `pseudo_masks` to be a torch.Tensor, but got {describe(pseudo_masks)}."
        )
    if pseudo_masks.dtype.is_floating_point or pseudo_masks.is_complex():
        raise TypeError(
            "Expected `pseudo_masks` to be an integer or bool tensor with values 1 "
            f"(foreground), 0 (background) and -1 (ignore), but got {pseudo_masks.dtype}. "
            "Hint: camseg.postprocess.pseudo_masks makes them."
        )
    if tuple(pseudo_masks.shape) != tuple(logits.shape):
        raise ValueError(
            "Expected `pseudo_masks` to have the shape of `logits` "
            f"{tuple(logits.shape)}, but got {tuple(pseudo_masks.shape)}. "
            "Hint: upsample the logits to the pseudo-mask size first."
        )
    pm = pseudo_masks.to(logits.device)
    if pm.dtype != torch.bool and pm.numel():
        bad = (pm != 1) & (pm != 0) & (pm != -1)
        if bool(bad.any()):
            raise ValueError(
                "Expected `pseudo_masks` to hold only 1, 0 and -1, but got values "
                f"{pm[bad][:5].tolist()}."
            )
    return pm


def pseudo_mask_loss(
    logits: torch.Tensor,
    pseudo_masks: torch.Tensor,
    *,
    pos_weight: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    r"""Per-pixel binary cross-entropy on pseudo-masks, with an ignore label.

    For image :math:`b` with labelled pixels :math:`V_b = \{p : g_b(p) \ne -1\}`,

    .. math::

        \ell_b = \frac{1}{|V_b|} \sum_{p \in V_b}
            w_p \bigl[\log(1 + e^{z_b(p)}) - g_b(p)\, z_b(p)\bigr],

    with :math:`w_p` = ``pos_weight`` on foreground pixels and 1 elsewhere. Images
    without a labelled pixel do not count (``"mean"`` averages over the others; their
    ``"none"`` entry is 0). Unlike :func:`camseg.losses.mask_loss`, which takes
    probabilities and a whole mask per image, this works on logits (stable for large
    values) and ignores pixels one by one.

    Args:
        logits: ``(B, H, W)`` floating per-pixel logits.
        pseudo_masks: ``(B, H, W)`` integer tensor of 1 (foreground), 0 (background)
            and -1 (ignore), as :func:`camseg.postprocess.pseudo_masks` returns; a bool
            mask means no pixel is ignored.
        pos_weight: weight of the foreground pixels (``> 0``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (a ``(B,)`` tensor).

    Returns:
        The loss, ``>= 0``; it tends to 0 as the logits go to :math:`\pm\infty` with the
        pseudo-mask's signs, and ignored pixels never change it.

    Raises:
        TypeError: if ``logits`` is not floating or ``pseudo_masks`` is floating.
        ValueError: on a shape mismatch, non-finite logits, values other than 1/0/-1, a
            ``pos_weight <= 0`` or a bad ``reduction``.

    Example:
        >>> g = torch.tensor([[[1, 0], [-1, -1]]], dtype=torch.int8)
        >>> z = torch.tensor([[[20.0, -20.0], [-50.0, 50.0]]])
        >>> pseudo_mask_loss(z, g) < 1e-6
        tensor(True)
    """
    z = _check_logits(logits)
    g = _check_pseudo(pseudo_masks, z)
    _check_pos_weight(pos_weight)
    check_reduction(reduction)
    valid = g >= 0 if g.dtype != torch.bool else torch.ones_like(g)
    target = (g == 1).to(z.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    if pos_weight != 1.0:
        per_pixel = per_pixel * torch.where(target > 0, float(pos_weight), 1.0).to(z.dtype)
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    count = valid.flatten(1).sum(1)
    per_image = per_pixel.flatten(1).sum(1) / count.clamp_min(1).to(z.dtype)
    return reduce(per_image, reduction, count > 0)


class PseudoMaskLoss(nn.Module):
    """Module form of :func:`pseudo_mask_loss`.

    Args:
        pos_weight: weight of the foreground pixels.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Example:
        >>> loss = PseudoMaskLoss()
        >>> g = torch.tensor([[[1, -1]]], dtype=torch.int8)
        >>> float(loss(torch.zeros(1, 1, 2), g))  # log 2 on the one labelled pixel
        0.6931471824645996
    """

    def __init__(self, *, pos_weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_pos_weight(pos_weight)
        check_reduction(reduction)
        self.pos_weight, self.reduction = float(pos_weight), reduction

    def forward(self, logits: torch.Tensor, pseudo_masks: torch.Tensor) -> torch.Tensor:
        """See :func:`pseudo_mask_loss`."""
        return pseudo_mask_loss(
            logits,
            pseudo_masks,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
        )
