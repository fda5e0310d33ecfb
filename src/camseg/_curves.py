r"""The threshold-curve engine shared by :mod:`camseg.postprocess` and :mod:`camseg.metrics`.

Private: confusion counts of ``maps >= t`` against true masks for many
thresholds ``t`` in one pass over the pixels, the ratio metrics made from
counts, and their reductions over a batch (``average=``) with an explicit value
where a denominator is 0 (``zero_division=``). It sits below both public
packages, so that :func:`camseg.postprocess.best_threshold` does not import
:mod:`camseg.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_one_of,
    check_positive_int,
    check_same_shape,
    check_tensor,
    describe,
)

__all__ = [
    "AVERAGES",
    "DEFAULT_ZERO_DIVISION",
    "METRIC_NAMES",
    "Average",
    "MetricName",
    "as_thresholds",
    "check_zero_division",
    "curve_counts",
    "reduce_counts",
    "threshold_curve",
]

Average = Literal["micro", "macro", "none"]
MetricName = Literal[
    "iou", "dice", "precision", "recall", "specificity", "fall_out", "pixel_accuracy"
]

#: The reductions over a batch of per-image counts.
AVERAGES: tuple[str, ...] = ("micro", "macro", "none")

#: Names of the ratio metrics made from confusion counts.
METRIC_NAMES: tuple[str, ...] = (
    "iou",
    "dice",
    "precision",
    "recall",
    "specificity",
    "fall_out",
    "pixel_accuracy",
)

#: Value where a metric's denominator is 0 by default: the metric's best value.
DEFAULT_ZERO_DIVISION: dict[str, float] = {
    "iou": 1.0,
    "dice": 1.0,
    "precision": 1.0,
    "recall": 1.0,
    "specificity": 1.0,
    "fall_out": 0.0,
    "pixel_accuracy": 1.0,
}

NAN_HINT = "Hint: NaN maps come from a 0/0 normalization of a flat map."


# --------------------------------------------------------------------------- ratios of counts


def num_den(counts: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator and denominator of ``name`` from counts ``(..., 4)`` (float64)."""
    c = counts.to(torch.float64)
    tp, fp, fn, tn = c.unbind(-1)
    if name == "iou":
        return tp, tp + fp + fn
    if name == "dice":
        return 2 * tp, 2 * tp + fp + fn
    if name == "precision":
        return tp, tp + fp
    if name == "recall":
        return tp, tp + fn
    if name == "specificity":
        return tn, tn + fp
    if name == "fall_out":
        return fp, fp + tn
    return tp + tn, tp + fp + fn + tn  # pixel_accuracy


def check_zero_division(zero_division: object) -> float:
    """Return ``zero_division`` as a float; raise ``TypeError`` unless it is a number."""
    if not isinstance(zero_division, (int, float)) or isinstance(zero_division, bool):
        raise TypeError(
            "Expected `zero_division` to be a number (e.g. 1.0, 0.0 or float('nan')), "
            f"but got {describe(zero_division)}."
        )
    return float(zero_division)


def reduce_counts(
    counts: torch.Tensor, name: str, average: str, zero_division: float | None
) -> torch.Tensor:
    """Metric ``name`` from per-image counts ``(B, ..., 4)``, reduced over ``B``.

    ``"micro"`` adds the counts first; ``"macro"`` averages per-image values,
    NaN excluded (the mean of none is NaN); ``"none"`` keeps them.
    """
    check_one_of(average, "average", AVERAGES)
    value = (
        DEFAULT_ZERO_DIVISION[name] if zero_division is None else check_zero_division(zero_division)
    )
    if average == "micro":
        num, den = num_den(counts.sum(dim=0), name)
    else:
        num, den = num_den(counts, name)
    out = torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, value))
    if average == "macro":
        out = out.nanmean(dim=0) if out.shape[0] else torch.full_like(out.sum(0), math.nan)
    return out


# --------------------------------------------------------------------------- thresholds


