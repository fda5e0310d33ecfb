"""One call from normalized maps to masks: threshold, gate, tissue, small objects, holes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from camseg import _native
from camseg._checks import (
    check_in_range,
    check_maps,
    check_masks,
    check_ndim,
    check_positive_int,
    check_probability,
    check_same_batch,
    describe,
)
from camseg.postprocess._common import check_range, map_range
from camseg.postprocess._gate import check_probs
from camseg.postprocess._morphology import fill_holes as _fill_holes
from camseg.postprocess._morphology import small_objects_removed
from camseg.postprocess._thresholds import otsu_from_range

__all__ = ["cams_to_masks"]


def _compare(maps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``maps >= t[:, None, None]``; on the CPU through NumPy views (no copies).

    torch's CPU kernels that write bool outputs are several times slower than
    NumPy's comparison; the result is the same tensor either way.
    """
    if maps.device.type == "cpu" and maps.dtype in (torch.float16, torch.float32, torch.float64):
        arr = maps.detach().numpy() >= t.detach().numpy()[:, None, None]
        return torch.from_numpy(arr)
    return maps >= t[:, None, None]


def _and_into(masks: torch.Tensor, other: torch.Tensor) -> None:
    """``masks &= other`` in place; on the CPU through NumPy views (as :func:`_compare`)."""
    if masks.device.type == "cpu":
        np.logical_and(masks.numpy(), other.numpy(), out=masks.numpy())
    else:
        masks &= other


def _thresholds(
    maps: torch.Tensor,
    rng: torch.Tensor,
    threshold: Literal["otsu"] | float | torch.Tensor,
    keep: torch.Tensor | None,
) -> torch.Tensor:
    """Per-image thresholds ``(B,)`` in the maps' dtype; ``+inf`` where the mask must be empty.

    ``keep`` (bool ``(B,)`` or None) marks the images that pass the gate; Otsu
    thresholds are computed for those only.
    """
    b = maps.shape[0]
    inf = torch.full((b,), float("inf"), dtype=maps.dtype, device=maps.device)
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(
                "Expected `threshold` to be 'otsu', a number in [0, 1] or a tensor of shape "
                f"(B,), but got {describe(threshold)}."
            )
        rows = None if keep is None else torch.nonzero(keep).squeeze(1)
        t_rows = otsu_from_range(maps.reshape(b, -1), rng, 256, rows).to(maps.dtype)
        t = t_rows if rows is None else inf.index_copy(0, rows, t_rows)
        # a constant map has nothing to separate: Otsu returns its value, and
        # `maps >= t` would mark every pixel; such maps give an empty mask
        return torch.where(rng[:, 0] == rng[:, 1], inf, t)
    if isinstance(threshold, torch.Tensor):
        check_ndim(threshold, "threshold", 1, "(B,)")
        check_same_batch(threshold, "threshold", maps, "maps")
        if not threshold.is_floating_point():
            raise TypeError(
                f"Expected `threshold` to have a floating-point dtype, but got {threshold.dtype}."
            )
        check_in_range(threshold, "threshold", 0.0, 1.0)
        t = threshold.to(device=maps.device, dtype=maps.dtype)
    elif isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        check_in_range(threshold, "threshold", 0.0, 1.0)
        t = torch.full((b,), float(threshold), dtype=maps.dtype, device=maps.device)
    else:
        raise TypeError(
            "Expected `threshold` to be 'otsu', a number in [0, 1] or a tensor of shape (B,), "
            f"but got {describe(threshold)}."
        )
    return t if keep is None else torch.where(keep, t, inf)


