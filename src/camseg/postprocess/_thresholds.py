r"""Per-image thresholds of maps: Otsu, percentile, fixed, and the best one on a validation set.

Thresholds return thresholds, as in scikit-image: each function computes a
value per image, shape ``(B,)``, and the caller compares,
``masks = maps >= t[:, None, None]`` (the comparison used throughout camseg,
also by :func:`camseg.metrics.threshold_curve`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from camseg._checks import (
    check_bool_mask,
    check_in_range,
    check_one_of,
    check_positive_int,
    check_same_shape,
    check_tensor,
    describe,
)
from camseg.metrics import threshold_curve
from camseg.postprocess._common import check_maps

__all__ = ["best_threshold", "threshold_fixed", "threshold_otsu", "threshold_percentile"]


# pixels per chunk of the exact torch histogram (other devices' fallback on the CPU):
# a chunk's working buffers stay in the CPU caches
_CPU_CHUNK_PIXELS = 1 << 19
# the fast CPU histogram: positions are fixed point with 2**_SUB_BITS steps per bin;
# pixels within 2**(_NEAR_BITS - 1) steps of a bin edge are re-binned exactly;
# positions are int32 (so nbins + 1 < _FAST_BINS); a chunk holds about _FAST_PIXELS pixels
_SUB_BITS = 16
_NEAR_BITS = 8
_FAST_BINS = 1 << 15
_FAST_PIXELS = 1 << 17


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


def _exact_bins(
    v: np.ndarray, row: np.ndarray, edges: np.ndarray, lo: np.ndarray, span: np.ndarray, nbins: int
) -> np.ndarray:
    """``numpy.histogram``'s bin of each value ``v`` of row ``row`` (a few values, NumPy)."""
    first = lo[row]
    guess = ((v - first) / span[row]) * np.float32(nbins)
    g = guess.astype(np.intp)
    g[g == nbins] -= 1
    g -= v < edges[row, g]
    g += (v >= edges[row, g + 1]) & (g != nbins - 1)
    return g


def _fast_params(
    edges: np.ndarray, span: np.ndarray, nbins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row ``scale``, ``bias`` (float32) and ``ok`` of :func:`_counts_fast`.

    ``ok`` says whether the float32 rounding of the positions fits the window
    of re-binned pixels: 1.5 ulp of the largest magnitude in
    ``x * scale + bias`` plus numpy's edge error (an ulp of the largest
    value), in steps, must stay below a quarter of the window.
    """
    lo = edges[:, 0].astype(np.float64)
    big = np.maximum(np.abs(lo), np.abs(edges[:, -1].astype(np.float64)))
    one = float(1 << _SUB_BITS)
    half_window = float(1 << (_NEAR_BITS - 1))
    width = nbins + 1
    scale = nbins * one / span.astype(np.float64)
    bias = half_window - lo * scale
    magnitude = np.maximum(big * scale, width * one).astype(np.float32)
    err = (
        1.5 * np.spacing(magnitude).astype(np.float64)
        + np.spacing(big.astype(np.float32)).astype(np.float64) * scale
    )
    return scale.astype(np.float32), bias.astype(np.float32), err < half_window / 4


def _counts_fast(
    x: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    edges: np.ndarray,
    span: np.ndarray,
    nbins: int,
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """``numpy.histogram`` counts ``(C, nbins)`` of the float32 rows ``x`` ``(C, N)``.

    One fixed-point position per pixel, ``q = floor(x * scale + bias)`` with
    ``2**16`` steps per bin (:func:`_fast_params`), so ``q >> 16`` is the bin;
    with the row's offset added, one histogram holds the chunk: a few cheap
    passes and one :func:`numpy.bincount` instead of numpy's ~15 passes
    through :func:`numpy.histogram` per image. Positions carry a
    rounding error of a few steps, and numpy's own float32 edges deviate from
    the ideal ones by an ulp: only pixels whose position lies within
    ``2**7`` steps (0.2 % of a bin) of an edge can land in another bin, and
    those (found with two more passes, a few per thousand pixels) are
    re-binned exactly as numpy does and the counts fixed.
    """
    c, n = x.shape
    width = nbins + 1
    f, p, near, q = (b[: c * n].reshape(c, n) for b in bufs)
    np.multiply(x, scale[:, None], out=f)
    np.add(f, bias[:, None], out=f)
    np.copyto(p, f, casting="unsafe")  # truncation; positions are positive
    # near an edge: the low 16 bits (the position inside the bin) below 2**8
    low = f.view(np.int32)
    np.bitwise_and(p, (1 << _SUB_BITS) - (1 << _NEAR_BITS), out=low)
    np.logical_not(low, out=near)
    # the row's offset in the chunk's histogram, then the bin as intp for bincount
    offsets = np.arange(0, c * width, width, dtype=np.int32) << _SUB_BITS
    np.add(p, offsets[:, None], out=p)
    np.right_shift(p, _SUB_BITS, out=q)
    # NumPy's bincount: torch's runs in OpenMP threads that stall on a busy machine
    counts = np.bincount(q.reshape(-1), minlength=c * width)
    pos = np.flatnonzero(near)
    if pos.size:
        row = pos // n
        guess = q.reshape(-1)[pos]
        exact = _exact_bins(x.reshape(-1)[pos], row, edges, edges[:, 0], span, nbins)
        np.subtract.at(counts, guess, 1)
        np.add.at(counts, exact + row * width, 1)
    return counts.reshape(c, width)[:, :nbins]


def _otsu_from_counts_numpy(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`_otsu_from_counts` in NumPy, for the CPU (the same operations, in order).

    The upper class weights are ``total - lower``, exact on integer counts.
    """
    c = counts.astype(np.float64)
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    weight1 = np.cumsum(c, axis=1)[:, :-1]
    weight2 = np.sum(c, axis=1, keepdims=True) - weight1
    moment = c * centres
    # a constant row (replaced by the caller) divides 0 by 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mean1 = np.cumsum(moment[:, :-1], axis=1) / weight1
        mean2 = np.cumsum(moment[:, :0:-1], axis=1)[:, ::-1] / weight2
        variance = weight1 * weight2 * (mean1 - mean2) ** 2
    best = np.argmax(variance, axis=1)
    return centres[np.arange(c.shape[0]), best]


