r"""Segmentation metrics on bool masks: per-image confusion counts and ratios of them.

Every ratio metric is computed from the per-image counts
:math:`(\mathrm{TP}, \mathrm{FP}, \mathrm{FN}, \mathrm{TN})` returned by
:func:`confusion_counts`, and every one has an explicit rule, ``empty=``, for
an image (or a batch, for ``"micro"``) where its denominator is 0.
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
from camseg.metrics._classification import _auc_sorted, _average_ranks

__all__ = [
    "METRIC_NAMES",
    "SegmentationCounter",
    "confusion_counts",
    "dice",
    "fall_out",
    "iou",
    "pixel_accuracy",
    "pixel_auroc",
    "pixel_average_precision",
    "precision",
    "recall",
    "specificity",
    "threshold_curve",
]

Reduction = Literal["none", "micro", "macro"]
MetricName = Literal[
    "iou", "dice", "precision", "recall", "specificity", "fall_out", "pixel_accuracy"
]

#: Names accepted by :func:`threshold_curve` and :meth:`SegmentationCounter.compute`.
METRIC_NAMES: tuple[str, ...] = (
    "iou",
    "dice",
    "precision",
    "recall",
    "specificity",
    "fall_out",
    "pixel_accuracy",
)

# default value where the denominator is 0: the metric's best value
_DEFAULT_EMPTY = {
    "iou": 1.0,
    "dice": 1.0,
    "precision": 1.0,
    "recall": 1.0,
    "specificity": 1.0,
    "fall_out": 0.0,
    "pixel_accuracy": 1.0,
}


# --------------------------------------------------------------------------- counts


def confusion_counts(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image pixel counts of true/false positives/negatives.

    Args:
        preds: predicted masks, ``torch.bool`` of shape ``(B, H, W)``.
        targets: ground-truth masks, ``torch.bool`` of shape ``(B, H, W)``.

    Returns:
        int64 tensor of shape ``(B, 4)``: columns ``TP, FP, FN, TN``.

    Raises:
        TypeError: if a mask is not a bool tensor.
        ValueError: if the shapes differ or are not ``(B, H, W)``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [True, False]]])
        >>> confusion_counts(p, t)
        tensor([[1, 1, 1, 1]])
    """
    check_bool_mask(preds, "preds")
    check_bool_mask(targets, "targets")
    check_same_shape(preds, "preds", targets, "targets")
    tp = (preds & targets).sum(dim=(1, 2))
    n_pred = preds.sum(dim=(1, 2))
    n_true = targets.sum(dim=(1, 2))
    fp = n_pred - tp
    fn = n_true - tp
    tn = preds.shape[1] * preds.shape[2] - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=-1)


def _num_den(counts: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
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


def _check_empty(empty: float) -> float:
    if not isinstance(empty, (int, float)) or isinstance(empty, bool):
        raise TypeError(
            f"Expected `empty` to be a number (e.g. 1.0, 0.0 or float('nan')), "
            f"but got {describe(empty)}."
        )
    return float(empty)


def _reduce_counts(
    counts: torch.Tensor, name: str, reduction: str, empty: float | None
) -> torch.Tensor:
    """Metric ``name`` from per-image counts ``(B, ..., 4)`` with a reduction over B."""
    check_one_of(reduction, "reduction", ("none", "micro", "macro"))
    value = _DEFAULT_EMPTY[name] if empty is None else _check_empty(empty)
    if reduction == "micro":
        num, den = _num_den(counts.sum(dim=0), name)
    else:
        num, den = _num_den(counts, name)
    out = torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, value))
    if reduction == "macro":
        out = out.nanmean(dim=0) if out.shape[0] else torch.full_like(out.sum(0), math.nan)
    return out


def _ratio_metric(
    name: str,
    preds: torch.Tensor,
    targets: torch.Tensor,
    reduction: Reduction,
    empty: float,
) -> torch.Tensor:
    counts = confusion_counts(preds, targets)
    return _reduce_counts(counts, name, reduction, _check_empty(empty))


