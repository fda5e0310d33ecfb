r"""Segmentation metrics on bool masks: per-image confusion counts and ratios of them.

Every ratio metric is computed from the per-image counts
:math:`(\mathrm{TP}, \mathrm{FP}, \mathrm{FN}, \mathrm{TN})` returned by
:func:`confusion_counts`, and every one has an explicit rule, ``zero_division=``, for
an image (or a batch, for ``"micro"``) where its denominator is 0.

Reductions over the batch, ``average=``: ``"micro"`` (the default) adds the
counts over the batch and takes one ratio (dataset-level, every pixel weighs
the same); ``"macro"`` averages the per-image values, leaving out NaN values
(so with ``zero_division=float("nan")`` images with a zero denominator are
excluded from the mean, and the mean of no image is NaN); ``"none"`` gives one
value per image ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from camseg import _curves
from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_nonempty,
    check_one_of,
    check_pixels,
    check_same_shape,
    check_tensor,
    describe,
)
from camseg._curves import (
    AVERAGES,
    METRIC_NAMES,
    Average,
    MetricName,
    check_zero_division,
    reduce_counts,
)
from camseg.metrics._ranking import auc_sorted, average_ranks

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

# --------------------------------------------------------------------------- counts


def confusion_counts(preds: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image pixel counts of true/false positives/negatives.

    Args:
        preds: predicted masks, ``torch.bool`` of shape ``(B, H, W)``.
        masks: ground-truth masks, ``torch.bool`` of shape ``(B, H, W)``.

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
    check_bool_mask(masks, "masks")
    check_same_shape(preds, "preds", masks, "masks")
    tp = (preds & masks).sum(dim=(1, 2))
    n_pred = preds.sum(dim=(1, 2))
    n_true = masks.sum(dim=(1, 2))
    fp = n_pred - tp
    fn = n_true - tp
    tn = preds.shape[1] * preds.shape[2] - tp - fp - fn
    return torch.stack([tp, fp, fn, tn], dim=-1)


def _ratio_metric(
    name: str,
    preds: torch.Tensor,
    masks: torch.Tensor,
    average: Average,
    zero_division: float,
) -> torch.Tensor:
    counts = confusion_counts(preds, masks)
    return reduce_counts(counts, name, average, check_zero_division(zero_division))


def iou(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Intersection over union (Jaccard index) of bool masks.

    .. math::

        \mathrm{IoU} = \frac{|P \cap T|}{|P \cup T|} = \frac{TP}{TP + FP + FN}

    The denominator is 0 when both masks are empty; the value is then
    ``zero_division`` (default 1.0: predicting nothing where there is nothing is
    right). ``"micro"`` (the default) adds the counts over the batch first;
    ``"macro"`` averages per-image values, excluding NaN; ``"none"`` gives one
    value per image.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where both masks are empty (1.0, 0.0 or NaN to exclude).

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
        >>> iou(p, t, average="none")
        tensor([0.5000, 1.0000], dtype=torch.float64)
        >>> iou(p, t, zero_division=float("nan"), average="macro")
        tensor(0.5000, dtype=torch.float64)
        >>> iou(p, t)
        tensor(0.5000, dtype=torch.float64)
    """
    return _ratio_metric("iou", preds, masks, average, zero_division)