def _fast_otsu_ok(flat: torch.Tensor, nbins: int) -> bool:
    """Whether the fast NumPy histogram (:func:`_counts_fast`) handles these maps."""
    return (
        flat.device.type == "cpu"
        and flat.dtype in (torch.float16, torch.float32)
        and nbins + 1 < _FAST_BINS
    )


def _otsu_fast(
    flat: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    rows: torch.Tensor,
    nbins: int,
    masks: np.ndarray | None = None,
) -> torch.Tensor:
    """Otsu thresholds (float32) of rows ``rows`` of CPU float16/32 maps ``flat`` ``(B, N)``.

    Chunks of rows are gathered once, binned by :func:`_counts_fast` (or the
    step-by-step histogram where it declines), and thresholded at once. With
    ``masks`` (a bool array ``(B, N)``) the chunk, still in cache, is also
    compared with its thresholds: ``masks[rows] = x >= t``, all False for
    constant rows; other rows of ``masks`` are left alone.
    """
    n_rows = rows.numel()
    npix = max(1, flat.shape[1])
    lo_np = lo.detach().numpy()
    hi_np = hi.detach().numpy()
    constant = lo_np == hi_np
    # the edges of _edges, in NumPy (same float32 operations)
    span_np = np.where(constant, np.float32(1.0), hi_np - lo_np)
    step = span_np / np.float32(nbins)
    edges_np = np.arange(nbins + 1, dtype=np.float32)[None, :] * step[:, None] + lo_np[:, None]
    edges_np[:, -1] = np.where(constant, lo_np + span_np, hi_np)
    # rows x (nbins + 1) bins of a chunk, in fixed point, must fit in int32
    per = max(1, min(_FAST_PIXELS // npix, (2**31 - 1) // ((nbins + 1) << _SUB_BITS)))
    size = min(per, n_rows) * npix
    bufs = (
        np.empty(size, dtype=np.float32),
        np.empty(size, dtype=np.int32),
        np.empty(size, dtype=bool),
        np.empty(size, dtype=np.intp),
    )
    flat_np = flat.detach().numpy()
    rows_np = rows.numpy()
    scale, bias, ok = _fast_params(edges_np, span_np, nbins)
    xbuf = np.empty((min(per, n_rows), npix), dtype=flat_np.dtype)
    cmp = np.empty(xbuf.shape, dtype=bool)
    out = np.empty(n_rows, dtype=np.float32)
    for start in range(0, n_rows, per):
        stop = min(start + per, n_rows)
        sl = slice(start, stop)
        # gathered into a reused buffer: fresh large arrays cost page faults
        x = np.take(flat_np, rows_np[sl], axis=0, out=xbuf[: stop - start])
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if ok[sl].all():
            counts = _counts_fast(x, scale[sl], bias[sl], edges_np[sl], span_np[sl], nbins, bufs)
        else:
            counts = _counts_exact(
                torch.from_numpy(x),
                torch.from_numpy(edges_np[sl]),
                torch.from_numpy(span_np[sl]),
                nbins,
            ).numpy()
        t = _otsu_from_counts_numpy(counts, edges_np[start:stop])
        const = constant[start:stop]
        out[start:stop] = np.where(const, lo_np[start:stop], t)
        if masks is not None:
            got = np.greater_equal(x, np.where(const, np.inf, t)[:, None], out=cmp[: stop - start])
            masks[rows_np[sl]] = got
    return torch.from_numpy(out)


def _otsu_from_range(
    flat: torch.Tensor, rng: torch.Tensor, nbins: int, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Otsu thresholds of the rows ``rows`` (all if None) of ``flat`` ``(B, N)``.

    ``rng`` holds the per-row ``(min, max)``. float16/32 maps on the CPU take
    the fast fixed-point histogram (:func:`_otsu_fast`); other dtypes and
    devices the step-by-step one, on the CPU in chunks of about half a million
    pixels so that every intermediate buffer stays in cache. Returns float32
    (float64 for float64 input) thresholds, one per selected row.
    """
    work = torch.float64 if flat.dtype == torch.float64 else torch.float32
    if rows is None:
        rows = torch.arange(flat.shape[0], device=flat.device)
    r = rng.index_select(0, rows).to(work)
    lo, hi = r[:, 0], r[:, 1]
    if _fast_otsu_ok(flat, nbins):
        return _otsu_fast(flat, lo, hi, rows, nbins)
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
    maps) may resolve to the neighbouring candidate. All images share one
    :func:`torch.bincount` call: no loop over images.

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
    rng = check_maps(maps)
    check_positive_int(nbins, "nbins", minimum=2)
    if maps.shape[0] == 0:
        return maps.new_zeros(0)
    flat = maps.reshape(maps.shape[0], -1)
    return _otsu_from_range(flat, rng, nbins).to(maps.dtype)


def threshold_percentile(maps: torch.Tensor, q: float) -> torch.Tensor:
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
        >>> threshold_percentile(maps, 50)
        tensor([2.])
        >>> threshold_percentile(maps, 90)
        tensor([3.6000])
    """
    check_maps(maps)
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


def threshold_fixed(maps: torch.Tensor, value: float) -> torch.Tensor:
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
        >>> threshold_fixed(torch.zeros(3, 4, 4), 0.5)
        tensor([0.5000, 0.5000, 0.5000])
    """
    check_maps(maps)
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
    candidates: int | torch.Tensor = 101,
    reduction: Literal["micro", "macro"] = "micro",
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
        candidates: an int ``n >= 2`` for ``n`` evenly spaced candidates in
            ``[0, 1]``, or a 1-D float tensor of candidates in ``[0, 1]``.
        reduction: ``"micro"`` or ``"macro"``, see above.

    Returns:
        ``(threshold, score)``: two scalar tensors, the best candidate (dtype of
        ``maps``) and its score (float64).

    Raises:
        TypeError: if ``maps`` is not floating, ``masks`` not bool, or
            ``candidates`` neither an int nor a tensor.
        ValueError: on shape mismatches, NaN maps, maps or candidates outside
            ``[0, 1]``, or an unknown ``metric`` / ``reduction``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.7, 0.4, 0.1]]])
        >>> masks = torch.tensor([[[True, True, False, False]]])
        >>> t, score = best_threshold(maps, masks, candidates=11)
        >>> float(t), float(score)
        (0.5, 1.0)
    """
    check_maps(maps, unit=True)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    check_one_of(metric, "metric", ("iou", "dice"))
    check_one_of(reduction, "reduction", ("micro", "macro"))
    if isinstance(candidates, bool) or not isinstance(candidates, (int, torch.Tensor)):
        raise TypeError(
            "Expected `candidates` to be an int or a 1-D tensor of thresholds, "
            f"but got {describe(candidates)}."
        )
    if isinstance(candidates, int):
        n = check_positive_int(candidates, "candidates", minimum=2)
        cand = torch.linspace(0.0, 1.0, n, dtype=maps.dtype, device=maps.device)
    else:
        check_tensor(candidates, "candidates")
        if candidates.ndim != 1 or candidates.numel() == 0:
            raise ValueError(
                "Expected `candidates` to be a non-empty tensor of shape (T,), "
                f"but got shape {tuple(candidates.shape)}."
            )
        if not candidates.is_floating_point():
            raise TypeError(
                f"Expected `candidates` to have a floating-point dtype, but got {candidates.dtype}."
            )
        check_in_range(candidates, "candidates", 0.0, 1.0)
        cand = candidates.to(device=maps.device, dtype=maps.dtype).sort().values
    if maps.shape[0] == 0:
        raise ValueError("Expected `maps` to hold at least one image, but got an empty batch.")
    curve = threshold_curve(maps, masks, cand, metrics=(metric,), reduction=reduction)[metric]
    scores = torch.nan_to_num(curve, nan=-1.0)
    best = int(torch.argmax(scores))
    return cand[best], curve[best]
