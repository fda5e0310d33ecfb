"""Classification metrics on tensors: ROC, AUC, AP, thresholded statistics, calibration."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

from camseg._checks import (
    check_binary_labels,
    check_finite,
    check_floating,
    check_ndim,
    check_nonempty,
    check_one_of,
    check_positive_int,
    check_same_batch,
    check_tensor,
    describe,
)
from camseg.metrics._ranking import auc_sorted, distinct_cumulative

__all__ = [
    "BinaryStats",
    "average_precision",
    "binary_stats",
    "cohen_kappa",
    "confusion_matrix",
    "expected_calibration_error",
    "nll",
    "roc_auc",
    "roc_curve",
    "youden_threshold",
]

#: Largest integer score magnitude held exactly by a float64 threshold.
_EXACT_INT = 2**53


# --------------------------------------------------------------------------- helpers


def _check_scores(scores: torch.Tensor, name: str = "scores") -> None:
    check_ndim(scores, name, 1, "(N,)")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"Expected `{name}` to hold real scores, but got {scores.dtype}.")
    check_finite(scores, name)


def _check_binary_pair(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    check_tensor(scores, "scores")
    _check_scores(scores)
    y = check_binary_labels(labels, "labels")
    check_same_batch(scores, "scores", y, "labels")
    return y


def _require_both_classes(y: torch.Tensor, what: str) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"Expected `labels` to hold both classes for {what}, but got {n_pos} positive "
            f"and {n_neg} negative labels. Hint: {what} is undefined for one class."
        )
    return n_pos, n_neg


# --------------------------------------------------------------------------- ROC / AUC / AP


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Area under the ROC curve, exact, with ties counted as one half.

    Computed as the trapezoidal area under the ROC curve over the distinct
    thresholds (one sort, integer counts), which equals the Mann-Whitney
    statistic with average ranks and :func:`sklearn.metrics.roc_auc_score`:

    .. math::

        \mathrm{AUC} = \frac{\sum_{i: y_i = 1} r_i - n_1 (n_1 + 1) / 2}{n_1 n_0}

    with :math:`r_i` the (tie-averaged) rank of score :math:`i`, :math:`n_1`
    positives and :math:`n_0` negatives.

    Args:
        scores: real scores, higher means more positive, shape ``(N,)``.
        labels: binary labels 0/1 (bool, int or float), shape ``(N,)``.

    Returns:
        0-d float64 tensor on the scores' device.

    Raises:
        TypeError: if ``scores`` is not a real tensor.
        ValueError: on a shape mismatch, non-binary labels, NaN scores, or
            labels with only one class.

    Example:
        >>> roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        tensor(0.7500, dtype=torch.float64)

    References:
        Hanley and McNeil, "The meaning and use of the area under a receiver
        operating characteristic (ROC) curve", Radiology 1982.
    """
    y = _check_binary_pair(scores, labels)
    n_pos, n_neg = _require_both_classes(y, "ROC AUC")
    return auc_sorted(scores, y, n_pos, n_neg)