def dice(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Dice coefficient (F1 score over pixels) of bool masks.

    .. math::

        \mathrm{Dice} = \frac{2 |P \cap T|}{|P| + |T|} = \frac{2 TP}{2 TP + FP + FN}

    The denominator is 0 when both masks are empty; the value is then
    ``zero_division`` (default 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where both masks are empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> dice(p, t, average="none")
        tensor([0.6667], dtype=torch.float64)

    References:
        Dice, "Measures of the amount of ecologic association between
        species", Ecology 1945.
    """
    return _ratio_metric("dice", preds, masks, average, zero_division)


def precision(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Pixel precision (positive predictive value) of bool masks.

    .. math::

        \mathrm{precision} = \frac{TP}{TP + FP}

    The denominator is 0 when the predicted mask is empty (whatever the
    target); the value is then ``zero_division`` (default 1.0: no false alarm was
    raised; the miss shows in :func:`recall`). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where the predicted mask is empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [True, False]]])
        >>> precision(p, t, average="none")
        tensor([0.5000], dtype=torch.float64)
    """
    return _ratio_metric("precision", preds, masks, average, zero_division)


def recall(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Pixel recall (sensitivity, true-positive rate) of bool masks.

    .. math::

        \mathrm{recall} = \frac{TP}{TP + FN}

    The denominator is 0 when the target mask is empty; the value is then
    ``zero_division`` (default 1.0: nothing was there to miss; false alarms show in
    :func:`precision` and :func:`fall_out`). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where the target mask is empty.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [True, True]]])
        >>> recall(p, t, average="none")
        tensor([0.3333], dtype=torch.float64)
    """
    return _ratio_metric("recall", preds, masks, average, zero_division)


def specificity(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Pixel specificity (true-negative rate) of bool masks.

    .. math::

        \mathrm{specificity} = \frac{TN}{TN + FP}

    The denominator is 0 when the target mask is full (no negative pixel); the
    value is then ``zero_division`` (default 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where the target mask covers every pixel.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> specificity(p, t, average="none")
        tensor([0.6667], dtype=torch.float64)
    """
    return _ratio_metric("specificity", preds, masks, average, zero_division)


def fall_out(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 0.0,
) -> torch.Tensor:
    r"""Pixel fall-out (false-positive rate), one minus specificity.

    .. math::

        \mathrm{fall\text{-}out} = \frac{FP}{FP + TN}

    The denominator is 0 when the target mask is full; the value is then
    ``zero_division`` (default 0.0, the best value, consistent with
    :func:`specificity`'s 1.0). Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value where the target mask covers every pixel.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> fall_out(p, t, average="none")
        tensor([0.3333], dtype=torch.float64)
    """
    return _ratio_metric("fall_out", preds, masks, average, zero_division)


def pixel_accuracy(
    preds: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
    zero_division: float = 1.0,
) -> torch.Tensor:
    r"""Fraction of pixels where the predicted and true masks agree.

    .. math::

        \mathrm{accuracy} = \frac{TP + TN}{TP + FP + FN + TN}

    The denominator is 0 only for images without pixels (``H * W == 0``);
    the value is then ``zero_division``. Reductions as in :func:`iou`.

    Args:
        preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"`` ``(B,)``.
        zero_division: value for images without pixels.

    Returns:
        float64 tensor, ``(B,)`` or 0-d.

    Raises:
        TypeError: if a mask is not bool or ``zero_division`` not a number.
        ValueError: on a shape mismatch or an unknown ``average``.

    Example:
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> pixel_accuracy(p, t, average="none")
        tensor([0.7500], dtype=torch.float64)
    """
    return _ratio_metric("pixel_accuracy", preds, masks, average, zero_division)


# --------------------------------------------------------------------------- threshold curve


