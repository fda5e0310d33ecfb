"""Pseudo-masks for self-training: confident foreground, confident background, ignore."""

from __future__ import annotations

import math

import torch

from camseg._checks import (
    check_binary_labels,
    check_finite,
    check_floating,
    check_in_range,
    check_ndim,
    check_same_batch,
    check_tensor,
    describe,
)

__all__ = ["pseudo_masks"]

PCAM_REGION = 1.0 / 3.0


def _centre_mask(
    region: float | torch.Tensor, h: int, w: int, device: torch.device
) -> torch.Tensor:
    if isinstance(region, torch.Tensor) and region.ndim == 3:
        if region.dtype != torch.bool or tuple(region.shape[1:]) != (h, w):
            raise ValueError(
                f"Expected a per-sample `region` to be a torch.bool mask of shape (B, {h}, {w}), "
                f"but got {describe(region)}."
            )
        return region.to(device)
    if isinstance(region, torch.Tensor):
        if region.dtype != torch.bool or tuple(region.shape) != (h, w):
            raise ValueError(
                f"Expected `region` as a tensor to be a torch.bool mask of shape {(h, w)}, "
                f"but got {describe(region)}."
            )
        return region.to(device)
    if isinstance(region, bool) or not isinstance(region, (int, float)):
        raise TypeError(
            "Expected `region` to be the side of a centred square as a fraction of the "
            f"map (a number in (0, 1]) or a bool mask, but got {describe(region)}."
        )
    if not 0.0 < float(region) <= 1.0:
        raise ValueError(f"Expected `region` to lie in (0, 1], but got {region!r}.")
    lo = (1.0 - float(region)) / 2.0

    def span(n: int) -> slice:
        a, b = lo * n, (1.0 - lo) * n
        start = round(a) if abs(a - round(a)) < 1e-6 else math.floor(a)
        stop = round(b) if abs(b - round(b)) < 1e-6 else math.ceil(b)
        return slice(start, max(stop, start + 1))

    out = torch.zeros(h, w, dtype=torch.bool, device=device)
    out[span(h), span(w)] = True
    return out


def pseudo_masks(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.25,
    region: float | torch.Tensor = PCAM_REGION,
) -> torch.Tensor:
    r"""Three-way pseudo-masks from per-pixel tumor probabilities and image labels.

    A pixel is foreground (``1``) when its probability is at least
    :math:`0.5 + \delta`, background (``0``) when at most :math:`0.5 - \delta`, and
    ignored (``-1``) in between, with :math:`\delta` = ``margin``. The image label adds
    what it knows for certain: the label region of a negative holds no tumor, so it is
    background whatever the map says. The thresholds are on probabilities, so they
    need maps on a calibrated scale (e.g. the sigmoid of per-location logits trained
    with :func:`camseg.losses.mil_loss`), not min-max normalised CAMs.

    Args:
        probs: ``(B, H, W)`` floating per-pixel probabilities in ``[0, 1]``.
        labels: ``(B,)`` 0/1 image labels.
        margin: :math:`\delta` in ``[0, 0.5)``; 0 labels every pixel (a tie at 0.5 is
            background), larger values ignore more.
        region: the label region: the side of a centred square as a fraction of the
            map (default the PCam rule, the centred third), a ``torch.bool`` mask
            ``(H, W)``, or one mask per sample ``(B, H, W)`` (for crops that move the
            label region).

    Returns:
        ``torch.int8`` ``(B, H, W)`` with values 1, 0 and -1, on ``probs``' device.

    Raises:
        TypeError: if ``probs`` is not floating or an option has the wrong type.
        ValueError: for a wrong shape, NaN or out-of-range probabilities, labels other
            than 0/1, or ``margin`` outside ``[0, 0.5)``.

    Example:
        >>> p = torch.tensor([[[0.9, 0.6, 0.1]] * 3, [[0.9, 0.6, 0.1]] * 3])
        >>> pseudo_masks(p, torch.tensor([1, 0]))[:, 1].tolist()
        [[1, -1, 0], [1, 0, 0]]
    """
    p = check_tensor(probs, "probs")
    check_ndim(p, "probs", 3, "(B, H, W)")
    check_floating(p, "probs")
    check_finite(p, "probs")
    check_in_range(p, "probs", 0.0, 1.0, hint="Hint: pass probabilities, e.g. a sigmoid of logits.")
    y = check_binary_labels(labels, "labels")
    check_same_batch(p, "probs", y, "labels")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"Expected `margin` to be a number, but got {describe(margin)}.")
    if not 0.0 <= float(margin) < 0.5:
        raise ValueError(f"Expected `margin` to lie in [0, 0.5), but got {margin!r}.")
    centre = _centre_mask(region, p.shape[1], p.shape[2], p.device)
    out = torch.full(p.shape, -1, dtype=torch.int8, device=p.device)
    out[p >= 0.5 + margin] = 1
    out[p <= 0.5 - margin] = 0
    if centre.ndim == 3 and centre.shape[0] != p.shape[0]:
        raise ValueError(
            f"Expected a per-sample `region` with {p.shape[0]} masks (the batch of `probs`), "
            f"but got {centre.shape[0]}."
        )
    neg_centre = (~y.to(p.device))[:, None, None] & (centre if centre.ndim == 3 else centre[None])
    out[neg_centre] = 0
    return out