def roc_curve(
    scores: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""ROC curve at every distinct score.

    Equals :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=False``:
    the thresholds are the distinct scores in decreasing order, preceded by
    ``+inf`` (the point ``(0, 0)``); a score counts as positive when
    ``score >= threshold``.

    .. math::

        \mathrm{TPR}(t) = \frac{\#\{i: y_i = 1, s_i \ge t\}}{n_1}, \qquad
        \mathrm{FPR}(t) = \frac{\#\{i: y_i = 0, s_i \ge t\}}{n_0}

    Args:
        scores: real scores, shape ``(N,)``.
        labels: binary labels 0/1, shape ``(N,)``.

    Returns:
        ``(fpr, tpr, thresholds)``, each of shape ``(K + 1,)`` for ``K``
        distinct scores; ``fpr``/``tpr`` are float64, ``thresholds`` has the
        scores' dtype (float64 for integer scores, which have no ``inf``).

    Raises:
        TypeError: if ``scores`` is not a real tensor.
        ValueError: on a shape mismatch, non-binary labels, NaN scores,
            labels with only one class, or integer scores beyond
            :math:`\pm 2^{53}`.

    Example:
        >>> fpr, tpr, thr = roc_curve(torch.tensor([0.1, 0.4, 0.35, 0.8]),
        ...                           torch.tensor([0, 0, 1, 1]))
        >>> fpr, tpr
        (tensor([0.0000, 0.0000, 0.5000, 0.5000, 1.0000], dtype=torch.float64),
         tensor([0.0000, 0.5000, 0.5000, 1.0000, 1.0000], dtype=torch.float64))
        >>> thr
        tensor([  inf, 0.8000, 0.4000, 0.3500, 0.1000])

    References:
        Fawcett, "An introduction to ROC analysis", Pattern Recognition
        Letters 2006.
    """
    y = _check_binary_pair(scores, labels)
    n_pos, n_neg = _require_both_classes(y, "the ROC curve")
    tps, fps, thr = distinct_cumulative(scores, y)
    zero = torch.zeros(1, dtype=torch.float64, device=scores.device)
    tpr = torch.cat([zero, tps / n_pos])
    fpr = torch.cat([zero, fps / n_neg])
    if not thr.is_floating_point():
        # integer scores: the thresholds (with +inf first) are float64, exact up to 2**53
        big = int(thr.abs().max()) if thr.dtype != torch.uint8 else int(thr.max())
        if big > _EXACT_INT:
            raise ValueError(
                f"Expected integer `scores` within +-2**53 (exact as float64 thresholds), "
                f"but got a magnitude of {big}. Hint: rescale the scores or pass floats."
            )
        thr = thr.to(torch.float64)
    inf = torch.full((1,), float("inf"), dtype=thr.dtype, device=thr.device)
    return fpr, tpr, torch.cat([inf, thr])


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Average precision: the step-wise area under the precision-recall curve.

    Equals :func:`sklearn.metrics.average_precision_score` (no interpolation):

    .. math::

        \mathrm{AP} = \sum_k (R_k - R_{k-1})\, P_k

    over the distinct thresholds in decreasing order, with :math:`R_0 = 0`.

    Args:
        scores: real scores, shape ``(N,)``.
        labels: binary labels 0/1, shape ``(N,)``.

    Returns:
        0-d float64 tensor.

    Raises:
        TypeError: if ``scores`` is not a real tensor.
        ValueError: on a shape mismatch, non-binary labels, NaN scores, or no
            positive label (AP is undefined then).

    Example:
        >>> average_precision(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        tensor(0.8333, dtype=torch.float64)
    """
    y = _check_binary_pair(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            "Expected `labels` to hold at least one positive for average precision, "
            "but got none. Hint: AP is undefined without positives."
        )
    tps, fps, _ = distinct_cumulative(scores, y)
    precision = tps / (tps + fps)
    recall = tps / n_pos
    d_recall = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype, device=recall.device))
    return (d_recall * precision).sum()


def youden_threshold(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Threshold that maximises Youden's :math:`J = \mathrm{TPR} - \mathrm{FPR}`.

    The candidates are the finite thresholds of :func:`roc_curve` (the
    distinct scores); predict positive with ``scores >= threshold``. Ties in
    :math:`J` go to the highest threshold (fewest positive calls).

    Args:
        scores: real scores, shape ``(N,)``.
        labels: binary labels 0/1, shape ``(N,)``.

    Returns:
        0-d tensor, one of the scores (as float64 for integer scores).

    Raises:
        TypeError: if ``scores`` is not a real tensor.
        ValueError: as :func:`roc_curve`.

    Example:
        >>> youden_threshold(torch.tensor([0.1, 0.4, 0.35, 0.8, 0.7]),
        ...                  torch.tensor([0, 0, 1, 1, 1]))
        tensor(0.7000)

    References:
        Youden, "Index for rating diagnostic tests", Cancer 1950.
    """
    fpr, tpr, thr = roc_curve(scores, labels)
    j = (tpr - fpr)[1:]
    return thr[1:][int(torch.argmax(j))]


# --------------------------------------------------------------------------- thresholded


class BinaryStats(NamedTuple):
    """Statistics of binary decisions, each a 0-d float64 tensor.

    Attributes:
        sensitivity: TP / (TP + FN), also recall or true-positive rate.
        specificity: TN / (TN + FP).
        precision: TP / (TP + FP).
        f1: 2 TP / (2 TP + FP + FN).
        accuracy: (TP + TN) / N.
        tp: true positives.
        fp: false positives.
        fn: false negatives.
        tn: true negatives.
    """

    sensitivity: torch.Tensor
    specificity: torch.Tensor
    precision: torch.Tensor
    f1: torch.Tensor
    accuracy: torch.Tensor
    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor


def binary_stats(
    preds: torch.Tensor,
    labels: torch.Tensor,
    *,
    threshold: float = 0.5,
    zero_division: float = float("nan"),
) -> BinaryStats:
    r"""Sensitivity, specificity, precision, F1 and accuracy at a threshold.

    A bool tensor is taken as the decisions themselves (``threshold`` is then
    ignored); real scores are called positive when ``score >= threshold``.

    Args:
        preds: bool decisions or real scores, shape ``(N,)``.
        labels: binary labels 0/1, shape ``(N,)``.
        threshold: decision threshold for real scores (finite).
        zero_division: value of a ratio whose denominator is 0 (e.g. precision
            with no positive call). Default NaN; scikit-learn uses 0.

    Returns:
        :class:`BinaryStats` of 0-d float64 tensors.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: on a shape mismatch, an empty batch, non-binary labels, NaN
            scores or a non-finite ``threshold``.

    Example:
        >>> s = binary_stats(torch.tensor([0.9, 0.2, 0.6, 0.4]), torch.tensor([1, 0, 0, 1]))
        >>> float(s.sensitivity), float(s.specificity), float(s.f1), float(s.accuracy)
        (0.5, 0.5, 0.5, 0.5)
    """
    check_tensor(preds, "preds")
    check_ndim(preds, "preds", 1, "(N,)")
    y = check_binary_labels(labels, "labels")
    check_same_batch(preds, "preds", y, "labels")
    check_nonempty(preds, "preds", hint="Hint: statistics of no decision are undefined.")
    if not isinstance(zero_division, (int, float)) or isinstance(zero_division, bool):
        raise TypeError(
            f"Expected `zero_division` to be a number, but got {describe(zero_division)}."
        )
    if preds.dtype == torch.bool:
        pred = preds
    else:
        _check_scores(preds, "preds")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise TypeError(f"Expected `threshold` to be a number, but got {describe(threshold)}.")
        if not math.isfinite(threshold):
            raise ValueError(
                f"Expected `threshold` to be a finite number, but got {threshold!r}. "
                "Hint: a NaN threshold would call every score negative."
            )
        pred = preds >= threshold
    f64 = torch.float64
    tp = (pred & y).sum().to(f64)
    fp = (pred & ~y).sum().to(f64)
    fn = (~pred & y).sum().to(f64)
    tn = (~pred & ~y).sum().to(f64)

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, zero_division))

    return BinaryStats(
        sensitivity=ratio(tp, tp + fn),
        specificity=ratio(tn, tn + fp),
        precision=ratio(tp, tp + fp),
        f1=ratio(2 * tp, 2 * tp + fp + fn),
        accuracy=ratio(tp + tn, tp + tn + fp + fn),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
    )


def _check_class_ids(value: torch.Tensor, name: str) -> None:
    check_ndim(value, name, 1, "(N,)")
    if value.is_floating_point() or value.is_complex():
        raise TypeError(f"Expected `{name}` to hold integer class ids, but got {value.dtype}.")
    if value.numel() and int(value.min()) < 0:
        raise ValueError(f"Expected `{name}` to hold class ids >= 0, but got {int(value.min())}.")


def _check_ids_below(value: torch.Tensor, name: str, c: int) -> None:
    """Raise ``ValueError`` if a class id of ``value`` is ``>= c`` (``num_classes``)."""
    if value.numel() and int(value.max()) >= c:
        raise ValueError(
            f"Expected class ids in [0, {c - 1}] for `num_classes`={c}, but `{name}` holds "
            f"id {int(value.max())}."
        )


def confusion_matrix(
    preds: torch.Tensor, labels: torch.Tensor, *, num_classes: int | None = None
) -> torch.Tensor:
    """Confusion matrix: rows are true classes, columns predicted classes.

    ``confusion_matrix(preds, labels)[i, j]`` counts samples of true class
    ``i`` predicted as ``j``, as :func:`sklearn.metrics.confusion_matrix`
    ``(labels, preds, labels=range(num_classes))`` does. Note the argument
    order: predictions first, as in torchmetrics.

    Args:
        preds: predicted class ids (int or bool), shape ``(N,)``.
        labels: true class ids (int or bool), shape ``(N,)``.
        num_classes: number of classes; default ``max(preds, labels) + 1``.

    Returns:
        int64 tensor of shape ``(num_classes, num_classes)``.

    Raises:
        TypeError: if ids are not integer tensors or ``num_classes`` not an int.
        ValueError: on a shape mismatch, an empty batch, negative ids or ids >=
            ``num_classes``.

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]))
        tensor([[1, 0, 0],
                [0, 1, 0],
                [0, 1, 1]])
    """
    check_tensor(preds, "preds")
    check_tensor(labels, "labels")
    _check_class_ids(preds, "preds")
    _check_class_ids(labels, "labels")
    check_same_batch(preds, "preds", labels, "labels")
    check_nonempty(preds, "preds", hint="Hint: skip empty batches.")
    if num_classes is None:
        c = int(max(preds.max(), labels.max())) + 1
    else:
        c = check_positive_int(num_classes, "num_classes")
        _check_ids_below(preds, "preds", c)
        _check_ids_below(labels, "labels", c)
    idx = labels.long() * c + preds.long()
    return torch.bincount(idx, minlength=c * c).reshape(c, c)


def cohen_kappa(
    preds: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    r"""Cohen's kappa: agreement beyond chance, optionally weighted for ordinal classes.

    .. math::

        \kappa = 1 - \frac{\sum_{ij} w_{ij} O_{ij}}{\sum_{ij} w_{ij} E_{ij}}

    with :math:`O` the confusion matrix, :math:`E` the outer product of its
    marginals divided by :math:`N`, and :math:`w_{ij}` equal to
    :math:`[i \ne j]` (``None``), :math:`|i - j|` (``"linear"``) or
    :math:`(i - j)^2` (``"quadratic"``). With ``num_classes=None`` the classes
    are the distinct ids present in either input, indexed in sorted order, as
    in :func:`sklearn.metrics.cohen_kappa_score`; with ``num_classes=C`` they
    are ``0 .. C - 1`` (sklearn's ``labels=range(C)``). Ordinal stages such as
    pN0 < pN0(i+) < pN1mi < pN1 < pN2 are the use of the weighted forms.

    Args:
        preds: predicted class ids (or one rater's), int or bool, shape ``(N,)``.
        labels: true class ids (or the other rater's), shape ``(N,)``.
        weights: ``None``, ``"linear"`` or ``"quadratic"``.
        num_classes: fixes the class set to ``0 .. num_classes - 1``.

    Returns:
        0-d float64 tensor; NaN when the expected disagreement is 0 (e.g. one
        class only), as in scikit-learn.

    Raises:
        TypeError: if ids are not integer tensors.
        ValueError: on a shape mismatch, an empty batch, an unknown ``weights`` or
            ids outside ``num_classes``.

    Example:
        >>> cohen_kappa(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
        tensor(0.6364, dtype=torch.float64)
        >>> cohen_kappa(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]),
        ...             weights="quadratic")
        tensor(0.8000, dtype=torch.float64)

    References:
        Cohen, "A coefficient of agreement for nominal scales", 1960; Cohen,
        "Weighted kappa", Psychological Bulletin 1968.
    """
    check_tensor(preds, "preds")
    check_tensor(labels, "labels")
    _check_class_ids(preds, "preds")
    _check_class_ids(labels, "labels")
    check_same_batch(preds, "preds", labels, "labels")
    check_nonempty(preds, "preds", hint="Hint: the agreement of no sample is undefined.")
    check_one_of(weights, "weights", (None, "linear", "quadratic"))
    if num_classes is None:
        classes = torch.unique(torch.cat([labels.long(), preds.long()]))
        a = torch.searchsorted(classes, labels.long())
        b = torch.searchsorted(classes, preds.long())
        c = max(int(classes.numel()), 1)
    else:
        c = check_positive_int(num_classes, "num_classes")
        _check_ids_below(preds, "preds", c)
        _check_ids_below(labels, "labels", c)
        a, b = labels.long(), preds.long()
    conf = confusion_matrix(b, a, num_classes=c).to(torch.float64)
    n = conf.sum()
    expected = torch.outer(conf.sum(1), conf.sum(0)) / n
    i = torch.arange(c, device=conf.device, dtype=torch.float64)
    diff = i[:, None] - i[None, :]
    if weights is None:
        w = (diff != 0).to(torch.float64)
    elif weights == "linear":
        w = diff.abs()
    else:
        w = diff**2
    return 1.0 - (w * conf).sum() / (w * expected).sum()


# --------------------------------------------------------------------------- calibration


def _check_probs(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    check_tensor(probs, "probs")
    check_ndim(probs, "probs", (1, 2), "(N,) or (N, C)")
    check_floating(probs, "probs")
    check_finite(probs, "probs")
    if probs.numel() and (float(probs.min()) < 0 or float(probs.max()) > 1):
        raise ValueError(
            f"Expected `probs` to lie in [0, 1], but got values in "
            f"[{float(probs.min()):.6g}, {float(probs.max()):.6g}]. "
            "Hint: apply softmax/sigmoid to logits first."
        )
    check_tensor(labels, "labels")
    check_same_batch(probs, "probs", labels, "labels")
    if probs.ndim == 1:
        return check_binary_labels(labels, "labels").long()
    _check_class_ids(labels, "labels")
    if labels.numel() and int(labels.max()) >= probs.shape[1]:
        raise ValueError(
            f"Expected `labels` in [0, {probs.shape[1] - 1}] for {probs.shape[1]} classes, "
            f"but got {int(labels.max())}."
        )
    return labels.long()


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15
) -> torch.Tensor:
    r"""Expected calibration error of the top-label confidence (Guo et al. 2017).

    Confidences are binned into ``n_bins`` equal-width bins
    :math:`B_m = ((m-1)/M, m/M]` (a confidence of exactly 0 goes to the first):

    .. math::

        \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N}
        \left| \mathrm{acc}(B_m) - \mathrm{conf}(B_m) \right|

    For ``(N,)`` probabilities of the positive class the prediction is
    ``p >= 0.5`` and the confidence :math:`\max(p, 1 - p)`; for ``(N, C)``
    class probabilities they are the argmax and the max.

    Args:
        probs: probabilities in [0, 1], shape ``(N,)`` or ``(N, C)``.
        labels: 0/1 labels for ``(N,)``, class ids for ``(N, C)``; ``(N,)``.
        n_bins: number of bins ``M``.

    Returns:
        0-d float64 tensor in [0, 1].

    Raises:
        TypeError: on non-floating probabilities or wrong label dtypes.
        ValueError: on shapes, probabilities outside [0, 1] or NaN, bad labels.

    Example:
        >>> expected_calibration_error(torch.tensor([0.95, 0.85, 0.25, 0.65]),
        ...                            torch.tensor([1, 0, 0, 1]), n_bins=5)
        tensor(0.3500, dtype=torch.float64)

    References:
        Guo, Pleiss, Sun and Weinberger, "On calibration of modern neural
        networks", ICML 2017.
    """
    y = _check_probs(probs, labels)
    m = check_positive_int(n_bins, "n_bins")
    if probs.ndim == 1:
        conf = torch.maximum(probs, 1 - probs)
        correct = ((probs >= 0.5).long() == y).to(torch.float64)
    else:
        conf, pred = probs.max(dim=1)
        correct = (pred == y).to(torch.float64)
    n = conf.numel()
    if n == 0:
        raise ValueError("Expected `probs` to hold at least one sample, but got none.")
    conf64 = conf.to(torch.float64)
    bins = (torch.ceil(conf64 * m).long() - 1).clamp(0, m - 1)
    acc_sum = torch.bincount(bins, weights=correct, minlength=m)
    conf_sum = torch.bincount(bins, weights=conf64, minlength=m)
    return (acc_sum - conf_sum).abs().sum() / n


def nll(probs: torch.Tensor, labels: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    r"""Mean negative log-likelihood of the labels under predicted probabilities.

    .. math::

        \mathrm{NLL} = -\frac{1}{N} \sum_i \log p_i(y_i)

    For ``(N,)`` probabilities of the positive class, :math:`p_i(1) = p_i` and
    :math:`p_i(0) = 1 - p_i` (binary cross-entropy). Probabilities are clamped
    to :math:`[\epsilon, 1]` before the log. PCam's reference NLL (Veeling et
    al. 2018) is 0.260.

    Args:
        probs: probabilities in [0, 1], shape ``(N,)`` or ``(N, C)``.
        labels: 0/1 labels for ``(N,)``, class ids for ``(N, C)``; ``(N,)``.
        eps: lower clamp for the probabilities, in ``(0, 1)``.

    Returns:
        0-d float64 tensor.

    Raises:
        TypeError: on non-floating probabilities, wrong label dtypes or a
            non-number ``eps``.
        ValueError: on shapes, an empty batch, probabilities outside [0, 1] or
            NaN, bad labels, ``eps`` outside ``(0, 1)``.

    Example:
        >>> nll(torch.tensor([0.9, 0.2]), torch.tensor([1, 0]))
        tensor(0.1643, dtype=torch.float64)
    """
    y = _check_probs(probs, labels)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool):
        raise TypeError(f"Expected `eps` to be a number, but got {describe(eps)}.")
    if not 0 < eps < 1:
        raise ValueError(
            f"Expected `eps` to be a number in (0, 1), but got {eps!r}. "
            "Hint: it is the lower clamp of the probabilities, e.g. 1e-12."
        )
    check_nonempty(probs, "probs", hint="Hint: the NLL of no sample is undefined.")
    p = probs.to(torch.float64)
    py = torch.where(y.bool(), p, 1 - p) if p.ndim == 1 else p.gather(1, y[:, None]).squeeze(1)
    return -torch.log(py.clamp_min(eps)).mean()