_REDUCTION_DOC = """
    Reductions: ``"none"`` gives one value per image ``(B,)``; ``"micro"`` adds
    the counts over the batch and takes one ratio (dataset-level, every pixel
    weighs the same); ``"macro"`` averages the per-image values, leaving out
    NaN values (so with ``empty=float("nan")`` images with a zero denominator are
    excluded from the mean, and the mean of no image is NaN).
"""


def iou(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Intersection over union (Jaccard index) of bool masks.

    .. math::

        \mathrm{IoU} = \frac{|P \cap T|}{|P \cup T|} = \frac{TP}{TP + FP + FN}

    The denominator is 0 when both masks are empty; the value is then
    ``empty`` (default 1.0: predicting nothing where there is nothing is
    right). ``"none"`` gives one value per image; ``"micro"`` adds the counts
    over the batch first; ``"macro"`` averages per-image values, excluding NaN.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where both masks are empty (1.0, 0.0 or NaN to exclude).

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
        >>> iou(p, t)
        tensor([0.5000, 1.0000], dtype=torch.float64)
        >>> iou(p, t, empty=float("nan"), reduction="macro")
        tensor(0.5000, dtype=torch.float64)
        >>> iou(p, t, reduction="micro")
        tensor(0.5000, dtype=torch.float64)
    """
    return _ratio_metric("iou", preds, targets, reduction, empty)


def dice(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Dice coefficient (F1 score over pixels) of bool masks.

    .. math::

        \mathrm{Dice} = \frac{2 |P \cap T|}{|P| + |T|} = \frac{2 TP}{2 TP + FP + FN}

    The denominator is 0 when both masks are empty; the value is then
    ``empty`` (default 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where both masks are empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> dice(p, t)
        tensor([0.6667], dtype=torch.float64)

    References:
        Dice, "Measures of the amount of ecologic association between
        species", Ecology 1945.
    """
    return _ratio_metric("dice", preds, targets, reduction, empty)


def precision(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Pixel precision (positive predictive value) of bool masks.

    .. math::

        \mathrm{precision} = \frac{TP}{TP + FP}

    The denominator is 0 when the predicted mask is empty (whatever the
    target); the value is then ``empty`` (default 1.0: no false alarm was
    raised; the miss shows in :func:`recall`). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where the predicted mask is empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [True, False]]])
        >>> precision(p, t)
        tensor([0.5000], dtype=torch.float64)
    """
    return _ratio_metric("precision", preds, targets, reduction, empty)


def recall(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Pixel recall (sensitivity, true-positive rate) of bool masks.

    .. math::

        \mathrm{recall} = \frac{TP}{TP + FN}

    The denominator is 0 when the target mask is empty; the value is then
    ``empty`` (default 1.0: nothing was there to miss; false alarms show in
    :func:`precision` and :func:`fall_out`). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where the target mask is empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [True, True]]])
        >>> recall(p, t)
        tensor([0.3333], dtype=torch.float64)
    """
    return _ratio_metric("recall", preds, targets, reduction, empty)