def threshold_curve(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    thresholds: torch.Tensor | Sequence[float] | int = 101,
    metrics: Sequence[str] = ("iou", "dice"),
    average: Average = "micro",
    zero_division: float | None = None,
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
        average: ``"micro"`` (counts added over the batch; default),
            ``"macro"`` (mean of per-image values, NaN excluded) or ``"none"``.
        zero_division: value where a denominator is 0; ``None`` uses each metric's
            default (see the metric functions: 1.0, and 0.0 for fall-out).

    Returns:
        dict from metric name to float64 tensor of shape ``(T,)``, or
        ``(B, T)`` for ``average="none"``, in the order of ``thresholds``.

    Raises:
        TypeError: on non-floating maps, non-bool masks, bad thresholds.
        ValueError: on shape mismatches, an empty batch, images without pixels,
            NaN maps or thresholds, no or unknown metric names, an unknown
            ``average``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.6], [0.3, 0.1]]])
        >>> masks = torch.tensor([[[True, True], [False, False]]])
        >>> curve = threshold_curve(maps, masks, thresholds=[0.0, 0.5, 0.8])
        >>> curve["iou"]
        tensor([0.5000, 1.0000, 0.5000], dtype=torch.float64)
        >>> curve["dice"]
        tensor([0.6667, 1.0000, 0.6667], dtype=torch.float64)
    """
    check_tensor(maps, "maps")
    check_ndim(maps, "maps", 3, "(B, H, W)")
    check_floating(maps, "maps")
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")
    check_nonempty(maps, "maps", "image", hint="Hint: skip empty batches.")
    check_pixels(maps, "maps")
    if isinstance(metrics, Sequence) and not isinstance(metrics, str) and len(metrics) == 0:
        raise ValueError(
            f"Expected `metrics` to name at least one metric of {METRIC_NAMES}, but got "
            f"{describe(metrics)}."
        )
    return _curves.threshold_curve(
        maps,
        masks,
        thresholds,
        metrics=metrics,
        average=average,
        zero_division=zero_division,
    )


# --------------------------------------------------------------------------- pixel AUROC / AP


def _check_maps_masks(maps: torch.Tensor, masks: torch.Tensor) -> None:
    check_tensor(maps, "maps")
    check_ndim(maps, "maps", 3, "(B, H, W)")
    check_floating(maps, "maps")
    check_finite(maps, "maps", _curves.NAN_HINT)
    check_bool_mask(masks, "masks")
    check_same_shape(maps, "maps", masks, "masks")


def _per_image_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of per-image values, NaN (undefined images) excluded; NaN if none is left."""
    return values.nanmean() if values.numel() else values.new_tensor(math.nan)


def pixel_auroc(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
) -> torch.Tensor:
    r"""Pixel-level area under the ROC curve of maps against true masks.

    Every pixel is a sample, its map value the score and its mask value the
    label; the AUC is the exact Mann-Whitney statistic with ties counted one
    half (as :func:`camseg.metrics.roc_auc`). ``"micro"`` pools the pixels of
    all images; ``"none"`` scores each image on its own (batched ranks) and
    gives NaN for images whose mask is empty or full (AUC undefined);
    ``"macro"`` averages the per-image values, NaN excluded.

    Args:
        maps: float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"``
            (``(B,)``).

    Returns:
        float64 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps or non-bool masks.
        ValueError: on a shape mismatch, NaN maps, an unknown ``average``, or
            pooled masks with one class only for ``"micro"``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.2], [0.4, 0.1]]])
        >>> masks = torch.tensor([[[True, False], [True, False]]])
        >>> pixel_auroc(maps, masks)
        tensor(1., dtype=torch.float64)
    """
    _check_maps_masks(maps, masks)
    check_one_of(average, "average", AVERAGES)
    b = maps.shape[0]
    if average == "micro":
        x, y = maps.reshape(1, -1), masks.reshape(1, -1)
    else:
        x, y = maps.reshape(b, -1), masks.reshape(b, -1)
    n_pos = y.sum(-1).to(torch.float64)
    n_neg = y.shape[-1] - n_pos
    if average == "micro" and (n_pos[0] == 0 or n_neg[0] == 0):
        raise ValueError(
            f"Expected `masks` to hold both positive and negative pixels for the pixel AUROC, "
            f"but got {int(n_pos[0])} positive and {int(n_neg[0])} negative pixels."
        )
    if average == "micro":
        return auc_sorted(x[0], y[0], int(n_pos[0]), int(n_neg[0]))
    ranks = average_ranks(x)
    rank_sum = (ranks * y).sum(-1)
    den = n_pos * n_neg
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / den.clamp_min(1)
    auc = torch.where(den > 0, auc, torch.full_like(auc, math.nan))
    return _per_image_mean(auc) if average == "macro" else auc