def as_thresholds(
    thresholds: torch.Tensor | Sequence[float] | int, maps: torch.Tensor
) -> torch.Tensor:
    if isinstance(thresholds, bool):
        raise TypeError(
            "Expected `thresholds` to be an int, a sequence of numbers or a 1-D tensor, "
            f"but got {describe(thresholds)}."
        )
    if isinstance(thresholds, int):
        n = check_positive_int(thresholds, "thresholds", minimum=2)
        return torch.linspace(0.0, 1.0, n, dtype=maps.dtype, device=maps.device)
    if isinstance(thresholds, torch.Tensor):
        t = thresholds
    elif isinstance(thresholds, Sequence) and not isinstance(thresholds, str):
        try:
            t = torch.tensor(list(thresholds), dtype=maps.dtype)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"Expected `thresholds` to hold numbers, but got {describe(thresholds)}."
            ) from err
    else:
        raise TypeError(
            "Expected `thresholds` to be an int, a sequence of numbers or a 1-D tensor, "
            f"but got {describe(thresholds)}."
        )
    check_ndim(t, "thresholds", 1, "(T,)")
    if t.numel() == 0:
        raise ValueError("Expected `thresholds` to hold at least one value, but got none.")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"Expected `thresholds` to hold real numbers, but got {t.dtype}.")
    check_finite(t, "thresholds")
    return t.to(device=maps.device, dtype=maps.dtype)


_CHUNK_PIXELS = 1 << 17  # pixels per chunk: keeps the working set in cache
_LUT_CELLS = 1 << 18  # largest lookup table of the fast path


def _bucket_lut(
    sorted_thr: torch.Tensor, lo: float, hi: float, dtype: torch.dtype
) -> tuple[torch.Tensor, int, int] | None:
    """Lookup table from float bit patterns to threshold buckets, or None.

    For non-negative IEEE floats the bit pattern, read as an integer, grows
    with the value. Dropping its ``shift`` low bits gives a cell of
    ``2**shift`` consecutive floats; a cell is *pure* when no threshold falls
    strictly inside it, and then every value in it has the same bucket (the
    number of thresholds ``<= value``), read from the table. Impure cells
    hold -1 and their few pixels are bucketed exactly with
    :func:`torch.bucketize`. The result is exact, like bucketize, at the cost
    of a shift and a gather per pixel. Built in ``O(cells + T)``.
    """
    if lo < 0:
        return None
    itype, mant = (torch.int32, 23) if dtype == torch.float32 else (torch.int64, 52)
    dev = sorted_thr.device
    lo_bits = int(torch.tensor(lo, dtype=dtype).view(itype))
    hi_bits = int(torch.tensor(hi, dtype=dtype).view(itype))
    shift = 0
    while (hi_bits >> shift) - (lo_bits >> shift) + 1 > _LUT_CELLS:
        shift += 1
    if shift > mant - 8:  # range too wide for cells narrower than 1/256 of a value
        return None
    first = lo_bits >> shift
    n_cells = (hi_bits >> shift) - first + 1
    thr = sorted_thr.to(dtype)
    # thresholds <= 0 are below every value; the others by their bit pattern
    n_const = int((thr <= 0).sum())
    t_bits = thr[thr > 0].view(itype)
    cell = (t_bits >> shift) - first
    at_start = (t_bits & ((1 << shift) - 1)) == 0
    # first cell whose values are all >= the threshold
    eff = (cell + (~at_start).to(itype)).clamp(0, n_cells).long()
    lut = n_const + torch.cumsum(torch.bincount(eff, minlength=n_cells + 1), 0)[:n_cells]
    inside = cell[~at_start]
    inside = inside[(inside >= 0) & (inside < n_cells)].long()
    lut[inside] = -1
    return lut.to(device=dev), shift, first


