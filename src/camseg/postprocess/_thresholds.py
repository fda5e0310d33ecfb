r"""Per-image thresholds of maps: Otsu, percentile, fixed, and the best one on a validation set.

Thresholds return thresholds, as in scikit-image: each function computes a
value per image, shape ``(B,)``, and the caller compares,
``masks = maps >= t[:, None, None]`` (the comparison used throughout camseg,
also by :func:`camseg.metrics.threshold_curve`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from camseg import _native
from camseg._checks import (
    check_bool_mask,
    check_in_range,
    check_maps,
    check_one_of,
    check_positive_int,
    check_same_shape,
    check_tensor,
    describe,
)
from camseg._curves import threshold_curve
from camseg.postprocess._common import check_range, map_range

__all__ = ["best_threshold", "threshold_fixed", "threshold_otsu", "threshold_percentile"]


# pixels per chunk of the torch histogram on the CPU (where the C kernel is not
# used): a chunk's working buffers stay in the CPU caches
_CPU_CHUNK_PIXELS = 1 << 19


def _edges(lo: torch.Tensor, hi: torch.Tensor, nbins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges ``(C, nbins + 1)`` as ``numpy.linspace`` computes them, and the spans ``(C,)``.

    ``numpy.histogram`` calls ``linspace(min, max, nbins + 1)`` in the dtype of
    the data: ``arange * step + min`` with ``step = (max - min) / nbins``, the
    last edge set to ``max``, all in the dtype of the data. Constant rows get
    a unit span (their threshold is their value, set by the caller).
    """
    constant = lo == hi
    span = torch.where(constant, torch.ones_like(hi), hi - lo)
    step = (span / nbins)[:, None]
    edges = torch.arange(nbins + 1, device=lo.device, dtype=lo.dtype)[None, :] * step + lo[:, None]
    edges[:, -1] = torch.where(constant, lo + span, hi)
    return edges, span


