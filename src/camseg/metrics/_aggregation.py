"""Patch-to-slide and slide-to-patient aggregation, grouped by an integer id tensor."""

from __future__ import annotations

import math
from typing import Literal

import torch

from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_ndim,
    check_nonnegative,
    check_one_of,
    check_positive_int,
    check_same_batch,
    check_tensor,
    describe,
)

__all__ = ["aggregate", "estimated_tumor_area"]

AggregateMethod = Literal["max", "mean", "topk_mean", "fraction_above", "sum"]


def _check_groups(groups: torch.Tensor, values: torch.Tensor, values_name: str) -> None:
    check_tensor(groups, "groups")
    check_ndim(groups, "groups", 1, "(N,)")
    if groups.dtype == torch.bool or groups.is_floating_point() or groups.is_complex():
        raise TypeError(
            f"Expected `groups` to hold integer ids (e.g. slide or patient ids), "
            f"but got {groups.dtype}."
        )
    check_same_batch(values, values_name, groups, "groups")


def aggregate(
    values: torch.Tensor,
    groups: torch.Tensor,
    *,
    method: AggregateMethod = "max",
    k: int = 1,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Aggregate per-patch values into one value per group (slide, node, patient).

    Groups are the distinct ids in ``groups``, returned sorted. No Python loop
    over groups: ``"max"``, ``"mean"``, ``"sum"`` and ``"fraction_above"`` are
    one :meth:`torch.Tensor.scatter_reduce` each; ``"topk_mean"`` sorts the
    values by (group, value) once and averages the first ``k`` of each group.

    - ``"max"``: :math:`\max_{i \in g} v_i` (the usual slide score from patch
      probabilities).
    - ``"mean"``: :math:`\frac{1}{|g|} \sum_{i \in g} v_i`.
    - ``"sum"``: :math:`\sum_{i \in g} v_i`.
    - ``"topk_mean"``: mean of the ``k`` largest values of the group (of all
      of them when the group has fewer than ``k``).
    - ``"fraction_above"``: :math:`\frac{1}{|g|} \#\{i \in g : v_i > t\}`,
      strictly above ``threshold`` (e.g. the fraction of tumor patches with
      probability above THR_PATCH = 0.7, 0.8 or 0.9).

    Args:
        values: per-patch values (probabilities, areas...), shape ``(N,)``.
        groups: integer group id of each patch, shape ``(N,)``.
        method: one of the methods above.
        k: number of values averaged by ``"topk_mean"``.
        threshold: the threshold of ``"fraction_above"``.

    Returns:
        ``(group_ids, aggregated)``: the sorted distinct ids ``(G,)`` and one
        value per group ``(G,)`` (``values``' dtype, float for
        ``"fraction_above"``/``"mean"``/``"topk_mean"``).

    Raises:
        TypeError: on non-tensor or non-integer ``groups``, bool/complex values.
        ValueError: on shape mismatches, NaN values, an unknown ``method`` or
            ``k < 1``.

    Example:
        >>> probs = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.3, 0.95])
        >>> slide = torch.tensor([0, 0, 0, 7, 7, 7])
        >>> aggregate(probs, slide, method="max")
        (tensor([0, 7]), tensor([0.9000, 0.9500]))
        >>> aggregate(probs, slide, method="topk_mean", k=2)[1]
        tensor([0.8500, 0.6250])
        >>> aggregate(probs, slide, method="fraction_above", threshold=0.7)[1]
        tensor([0.6667, 0.3333])
    """
    check_tensor(values, "values")
    check_ndim(values, "values", 1, "(N,)")
    if values.dtype == torch.bool or values.is_complex():
        raise TypeError(f"Expected `values` to hold real numbers, but got {values.dtype}.")
    check_finite(values, "values")
    _check_groups(groups, values, "values")
    check_one_of(method, "method", ("max", "mean", "topk_mean", "fraction_above", "sum"))
    k = check_positive_int(k, "k")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError(f"Expected `threshold` to be a number, but got {describe(threshold)}.")
    if not math.isfinite(threshold):
        raise ValueError(f"Expected `threshold` to be finite, but got {threshold!r}.")

    ids, inverse = torch.unique(groups, sorted=True, return_inverse=True)
    g = ids.numel()
    fdtype = values.dtype if values.is_floating_point() else torch.get_default_dtype()
    counts = torch.bincount(inverse, minlength=g)

    if method == "max":
        out = torch.zeros(g, dtype=values.dtype, device=values.device)
        return ids, out.scatter_reduce(0, inverse, values, reduce="amax", include_self=False)
    if method == "sum":
        out = torch.zeros(g, dtype=values.dtype, device=values.device)
        return ids, out.index_add(0, inverse, values)
    if method in ("mean", "fraction_above"):
        v = values.to(fdtype) if method == "mean" else (values > threshold).to(fdtype)
        total = torch.zeros(g, dtype=fdtype, device=values.device).index_add(0, inverse, v)
        return ids, total / counts.to(fdtype)
    # topk_mean: sort by value (descending), then stably by group, so each group's
    # values are contiguous and in decreasing order
    order = torch.sort(values, descending=True, stable=True).indices
    order = order[torch.sort(inverse[order], stable=True).indices]
    grp = inverse[order]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(values.numel(), device=values.device) - starts[grp]
    keep = rank < k
    total = torch.zeros(g, dtype=fdtype, device=values.device).index_add(
        0, grp[keep], values[order][keep].to(fdtype)
    )
    return ids, total / counts.clamp(max=k).to(fdtype)


def estimated_tumor_area(
    masks: torch.Tensor,
    groups: torch.Tensor,
    *,
    pixel_area: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Estimated tumor area per group: mask pixels summed over its patches.

    .. math::

        A_g = a_\mathrm{px} \sum_{i \in g} \sum_{x} M_i(x)

    Patches are assumed not to overlap; for overlapping (sliding-window)
    patches, stitch the masks first or the shared pixels count more than once.

    Args:
        masks: per-patch tumor masks, ``torch.bool`` ``(N, H, W)``.
        groups: integer group id of each patch, shape ``(N,)``.
        pixel_area: area of one mask pixel, e.g. in mm² (PCam patches come
            from Camelyon16 slides downsampled from 40× to 10×, so a pixel is
            about 1 µm wide; check your scanner's resolution).

    Returns:
        ``(group_ids, area)``: sorted distinct ids ``(G,)`` and float64 areas
        ``(G,)``.

    Raises:
        TypeError: on non-bool masks, non-integer groups or a non-number
            ``pixel_area``.
        ValueError: on shape mismatches or a ``pixel_area`` that is not a finite
            number > 0.

    Example:
        >>> masks = torch.zeros(3, 4, 4, dtype=torch.bool)
        >>> masks[0, :2, :2] = True
        >>> masks[2, :, :1] = True
        >>> estimated_tumor_area(masks, torch.tensor([5, 5, 9]), pixel_area=0.25)
        (tensor([5, 9]), tensor([1., 1.], dtype=torch.float64))
    """
    check_bool_mask(masks, "masks", "(N, H, W)")
    _check_groups(groups, masks, "masks")
    check_nonnegative(pixel_area, "pixel_area")
    if pixel_area == 0:
        raise ValueError(
            f"Expected `pixel_area` to be a finite number > 0, but got {pixel_area!r}. "
            "Hint: it is the area of one mask pixel; 0 would make every area 0."
        )
    per_patch = masks.sum(dim=(1, 2)).to(torch.float64)
    ids, total = aggregate(per_patch, groups, method="sum")
    return ids, total * float(pixel_area)