def curve_counts(
    maps: torch.Tensor,
    masks: torch.Tensor,
    thr: torch.Tensor,
    *,
    per_image: bool = True,
) -> torch.Tensor:
    """Confusion counts of ``maps >= thr[j]`` against ``masks``, for every ``j``.

    One pass over the pixels, in chunks: each pixel's value is bucketed by the
    sorted thresholds (``k`` = number of thresholds ``<= value``), a histogram
    per class (and per image) over the ``T + 1`` buckets is built with
    :func:`torch.bincount`, and a cumulative sum from the top gives the number
    of positive calls at every threshold.

    Returns:
        int64 counts ``(B, T, 4)``, or ``(1, T, 4)`` summed over the batch when
        ``per_image`` is False.
    """
    b = maps.shape[0]
    n_pix = maps.shape[1] * maps.shape[2]
    sorted_thr, order = torch.sort(thr)
    t = sorted_thr.numel()
    nb = t + 1
    x_all = maps.reshape(b, -1)
    if x_all.dtype not in (torch.float32, torch.float64):
        x_all = x_all.float()
        sorted_thr = sorted_thr.float()
    m_all = masks.reshape(b, -1)
    lo, hi = (float(v) for v in torch.aminmax(x_all)) if x_all.numel() else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # one reduction instead of isfinite
        check_finite(maps, "maps", NAN_HINT)
    lut_info = _bucket_lut(sorted_thr, lo, hi, x_all.dtype) if x_all.numel() else None
    itype = torch.int32 if x_all.dtype == torch.float32 else torch.int64
    # histogram bins per image: T + 1 buckets per class, and a junk bin per class
    # that collects the pixels of impure table cells (they are counted exactly apart)
    junk = 2 * nb
    stride = 2 * nb + 2
    if lut_info is not None:
        lut, shift, first = lut_info
        n_cells = lut.numel()
        # class 1 reads the second half of the table, already offset by T + 1;
        # small tables of bucket ids are uint8 to stay in cache
        ltype = torch.uint8 if junk + 1 <= 255 else torch.int32
        lut_both = torch.cat(
            [torch.where(lut >= 0, lut, junk), torch.where(lut >= 0, lut + nb, junk + 1)]
        ).to(ltype)
    rows = b if per_image else 1
    hist = torch.zeros(rows * stride, dtype=torch.long, device=maps.device)
    step = max(1, _CHUNK_PIXELS // max(n_pix, 1))
    for start in range(0, b, step):
        x = x_all[start : start + step]
        m = m_all[start : start + step]
        if lut_info is not None:
            idx = x.view(itype) >> shift
            if first:
                idx -= first
            if lo == 0.0:
                idx.clamp_(min=0)  # -0.0 has the sign bit set
            idx.add_(m, alpha=n_cells)
            k = lut_both.index_select(0, idx.reshape(-1)).view(idx.shape)
            if int(k.max()) >= junk:
                where = (k >= junk).view(-1).nonzero().squeeze(1)
                extra = torch.bucketize(x.reshape(-1)[where], sorted_thr, right=True)
                extra += (k.view(-1)[where].long() - junk) * nb  # the class
                if per_image:
                    extra += (where // n_pix + start) * stride
                hist += torch.bincount(extra, minlength=rows * stride)
        else:
            k = torch.bucketize(x, sorted_thr, right=True)
            k.add_(m.long(), alpha=nb)
        if per_image:
            offsets = torch.arange(start, start + x.shape[0], device=maps.device) * stride
            k = k.to(torch.int64) + offsets[:, None]
        hist += torch.bincount(k.reshape(-1), minlength=rows * stride)
    hist = hist.reshape(rows, stride)[:, :junk].reshape(rows, 2, nb)
    # positives at sorted threshold j: pixels with k > j, i.e. suffix sums from k = j + 1
    above = hist.flip(-1).cumsum(-1).flip(-1)[..., 1:]  # (rows, 2, T)
    tp = above[:, 1]
    fp = above[:, 0]
    n_true = hist[:, 1].sum(-1, keepdim=True)
    fn = n_true - tp
    tn = n_pix * (b if not per_image else 1) - tp - fp - fn
    counts_sorted = torch.stack([tp, fp, fn, tn], dim=-1)  # (rows, T, 4)
    counts = torch.empty_like(counts_sorted)
    counts[:, order] = counts_sorted
    return counts


def threshold_curve(
    maps: torch.Tensor,
    masks: torch.Tensor,
    thresholds: torch.Tensor | Sequence[float] | int,
    *,
    metrics: Sequence[str],
    average: str = "micro",
    zero_division: float | None = None,
) -> dict[str, torch.Tensor]:
    """Validated metrics of ``maps >= t`` for every threshold: ``{name: (T,) or (B, T)}``.

    The implementation of :func:`camseg.metrics.threshold_curve` (see there).
    """
    check_tensor(maps, "maps")
    check_ndim(maps, "maps", 3, "(B, H, W)")
    check_floating(maps, "maps")  # NaN/inf are caught in the counting pass
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    thr = as_thresholds(thresholds, maps)
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"Expected `metrics` to be a sequence of metric names, but got {describe(metrics)}."
        )
    for name in metrics:
        check_one_of(name, "metrics", METRIC_NAMES)
    check_one_of(average, "average", AVERAGES)
    if zero_division is not None:
        check_zero_division(zero_division)
    counts = curve_counts(maps, masks, thr, per_image=average != "micro")
    return {name: reduce_counts(counts, name, average, zero_division) for name in metrics}