def _otsu_from_counts(counts: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Otsu thresholds of rows of histogram ``counts`` ``(C, nbins)`` over ``edges``.

    Bin centres are the candidates, the between-class variance is evaluated in
    float64 and its first maximum wins, as ``skimage.filters.threshold_otsu``.
    """
    counts = counts.to(torch.float64)
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight1 = counts.cumsum(1)
    weight2 = counts.flip(1).cumsum(1).flip(1)
    moment = counts * centres.to(torch.float64)
    mean1 = moment.cumsum(1) / weight1
    mean2 = moment.flip(1).cumsum(1).flip(1) / weight2
    variance = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    best = torch.argmax(variance, dim=1, keepdim=True)
    return torch.gather(centres, 1, best).squeeze(1)


def _counts_exact(
    x: torch.Tensor, edges: torch.Tensor, span: torch.Tensor, nbins: int
) -> torch.Tensor:
    """``numpy.histogram`` counts ``(C, nbins)`` of the rows of ``x`` ``(C, N)``, step by step.

    First guess ``((x - lo) / span) * nbins`` truncated, then corrected by one
    bin against the edges, as numpy does (the last bin closed). The edge
    comparisons write float 0/1 (not bool), which is faster on the CPU.
    """
    c = x.shape[0]
    lo_ = edges[:, :1]
    step = (span / nbins)[:, None]
    idx = torch.sub(x, lo_)
    idx.div_(span[:, None]).mul_(nbins).floor_().clamp_max_(nbins - 1)
    buf = torch.empty_like(x)
    flag = torch.empty_like(x)
    # decrement where x lies below the lower edge of its guessed bin
    torch.mul(idx, step, out=buf).add_(lo_)
    idx.sub_(torch.lt(x, buf, out=flag))
    # increment where x reaches the upper edge (the last bin is closed)
    torch.add(idx, 1.0, out=buf).mul_(step).add_(lo_)
    idx.add_(torch.ge(x, buf, out=flag)).clamp_max_(nbins - 1)
    itype = torch.int32 if c * nbins < 2**31 else torch.int64
    flat_idx = idx.to(itype)
    flat_idx.add_(torch.arange(c, device=x.device, dtype=itype)[:, None] * nbins)
    return torch.bincount(flat_idx.reshape(-1), minlength=c * nbins).reshape(c, nbins)


def otsu_from_range(
    flat: torch.Tensor, rng: torch.Tensor, nbins: int, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Otsu thresholds of the rows ``rows`` (all if None) of ``flat`` ``(B, N)``.

    ``rng`` holds the per-row ``(min, max)``. The step-by-step torch
    histogram (``numpy.histogram``'s counts), on the CPU in chunks of about
    half a million pixels so that every intermediate buffer stays in cache;
    float16/32 CPU maps normally take the C kernel instead (see
    :func:`threshold_otsu`). Returns float32
    (float64 for float64 input) thresholds, one per selected row.
    """
    work = torch.float64 if flat.dtype == torch.float64 else torch.float32
    if rows is None:
        rows = torch.arange(flat.shape[0], device=flat.device)
    r = rng.index_select(0, rows).to(work)
    lo, hi = r[:, 0], r[:, 1]
    n_rows = rows.numel()
    edges, span = _edges(lo, hi, nbins)
    per = n_rows if flat.device.type != "cpu" else max(1, _CPU_CHUNK_PIXELS // flat.shape[1])
    counts = torch.empty(n_rows, nbins, dtype=torch.int64, device=flat.device)
    for start in range(0, n_rows, per):
        sl = slice(start, start + per)
        x = flat.index_select(0, rows[sl]).to(work)
        counts[sl] = _counts_exact(x, edges[sl], span[sl], nbins)
    thr = _otsu_from_counts(counts, edges)
    return torch.where(lo == hi, lo, thr)


def threshold_otsu(maps: torch.Tensor, *, nbins: int = 256) -> torch.Tensor:
    r"""Otsu's threshold of every map, from one batched histogram.

    Otsu's method picks the threshold that maximises the between-class variance
    of the two classes it separates. With a histogram of ``nbins`` equal bins
    over ``[min, max]`` of each map, bin centres :math:`c_k` and counts
    :math:`n_k`, the candidate after bin :math:`k` splits the pixels into
    weights :math:`w_0(k) = \sum_{i \le k} n_i`, :math:`w_1(k) = \sum_{i > k} n_i`
    with means :math:`\mu_0(k), \mu_1(k)`, and

    .. math::

        k^\star = \operatorname*{arg\,max}_k \; w_0(k)\, w_1(k)\,
        \bigl(\mu_0(k) - \mu_1(k)\bigr)^2, \qquad t = c_{k^\star}.

    The result equals ``skimage.filters.threshold_otsu`` applied to each map
    (same bin edges, same bin-centre candidates, first maximum; a constant map
    returns its value), except where two candidates' variances tie to within
    float32 rounding: camseg evaluates the variance in float64, scikit-image in
    the image's float32, so such near-ties (about 1 map in 1,500 on random
    maps) may resolve to the neighbouring candidate. The histograms of all
    images come from one call: on the CPU camseg's C kernel (one pass per
    image, images split across :func:`torch.get_num_threads` threads), on
    other devices one :func:`torch.bincount` for the batch.

    Args:
        maps: float maps, shape ``(B, H, W)``, any finite range.
        nbins: number of histogram bins (``>= 2``).

    Returns:
        Thresholds of shape ``(B,)`` in the dtype of ``maps``, on its device.
        Compare with ``maps >= t[:, None, None]``.

    Raises:
        TypeError: if ``maps`` is not a floating tensor or ``nbins`` not an int.
        ValueError: if ``maps`` is not ``(B, H, W)``, has no pixels, holds NaN or
            infinity, or ``nbins < 2``.

    Example:
        >>> maps = torch.tensor([[[0.1, 0.2, 0.8], [0.9, 0.1, 0.85]]])
        >>> t = threshold_otsu(maps)
        >>> (maps >= t[:, None, None]).int()
        tensor([[[0, 0, 1],
                 [1, 0, 1]]], dtype=torch.int32)

    References:
        N. Otsu, "A threshold selection method from gray-level histograms",
        IEEE Trans. Systems, Man, and Cybernetics 9(1), 1979.
    """
    t = check_maps(maps, finite=False, nonempty=True)
    check_positive_int(nbins, "nbins", minimum=2)
    if t.shape[0] == 0:
        return t.new_zeros(0)
    fused = _native.otsu(t, nbins=nbins)  # one C pass per image: range, histogram, threshold
    if fused is not None:
        rng, thr = fused
        check_range(t, rng)
        return thr
    rng = map_range(t)
    return otsu_from_range(t.reshape(t.shape[0], -1), rng, nbins).to(t.dtype)


def threshold_percentile(maps: torch.Tensor, *, q: float) -> torch.Tensor:
    r"""The ``q``-th percentile of every map.

    Linear interpolation between order statistics, as :func:`numpy.percentile`
    with its default ``method="linear"``: with the sorted values
    :math:`v_0 \le \dots \le v_{N-1}` and :math:`h = (N - 1)\, q / 100`,

    .. math::

        t = v_{\lfloor h \rfloor} + (h - \lfloor h \rfloor)\,
        (v_{\lceil h \rceil} - v_{\lfloor h \rfloor}).

    ``maps >= t`` then keeps about the top ``100 - q`` percent of pixels
    (more where values tie).

    Args:
        maps: float maps, shape ``(B, H, W)``.
        q: percentile in ``[0, 100]``.

    Returns:
        Thresholds of shape ``(B,)`` in the dtype of ``maps``.

    Raises:
        TypeError: if ``maps`` is not a floating tensor or ``q`` not a number.
        ValueError: if ``maps`` is not ``(B, H, W)`` or holds NaN, or ``q`` lies
            outside ``[0, 100]``.

    Example:
        >>> maps = torch.arange(5.0).reshape(1, 1, 5)
        >>> threshold_percentile(maps, q=50)
        tensor([2.])
        >>> threshold_percentile(maps, q=90)
        tensor([3.6000])
    """
    map_range(maps)
    check_in_range(q, "q", 0.0, 100.0)
    if maps.shape[0] == 0:
        return maps.new_zeros(0)
    flat = maps.reshape(maps.shape[0], -1)
    n = flat.shape[1]
    values = torch.sort(flat, dim=1).values
    h = (n - 1) * float(q) / 100.0
    below = min(int(h), n - 1)
    above = min(below + 1, n - 1)
    frac = h - below
    v0 = values[:, below]
    v1 = values[:, above]
    diff = v1 - v0
    # the two-sided form numpy uses, exact at both ends
    return v0 + diff * frac if frac < 0.5 else v1 - diff * (1.0 - frac)


def threshold_fixed(maps: torch.Tensor, *, value: float) -> torch.Tensor:
    """The same threshold for every map, as a ``(B,)`` tensor.

    A convenience that makes fixed thresholds interchangeable with the
    computed ones (``threshold=`` of :func:`cams_to_masks` takes all of them).

    Args:
        maps: float maps, shape ``(B, H, W)``; only their batch size, dtype and
            device are used (and they are checked for NaN).
        value: the threshold, a finite number.

    Returns:
        A tensor of shape ``(B,)`` filled with ``value``, in the dtype of ``maps``.

    Raises:
        TypeError: if ``maps`` is not a floating tensor or ``value`` not a number.
        ValueError: if ``maps`` is not ``(B, H, W)`` or holds NaN, or ``value`` is
            not finite.

    Example:
        >>> threshold_fixed(torch.zeros(3, 4, 4), value=0.5)
        tensor([0.5000, 0.5000, 0.5000])
    """
    map_range(maps)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `value` to be a number, but got {describe(value)}.")
    if not math.isfinite(value):
        raise ValueError(f"Expected `value` to be a finite number, but got {value!r}.")
    return torch.full((maps.shape[0],), float(value), dtype=maps.dtype, device=maps.device)


def best_threshold(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    metric: Literal["iou", "dice"] = "iou",
    thresholds: int | torch.Tensor = 101,
    average: Literal["micro", "macro"] = "micro",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The single threshold that scores best on a validation set, from one batched sweep.

    Every candidate :math:`t_j` is scored by the IoU or Dice of
    ``maps >= t_j`` against ``masks``, all candidates at once
    (:func:`camseg.metrics.threshold_curve`: one bucketing of the pixels, one
    histogram, a cumulative sum; no loop over candidates). ``"micro"`` adds
    the confusion counts over the whole set before the ratio (the dataset-level
    score); ``"macro"`` averages per-image scores, an image with both masks
    empty scoring 1. Ties go to the lowest candidate.

    Args:
        maps: normalised float maps in ``[0, 1]``, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        metric: ``"iou"`` or ``"dice"``.
        thresholds: an int ``n >= 2`` for ``n`` evenly spaced candidates in
            ``[0, 1]``, or a 1-D float tensor of candidates in ``[0, 1]``.
        average: ``"micro"`` or ``"macro"``, see above.

    Returns:
        ``(threshold, score)``: two scalar tensors, the best candidate (dtype of
        ``maps``) and its score (float64).

    Raises:
        TypeError: if ``maps`` is not floating, ``masks`` not bool, or
            ``thresholds`` neither an int nor a tensor.
        ValueError: on shape mismatches, NaN maps, maps or candidates outside
            ``[0, 1]``, or an unknown ``metric`` / ``average``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.7, 0.4, 0.1]]])
        >>> masks = torch.tensor([[[True, True, False, False]]])
        >>> t, score = best_threshold(maps, masks, thresholds=11)
        >>> float(t), float(score)
        (0.5, 1.0)
    """
    map_range(maps, unit=True)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    check_one_of(metric, "metric", ("iou", "dice"))
    check_one_of(average, "average", ("micro", "macro"))
    if isinstance(thresholds, bool) or not isinstance(thresholds, (int, torch.Tensor)):
        raise TypeError(
            "Expected `thresholds` to be an int or a 1-D tensor of thresholds, "
            f"but got {describe(thresholds)}."
        )
    if isinstance(thresholds, int):
        n = check_positive_int(thresholds, "thresholds", minimum=2)
        cand = torch.linspace(0.0, 1.0, n, dtype=maps.dtype, device=maps.device)
    else:
        check_tensor(thresholds, "thresholds")
        if thresholds.ndim != 1 or thresholds.numel() == 0:
            raise ValueError(
                "Expected `thresholds` to be a non-empty tensor of shape (T,), "
                f"but got shape {tuple(thresholds.shape)}."
            )
        if not thresholds.is_floating_point():
            raise TypeError(
                f"Expected `thresholds` to have a floating-point dtype, but got {thresholds.dtype}."
            )
        check_in_range(thresholds, "thresholds", 0.0, 1.0)
        cand = thresholds.to(device=maps.device, dtype=maps.dtype).sort().values
    if maps.shape[0] == 0:
        raise ValueError("Expected `maps` to hold at least one image, but got an empty batch.")
    curve = threshold_curve(maps, masks, cand, metrics=(metric,), average=average)[metric]
    scores = torch.nan_to_num(curve, nan=-1.0)
    best = int(torch.argmax(scores))
    return cand[best], curve[best]