def cams_to_masks(
    maps: torch.Tensor,
    *,
    threshold: Literal["otsu"] | float | torch.Tensor = "otsu",
    probs: torch.Tensor | None = None,
    min_prob: float = 0.5,
    tissue: torch.Tensor | None = None,
    min_size: int = 0,
    fill_holes: bool = False,
) -> torch.Tensor:
    """Turn normalised class-activation maps into tumour masks in one call.

    The steps, in order, each optional but the first:

    1. **threshold**: ``maps >= t[:, None, None]`` with ``t`` per image: Otsu's
       threshold (:func:`threshold_otsu`; a constant map gives an empty mask),
       a fixed number, or a ``(B,)`` tensor (e.g. from :func:`best_threshold` or
       :func:`threshold_percentile`);
    2. **gate** (``probs`` given): images with ``probs < min_prob`` get an empty
       mask, as after :func:`gate`;
    3. **tissue** (``tissue`` given): pixels outside the tissue mask (e.g. from
       :func:`tissue_mask`) are dropped;
    4. **small objects** (``min_size > 1``): components smaller than
       ``min_size`` pixels (4-connected) are removed, as
       :func:`remove_small_objects`;
    5. **holes** (``fill_holes=True``): holes are filled, as :func:`fill_holes`.

    Steps 1–3 run on the maps' device (Otsu only for the images that pass the
    gate); steps 4–5 find components on the CPU for the whole batch at once
    and come back. On the CPU, float16/32 maps with Otsu thresholds take
    camseg's C kernel for steps 1–4: one pass per image while it is in cache,
    images split across :func:`torch.get_num_threads` threads. See the
    post-processing page of the documentation for the benchmark against the
    per-image scikit-image loop.

    Args:
        maps: normalised float maps in ``[0, 1]``, shape ``(B, H, W)`` (e.g.
            ``camseg.GradCAM(...)(x)`` with the default ``normalize="minmax"``).
        threshold: ``"otsu"``, a number in ``[0, 1]``, or a float tensor
            ``(B,)`` of per-image thresholds in ``[0, 1]``.
        probs: the classifier's tumour probability per image, ``(B,)``, or None
            to skip gating.
        min_prob: smallest probability that keeps a mask.
        tissue: ``torch.bool`` tissue mask ``(B, H, W)``, or None.
        min_size: smallest component to keep, in pixels (``0`` or ``1``: keep all).
        fill_holes: fill holes inside the components.

    Returns:
        ``torch.bool`` masks of shape ``(B, H, W)`` on the maps' device.

    Raises:
        TypeError: if ``maps`` is not floating, ``tissue`` not bool, or
            ``threshold``, ``min_size`` or ``fill_holes`` has the wrong type.
        ValueError: if ``maps`` is not ``(B, H, W)``, holds NaN or values outside
            ``[0, 1]``; if a threshold lies outside ``[0, 1]``; if ``probs``,
            ``threshold`` or ``tissue`` do not match the maps' batch or shape.

    Example:
        >>> maps = torch.zeros(2, 6, 6)
        >>> maps[:, 1:4, 1:4] = 0.9  # a 3x3 blob in both maps
        >>> maps[:, 5, 5] = 0.8  # and a one-pixel speck
        >>> masks = cams_to_masks(maps, probs=torch.tensor([0.9, 0.1]), min_size=2)
        >>> masks.sum(dim=(1, 2))
        tensor([9, 0])
    """
    check_maps(maps, finite=False, nonempty=True)
    check_probability(min_prob, "min_prob")
    check_positive_int(min_size, "min_size", minimum=0)
    if not isinstance(fill_holes, bool):
        raise TypeError(f"Expected `fill_holes` to be a bool, but got {describe(fill_holes)}.")
    p = None if probs is None else check_probs(probs, maps, "maps")
    tis = None if tissue is None else check_masks(tissue, "tissue", like=maps, like_name="maps")
    if maps.shape[0] == 0:
        return torch.zeros(maps.shape, dtype=torch.bool, device=maps.device)

    # 1-2. threshold and gate: per-image thresholds, +inf where the gate empties the mask
    # (no pass over the gated maps). For Otsu, one C pass per image where the kernels
    # apply: range, histogram, threshold, comparison and, without tissue, step 4 too.
    keep = None if p is None else p.to(maps.device) >= min_prob
    fused = None
    if isinstance(threshold, str) and threshold == "otsu":
        fused = _native.otsu_masks(maps, keep=keep, min_size=min_size if tis is None else 0)
    if fused is not None:
        rng, masks = fused
        check_range(maps, rng, unit=True)
        active = None  # all images (the gated ones came back empty)
    else:
        rng = map_range(maps, unit=True)
        t = _thresholds(maps, rng, threshold, keep)
        masks = _compare(maps, t)
        active = torch.isfinite(t)  # gated or constant maps have an empty mask
    # 3. tissue
    if tis is not None:
        _and_into(masks, tis.to(masks.device))
    # 4. small objects (unless the C pass removed them), on the images that can have any
    if min_size > 1 and not (fused is not None and tis is None):
        if active is None or bool(active.all()):
            small_objects_removed(masks, min_size, 1, inplace=True)
        elif bool(active.any()):
            masks[active] = small_objects_removed(masks[active], min_size, 1, inplace=True)
    # 5. holes
    if fill_holes:
        masks = _fill_holes(masks)
    return masks