def pixel_average_precision(
    maps: torch.Tensor,
    masks: torch.Tensor,
    *,
    average: Average = "micro",
) -> torch.Tensor:
    r"""Pixel-level average precision of maps against true masks.

    As :func:`camseg.metrics.average_precision` (equals scikit-learn's
    ``average_precision_score``) with pixels as samples. ``"micro"`` pools the
    pixels of all images; ``"none"`` scores each image (batched) and gives NaN
    where the mask is empty; ``"macro"`` averages the per-image values, NaN
    excluded.

    .. math::

        \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k

    Args:
        maps: float maps, shape ``(B, H, W)``.
        masks: true masks, ``torch.bool`` ``(B, H, W)``.
        average: ``"micro"`` (default, 0-d), ``"macro"`` (0-d) or ``"none"``
            (``(B,)``).

    Returns:
        float64 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-floating maps or non-bool masks.
        ValueError: on a shape mismatch, NaN maps, an unknown ``average``, or no
            positive pixel at all for ``"micro"``.

    Example:
        >>> maps = torch.tensor([[[0.9, 0.2], [0.4, 0.5]]])
        >>> masks = torch.tensor([[[True, False], [True, False]]])
        >>> pixel_average_precision(maps, masks)
        tensor(0.8333, dtype=torch.float64)
    """
    _check_maps_masks(maps, masks)
    check_one_of(average, "average", AVERAGES)
    b = maps.shape[0]
    x = maps.reshape(1 if average == "micro" else b, -1)
    y = masks.reshape(x.shape)
    n_pos = y.sum(-1).to(torch.float64)
    if average == "micro" and n_pos[0] == 0:
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
    if average == "micro":
        return ap[0]
    return _per_image_mean(ap) if average == "macro" else ap


# --------------------------------------------------------------------------- streaming


class SegmentationCounter:
    """Streaming confusion counts for dataset-level segmentation metrics.

    ``update`` adds a batch of masks (no images are kept, only their ``(B, 4)``
    counts); ``compute`` turns the accumulated counts into a metric with the
    same ``average`` and ``zero_division`` rules as :func:`iou` and friends:
    ``"micro"`` (the default) adds all counts (the dataset-level number),
    ``"macro"`` averages the per-image values, ``"none"`` returns them all.

    Example:
        >>> counter = SegmentationCounter()
        >>> p = torch.tensor([[[True, True], [False, False]]])
        >>> t = torch.tensor([[[True, False], [False, False]]])
        >>> counter.update(p, t)
        >>> counter.update(t, t)
        >>> counter.compute("iou")
        tensor(0.6667, dtype=torch.float64)
        >>> counter.compute("iou", average="macro")
        tensor(0.7500, dtype=torch.float64)
        >>> len(counter)
        2
    """

    def __init__(self) -> None:
        self._chunks: list[torch.Tensor] = []

    def update(self, preds: torch.Tensor, masks: torch.Tensor) -> None:
        """Add the per-image counts of a batch.

        Args:
            preds: predicted masks, ``torch.bool`` ``(B, H, W)``.
            masks: true masks, ``torch.bool`` ``(B, H, W)``.

        Raises:
            TypeError: if a mask is not bool.
            ValueError: on a shape mismatch.
        """
        self._chunks.append(confusion_counts(preds, masks))

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
        metric: MetricName,
        *,
        average: Average = "micro",
        zero_division: float | None = None,
    ) -> torch.Tensor:
        """The metric over everything added since the last reset.

        Args:
            metric: one of ``"iou", "dice", "precision", "recall",
                "specificity", "fall_out", "pixel_accuracy"``.
            average: ``"micro"`` (default), ``"macro"`` or ``"none"``.
            zero_division: value where a denominator is 0; ``None`` uses the metric's
                default.

        Returns:
            float64 tensor, 0-d or ``(N,)``.

        Raises:
            ValueError: for an unknown metric or ``average``, or before any
                update.
        """
        check_one_of(metric, "metric", METRIC_NAMES)
        if not self._chunks:
            raise ValueError(
                "Expected at least one `update` before `compute`, but the counter is empty."
            )
        return reduce_counts(self.counts, metric, average, zero_division)

    def reset(self) -> None:
        """Forget all counts."""
        self._chunks = []

    def __len__(self) -> int:
        return int(sum(c.shape[0] for c in self._chunks))