def specificity(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Pixel specificity (true-negative rate) of bool masks.

    .. math::

        \mathrm{specificity} = \frac{TN}{TN + FP}

    The denominator is 0 when the target mask is full (no negative pixel); the
    value is then ``empty`` (default 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where the target mask covers every pixel.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> specificity(p, t)
        tensor([0.6667], dtype=torch.float64)
    """
    return _ratio_metric("specificity", preds, targets, reduction, empty)


def fall_out(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 0.0,
) -> torch.Tensor:
    r"""Pixel fall-out (false-positive rate), one minus specificity.

    .. math::

        \mathrm{fall\text{-}out} = \frac{FP}{FP + TN}

    The denominator is 0 when the target mask is full; the value is then
    ``empty`` (default 0.0, the best value, consistent with
    :func:`specificity`'s 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value where the target mask covers every pixel.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> fall_out(p, t)
        tensor([0.3333], dtype=torch.float64)
    """
    return _ratio_metric("fall_out", preds, targets, reduction, empty)


def pixel_accuracy(
    preds: torch.Tensor,
    targets: torch.Tensor,
    *,
    reduction: Reduction = "none",
    empty: float = 1.0,
) -> torch.Tensor:
    r"""Fraction of pixels where the predicted and true masks agree.

    .. math::

        \mathrm{accuracy} = \frac{TP + TN}{TP + FP + FN + TN}

    The denominator is 0 only for images without pixels (``H * W == 0``);
    the value is then ``empty``. Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        targets: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"none"`` ``(B,)``, ``"micro"`` or ``"macro"`` (0-d).
        empty: value for images without pixels.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``empty`` not a number.
        ValueError: on a shape mismatch or an unknown ``reduction``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> pixel_accuracy(p, t)
        tensor([0.7500], dtype=torch.float64)
    """
    return _ratio_metric("pixel_accuracy", preds, targets, reduction, empty)


# --------------------------------------------------------------------------- threshold curve


_NAN_HINT = "Hint: NaN maps come from a 0/0 normalisation of a flat map."


def _check_maps(maps: torch.Tensor, name: str = "maps", *, finite: bool = True) -> None:
    check_tensor(maps, name)
    check_ndim(maps, name, 3, "(B, H, W)")
    check_floating(maps, name)
    if finite:
        check_finite(maps, name, _NAN_HINT)


def _as_thresholds(
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


def _curve_counts(
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
        check_finite(maps, "maps", _NAN_HINT)
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
    thresholds: torch.Tensor | Sequence[float] | int = 101,
    *,
    metrics: Sequence[str] = ("iou", "dice"),
    reduction: Reduction = "micro",
    empty: float | None = None,
) -> dict[str, torch.Tensor]:
    r"""Segmentation metrics of ``maps >= t`` for many thresholds ``t`` in one pass.

    For each threshold :math:`t_j` the predicted mask is :math:`M_j = \{x :
    \mathrm{map}(x) \ge t_j\}` (the same comparison as
    ``maps >= t[:, None, None]``), scored against ``masks``. No loop over
    thresholds: every pixel is bucketed once by the sorted thresholds (the
    bucket :math:`k` is the number of thresholds :math:`\le` its value), a
    histogram per class (and per image unless ``"micro"``) over the
    :math:`T + 1` buckets is built with :func:`torch.bincount`, and a
    cumulative sum from the top gives the confusion counts at every
    threshold. For non-negative maps the bucket is read from a lookup table
    indexed by the high bits of the float's bit pattern (exact: table cells
    that hold a threshold fall back to :func:`torch.bucketize`); negative
    maps use :func:`torch.bucketize` throughout. Pixels are processed in
    cache-sized chunks; memory stays :math:`O(BT)` beyond the inputs.

    Args:
        maps: float maps, shape ``(B, H, W)``; any range (thresholds are
            compared as given).
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        thresholds: a 1-D tensor or sequence of thresholds (any order,
            duplicates allowed), or an int ``n`` for ``torch.linspace(0, 1, n)``.
        metrics: names among ``"iou", "dice", "precision", "recall",
            "specificity", "fall_out", "pixel_accuracy"``.
        reduction: ``"micro"`` (counts added over the batch; default),
            ``"macro"`` (mean of per-image values, NaN excluded) or ``"none"``.
        empty: value where a denominator is 0; ``None`` uses each metric's
            default (see the metric functions: 1.0, and 0.0 for fall-out).

    Returns:
        dict from metric name to float64 tensor of shape ``(T,)``, or
        ``(B, T)`` for ``reduction="none"``, in the order of ``thresholds``.

    Raises:
        TypeError: on non-floating maps, non-bool masks, bad thresholds.
        ValueError: on shape mismatches, NaN maps or thresholds, unknown
            metric names or reduction.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.6], [0.3, 0.1]]])
        >>> masks = torch.tensor([[[True, True], [False, False]]])
        >>> curve = threshold_curve(maps, masks, [0.0, 0.5, 0.8])
        >>> curve["iou"]
        tensor([0.5000, 1.0000, 0.5000], dtype=torch.float64)
        >>> curve["dice"]
        tensor([0.6667, 1.0000, 0.6667], dtype=torch.float64)
    """
    _check_maps(maps, finite=False)  # NaN/inf are caught in the counting pass
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    thr = _as_thresholds(thresholds, maps)
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(
            f"Expected `metrics` to be a sequence of metric names, but got {describe(metrics)}."
        )
    for name in metrics:
        check_one_of(name, "metrics", METRIC_NAMES)
    check_one_of(reduction, "reduction", ("none", "micro", "macro"))
    if empty is not None:
        _check_empty(empty)
    counts = _curve_counts(maps, masks, thr, per_image=reduction != "micro")
    return {name: _reduce_counts(counts, name, reduction, empty) for name in metrics}


# --------------------------------------------------------------------------- pixel AUROC / AP


def _check_maps_masks(maps: torch.Tensor, masks: torch.Tensor) -> None:
    _check_maps(maps)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")


def pixel_auroc(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    reduction: Literal["micro", "none"] = "micro",
) -> torch.Tensor:
    r"""Pixel-level area under the ROC curve of maps against true masks.

    Every pixel is a sample, its map value the score and its mask value the
    label; the AUC is the exact Mann-Whitney statistic with ties counted one
    half (as :func:`camseg.metrics.roc_auc`). ``"micro"`` pools the pixels of
    all images; ``"none"`` scores each image on its own (batched ranks) and
    gives NaN for images whose mask is empty or full (AUC undefined).

    Args:
        maps: float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"micro"`` (0-d) or ``"none"`` (``(B,)``).

    Returns:
        float64 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps or non-bool masks.
        ValueError: on a shape mismatch, NaN maps, an unknown reduction, or
            pooled masks with one class only for ``"micro"``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.2], [0.4, 0.1]]])
        >>> masks = torch.tensor([[[True, False], [True, False]]])
        >>> pixel_auroc(maps, masks)
        tensor(1., dtype=torch.float64)
    """
    _check_maps_masks(maps, masks)
    check_one_of(reduction, "reduction", ("micro", "none"))
    b = maps.shape[0]
    if reduction == "micro":
        x, y = maps.reshape(1, -1), masks.reshape(1, -1)
    else:
        x, y = maps.reshape(b, -1), masks.reshape(b, -1)
    n_pos = y.sum(-1).to(torch.float64)
    n_neg = y.shape[-1] - n_pos
    if reduction == "micro" and (n_pos[0] == 0 or n_neg[0] == 0):
        raise ValueError(
            f"Expected `masks` to hold both positive and negative pixels for the pixel AUROC, "
            f"but got {int(n_pos[0])} positive and {int(n_neg[0])} negative pixels."
        )
    if reduction == "micro":
        return _auc_sorted(x[0], y[0], int(n_pos[0]), int(n_neg[0]))
    ranks = _average_ranks(x)
    rank_sum = (ranks * y).sum(-1)
    den = n_pos * n_neg
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / den.clamp_min(1)
    return torch.where(den > 0, auc, torch.full_like(auc, math.nan))


def pixel_average_precision(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    reduction: Literal["micro", "none"] = "micro",
) -> torch.Tensor:
    r"""Pixel-level average precision of maps against true masks.

    As :func:`camseg.metrics.average_precision` (equals scikit-learn's
    ``average_precision_score``) with pixels as samples. ``"micro"`` pools the
    pixels of all images; ``"none"`` scores each image (batched) and gives NaN
    where the mask is empty.

    .. math::

        \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k

    Args:
        maps: float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        reduction: ``"micro"`` (0-d) or ``"none"`` (``(B,)``).

    Returns:
        float64 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps or non-bool masks.
        ValueError: on a shape mismatch, NaN maps, an unknown reduction, or no
            positive pixel at all for ``"micro"``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.2], [0.4, 0.5]]])
        >>> masks = torch.tensor([[[True, False], [True, False]]])
        >>> pixel_average_precision(maps, masks)
        tensor(0.8333, dtype=torch.float64)
    """
    _check_maps_masks(maps, masks)
    check_one_of(reduction, "reduction", ("micro", "none"))
    b = maps.shape[0]
    x = maps.reshape(1 if reduction == "micro" else b, -1)
    y = masks.reshape(x.shape)
    n_pos = y.sum(-1).to(torch.float64)
    if reduction == "micro" and n_pos[0] == 0:
        raise ValueError(
            "Expected `masks` to hold at least one positive pixel for the pixel average "
            "precision, but got none."
        )
    s, order = torch.sort(x, dim=-1, descending=True, stable=True)
    yy = torch.gather(y, -1, order).to(torch.float64)
    tps = yy.cumsum(-1)
    n = s.shape[-1]
    pos = torch.arange(1, n + 1, device=x.device, dtype=torch.float64)
    last_of_run = torch.ones_like(s, dtype=torch.bool)
    last_of_run[..., :-1] = s[..., 1:] != s[..., :-1]
    # recall increments happen only at the end of a run of tied scores; the
    # precision there is the one of the whole run
    tps_run = torch.where(last_of_run, tps, torch.zeros_like(tps))
    prev = torch.cummax(tps_run, dim=-1).values
    prev = torch.cat([torch.zeros_like(prev[..., :1]), prev[..., :-1]], dim=-1)
    gain = torch.where(last_of_run, tps - prev, torch.zeros_like(tps))
    prec = tps / pos
    ap = (gain * prec).sum(-1) / n_pos.clamp_min(1)
    ap = torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan))
    return ap[0] if reduction == "micro" else ap


# --------------------------------------------------------------------------- streaming


class SegmentationCounter:
    """Streaming confusion counts for dataset-level segmentation metrics.

    ``update`` adds a batch of masks (no images are kept, only their ``(B, 4)``
    counts); ``compute`` turns the accumulated counts into a metric with the
    same reductions and ``empty`` rules as :func:`iou` and friends: ``"micro"``
    adds all counts (the dataset-level number), ``"macro"`` averages the
    per-image values, ``"none"`` returns them all.

    Example:
        >>> counter = SegmentationCounter()
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> counter.update(p, t)
        >>> counter.update(t, t)
        >>> counter.compute("iou", reduction="micro")
        tensor(0.6667, dtype=torch.float64)
        >>> counter.compute("iou", reduction="macro")
        tensor(0.7500, dtype=torch.float64)
        >>> len(counter)
        2
    """

    def __init__(self) -> None:
        self._chunks: list[torch.Tensor] = []

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add the per-image counts of a batch.

        Args:
            preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
            targets: true masks, ``torch.bool`` ``(B, H, W)``.

        Raises:
            TypeError: if a mask is not bool.
            ValueError: on a shape mismatch.
        """
        self._chunks.append(confusion_counts(preds, targets))

    @property
    def counts(self) -> torch.Tensor:
        """All per-image counts so far, int64 ``(N, 4)`` (``TP, FP, FN, TN``)."""
        if not self._chunks:
            return torch.zeros(0, 4, dtype=torch.long)
        if len(self._chunks) > 1:
            devices = {c.device for c in self._chunks}
            if len(devices) > 1:
                raise ValueError(
                    f"Expected all batches on one device, but got {sorted(map(str, devices))}."
                )
            self._chunks = [torch.cat(self._chunks)]
        return self._chunks[0]

    def compute(
        self,
        metric: MetricName = "iou",
        *,
        reduction: Reduction = "micro",
        empty: float | None = None,
    ) -> torch.Tensor:
        """The metric over everything added since the last reset.

        Args:
            metric: one of ``"iou", "dice", "precision", "recall",
                "specificity", "fall_out", "pixel_accuracy"``.
            reduction: ``"micro"`` (default), ``"macro"`` or ``"none"``.
            empty: value where a denominator is 0; ``None`` uses the metric's
                default.

        Returns:
            float64 tensor, 0-d or ``(N,)``.

        Raises:
            ValueError: for an unknown metric or reduction, or before any
                update.
        """
        check_one_of(metric, "metric", METRIC_NAMES)
        if not self._chunks:
            raise ValueError(
                "Expected at least one `update` before `compute`, but the counter is empty."
            )
        return _reduce_counts(self.counts, metric, reduction, empty)

    def reset(self) -> None:
        """Forget all counts."""
        self._chunks = []

    def __len__(self) -> int:
        return int(sum(c.shape[0] for c in self._chunks))
