"""Slide and patient decisions: per-slide metrics, tumour sizes, pN stages, kappa.

The staging rules are those of the CAMELYON17 challenge (a simplified form of
the TNM pN staging of breast cancer with five lymph nodes per patient):

- a lymph node holds a **macro-metastasis** when its largest tumour region is
  larger than 2.0 mm, a **micro-metastasis** when it is larger than 0.2 mm (and
  at most 2.0 mm), and **isolated tumour cells** (ITC) when it is at most
  0.2 mm; ITC are not counted as metastases;
- **pN0**: no micro-, macro-metastases or ITC; **pN0(i+)**: only ITC;
  **pN1mi**: micro-metastases but no macro-metastasis; **pN1**: metastases in 1--3
  nodes, at least one a macro-metastasis; **pN2**: metastases in 4--9 nodes, at
  least one a macro-metastasis.

The challenge scores agreement with Cohen's quadratic weighted kappa over the
five ordered stages.

References:
    Bandi et al., "From detection of individual metastases to classification of
    lymph node status at the patient level: the CAMELYON17 challenge", IEEE TMI
    2019; https://camelyon17.grand-challenge.org/Evaluation/.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_nonnegative,
    check_number,
    check_positive_int,
    check_same_shape,
    check_sequence,
    describe,
)

__all__ = [
    "NODE_CLASSES",
    "PN_STAGES",
    "SlideMetrics",
    "TumorRegions",
    "downsample_mask",
    "node_class",
    "patient_stages",
    "pn_stage",
    "slide_metrics",
    "stage_kappa",
    "tumor_regions",
]

#: Lymph-node categories, in order of severity.
NODE_CLASSES: tuple[str, ...] = ("negative", "itc", "micro", "macro")
#: CAMELYON17 pN stages, in order (the index is the ordinal code used for kappa).
PN_STAGES: tuple[str, ...] = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2")

NodeClass = Literal["negative", "itc", "micro", "macro"]

ITC_MAX_MM = 0.2
MICRO_MAX_MM = 2.0


def _check_mpp(mpp: object, name: str = "mpp") -> float:
    if mpp is None:
        raise ValueError(
            f"Expected `{name}` (microns per pixel of the mask) to be a number > 0, but got "
            "None. Hint: SlideMaps.mpp gives it for stitched maps."
        )
    if not isinstance(mpp, (int, float)) or isinstance(mpp, bool):
        raise TypeError(f"Expected `{name}` to be a number > 0, but got {describe(mpp)}.")
    if not (mpp > 0 and np.isfinite(mpp)):
        raise ValueError(f"Expected `{name}` to be a finite number > 0, but got {mpp!r}.")
    return float(mpp)


class TumorRegions(NamedTuple):
    """Connected tumour regions of a slide mask and their sizes.

    Attributes:
        labels: ``(H, W)`` int64 region ids, 0 for background, ``1..R`` for regions.
        diameters_mm: ``(R,)`` float64 largest diameter of each region in mm.
        areas_mm2: ``(R,)`` float64 area of each region in mm^2.
    """

    labels: torch.Tensor
    diameters_mm: torch.Tensor
    areas_mm2: torch.Tensor


def _region_diameter(sub: np.ndarray) -> float:
    """Largest distance between corners of the pixels of a region (in pixels)."""
    rows = np.flatnonzero(sub.any(axis=1))
    left = sub[rows].argmax(axis=1)
    right = sub.shape[1] - sub[rows, ::-1].argmax(axis=1)  # one past the last pixel
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(np.float64)
    xs = np.concatenate([left, left, right, right]).astype(np.float64)
    pts = np.unique(np.stack([xs, ys], axis=1), axis=0)
    if len(pts) > 64:
        from scipy.spatial import ConvexHull

        pts = pts[ConvexHull(pts).vertices]
    diff = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((diff**2).sum(-1)).max())


def tumor_regions(mask: torch.Tensor, *, mpp: float, merge_um: float = 0.0) -> TumorRegions:
    r"""Label the connected tumour regions of a mask and measure them in millimetres.

    Regions are 8-connected. The size of a region is its **largest diameter**
    (maximum Feret diameter), CAMELYON17's measure: the largest distance between
    two points of the region seen as a union of square pixels (so one pixel
    measures :math:`\sqrt 2` pixels, a 1 x n bar :math:`\sqrt{n^2 + 1}`). With
    ``merge_um > 0``, regions closer than that many microns are measured as one
    (CAMELYON16 merged annotations within 75 microns).

    Runs on the CPU (SciPy labelling); results come back on the mask's device.

    Args:
        mask: ``torch.bool`` tumour mask ``(H, W)``.
        mpp: microns per pixel of the mask (e.g. :attr:`SlideMaps.mpp`).
        merge_um: merge distance in microns.

    Returns:
        :class:`TumorRegions` with ``labels`` ``(H, W)``, ``diameters_mm`` ``(R,)`` and
        ``areas_mm2`` ``(R,)``.

    Raises:
        TypeError: if ``mask`` is not a bool tensor or ``mpp`` not a number.
        ValueError: if ``mask`` is not 2-D, ``mpp`` is missing or not positive, or
            ``merge_um`` is negative.

    Example:
        >>> import torch
        >>> mask = torch.zeros(40, 40, dtype=torch.bool)
        >>> mask[2:5, 2:6] = True        # 3 x 4 pixels
        >>> mask[20:23, 30:31] = True    # a 3 x 1 bar
        >>> regions = tumor_regions(mask, mpp=100.0)  # 0.1 mm per pixel
        >>> regions.diameters_mm
        tensor([0.5000, 0.3162], dtype=torch.float64)
        >>> regions.areas_mm2
        tensor([0.1200, 0.0300], dtype=torch.float64)
    """
    check_bool_mask(mask, "mask", "(H, W)", 2)
    mpp = _check_mpp(mpp)
    check_nonnegative(merge_um, "merge_um")
    m = mask.detach().cpu().numpy()
    structure = np.ones((3, 3), bool)
    if merge_um > 0:
        grown = ndimage.distance_transform_edt(~m) <= merge_um / 2.0 / mpp
        labels, n = ndimage.label(grown, structure=structure)
        labels = np.where(m, labels, 0)
    else:
        labels, n = ndimage.label(m, structure=structure)
    diameters = np.zeros(n, np.float64)
    areas = np.zeros(n, np.float64)
    for i, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        sub = labels[sl] == i + 1
        diameters[i] = _region_diameter(sub)
        areas[i] = sub.sum()
    px_mm = mpp / 1000.0
    dev = mask.device
    return TumorRegions(
        labels=torch.from_numpy(labels.astype(np.int64)).to(dev),
        diameters_mm=torch.from_numpy(diameters * px_mm).to(dev),
        areas_mm2=torch.from_numpy(areas * px_mm**2).to(dev),
    )


def node_class(largest_diameter_mm: float) -> NodeClass:
    """CAMELYON17 category of a lymph node from its largest tumour diameter in mm.

    ``0`` (no tumour) is ``"negative"``; up to 0.2 mm ``"itc"`` (isolated tumour
    cells); above 0.2 mm up to 2.0 mm ``"micro"``; above 2.0 mm ``"macro"``.

    Args:
        largest_diameter_mm: the largest diameter over the node's tumour regions
            (``regions.diameters_mm.max()``, or 0 when there is none).

    Returns:
        One of :data:`NODE_CLASSES`.

    Raises:
        TypeError: if the diameter is not a number.
        ValueError: if it is negative or not finite.

    Example:
        >>> [node_class(d) for d in (0.0, 0.2, 0.21, 2.0, 2.5)]
        ['negative', 'itc', 'micro', 'micro', 'macro']

    References:
        https://camelyon17.grand-challenge.org/Evaluation/
    """
    if isinstance(largest_diameter_mm, torch.Tensor) and largest_diameter_mm.numel() == 1:
        largest_diameter_mm = float(largest_diameter_mm)
    check_nonnegative(largest_diameter_mm, "largest_diameter_mm")
    d = float(largest_diameter_mm)
    if d == 0:
        return "negative"
    if d <= ITC_MAX_MM:
        return "itc"
    if d <= MICRO_MAX_MM:
        return "micro"
    return "macro"


def pn_stage(nodes: Sequence[str]) -> str:
    """CAMELYON17 pN stage of one patient from the categories of their lymph nodes.

    Nodes with metastases are those with a micro- or macro-metastasis (ITC do not
    count). Without any metastasis the stage is pN0, or pN0(i+) when some node
    holds ITC; without a macro-metastasis it is pN1mi; with one, pN1 for 1--3
    nodes with metastases and pN2 for 4--9.

    Args:
        nodes: one category per lymph node, from :data:`NODE_CLASSES`.

    Returns:
        One of :data:`PN_STAGES`.

    Raises:
        ValueError: if ``nodes`` is empty, holds an unknown category, or has 10 or
            more nodes with metastases and a macro-metastasis (pN3, outside the
            CAMELYON17 scheme).

    Example:
        >>> pn_stage(["negative"] * 5), pn_stage(["itc", "negative"])
        ('pN0', 'pN0(i+)')
        >>> pn_stage(["micro", "micro", "micro", "micro", "itc"])
        'pN1mi'
        >>> pn_stage(["macro", "micro", "itc"]), pn_stage(["macro"] + ["micro"] * 3)
        ('pN1', 'pN2')

    References:
        https://camelyon17.grand-challenge.org/Evaluation/
    """
    if isinstance(nodes, str) or not isinstance(nodes, Sequence):
        raise TypeError(
            f"Expected `nodes` to be a sequence of node categories, but got {describe(nodes)}."
        )
    if len(nodes) == 0:
        raise ValueError("Expected `nodes` to hold at least one lymph node, but got none.")
    bad = [n for n in nodes if n not in NODE_CLASSES]
    if bad:
        raise ValueError(
            f"Expected `nodes` to hold categories from {NODE_CLASSES}, but got {bad[0]!r}."
        )
    positive = sum(n in ("micro", "macro") for n in nodes)
    if positive == 0:
        return "pN0(i+)" if "itc" in nodes else "pN0"
    if "macro" not in nodes:
        return "pN1mi"
    if positive <= 3:
        return "pN1"
    if positive <= 9:
        return "pN2"
    raise ValueError(
        f"Expected at most 9 lymph nodes with metastases (CAMELYON17 has no pN3), but got "
        f"{positive}."
    )


def patient_stages(nodes: Sequence[str], patients: Sequence[Hashable]) -> dict[Hashable, str]:
    """PN stage of every patient from per-node categories and their patient ids.

    Args:
        nodes: one category per lymph node (slide), from :data:`NODE_CLASSES`.
        patients: the patient id of each node, same length.

    Returns:
        ``{patient: stage}`` in order of first appearance.

    Raises:
        TypeError: if ``nodes`` or ``patients`` is not a sequence.
        ValueError: if the lengths differ, or as :func:`pn_stage`.

    Example:
        >>> patient_stages(["macro", "negative", "itc", "negative"], ["a", "a", "b", "b"])
        {'a': 'pN1', 'b': 'pN0(i+)'}
    """
    check_sequence(nodes, "nodes", "node categories")
    check_sequence(patients, "patients", "patient ids")
    if len(nodes) != len(patients):
        raise ValueError(
            f"Expected `nodes` and `patients` to have the same length, but got {len(nodes)} "
            f"and {len(patients)}."
        )
    grouped: dict[Hashable, list[str]] = {}
    for node, patient in zip(nodes, patients):
        grouped.setdefault(patient, []).append(node)
    return {p: pn_stage(ns) for p, ns in grouped.items()}


def _stage_codes(stages: Sequence[str] | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(stages, torch.Tensor):
        check_ndim(stages, name, 1, "(N,)")
        if stages.is_floating_point() or (
            stages.numel() and (int(stages.min()) < 0 or int(stages.max()) >= len(PN_STAGES))
        ):
            raise ValueError(
                f"Expected `{name}` to hold stage codes 0..{len(PN_STAGES) - 1}, but got "
                f"{describe(stages)}."
            )
        return stages.long()
    check_sequence(stages, name, "pN stages")
    bad = [s for s in stages if s not in PN_STAGES]
    if bad:
        raise ValueError(f"Expected `{name}` to hold stages from {PN_STAGES}, but got {bad[0]!r}.")
    return torch.tensor([PN_STAGES.index(s) for s in stages], dtype=torch.long)


def stage_kappa(
    true_stages: Sequence[str] | torch.Tensor, pred_stages: Sequence[str] | torch.Tensor
) -> torch.Tensor:
    """Quadratic weighted Cohen's kappa between true and predicted pN stages.

    The five stages are ordered as in :data:`PN_STAGES` and all five take part
    (``num_classes=5``), so the quadratic weights measure distances on that
    ordinal scale; computed by :func:`camseg.metrics.cohen_kappa`. This is the
    CAMELYON17 score.

    Args:
        true_stages: stage names or codes (indices into :data:`PN_STAGES`), ``(N,)``.
        pred_stages: the same for the predictions.

    Returns:
        0-d float64 tensor.

    Raises:
        TypeError: if a stage argument is neither a sequence nor a tensor.
        ValueError: on an unknown stage, different lengths or no patients.

    Example:
        >>> stage_kappa(["pN0", "pN1", "pN2", "pN1mi"], ["pN0", "pN1", "pN1", "pN1mi"])
        tensor(0.9333, dtype=torch.float64)

    References:
        Cohen, "Weighted kappa", Psychological Bulletin 1968; Bandi et al. 2019.
    """
    from camseg.metrics import cohen_kappa

    a = _stage_codes(true_stages, "true_stages")
    b = _stage_codes(pred_stages, "pred_stages")
    if len(a) != len(b):
        raise ValueError(
            f"Expected `true_stages` and `pred_stages` to have the same batch size (one stage per "
            f"patient), but got {len(a)} and {len(b)}."
        )
    if len(a) == 0:
        raise ValueError(
            "Expected `true_stages` and `pred_stages` to hold at least one patient, but got none."
        )
    return cohen_kappa(b, a, weights="quadratic", num_classes=len(PN_STAGES))


def downsample_mask(
    mask: torch.Tensor, factor: int, *, rule: Literal["majority", "any"] = "majority"
) -> torch.Tensor:
    """Shrink a ``(H, W)`` bool mask by an integer factor, to compare it with stitched maps.

    Output pixel ``(i, j)`` covers the ``factor x factor`` block of input pixels;
    it is True when at least half of them are (``"majority"``) or any of them is
    (``"any"``). The output has ``H // factor`` rows and ``W // factor`` columns,
    like :func:`camseg.slide.sliding_window` with ``output_downsample=factor``.

    Args:
        mask: ``torch.bool`` ``(H, W)``.
        factor: integer factor ``>= 1``.
        rule: ``"majority"`` or ``"any"``.

    Returns:
        ``torch.bool`` ``(H // factor, W // factor)`` on the mask's device.

    Raises:
        TypeError: if ``mask`` is not bool or ``factor`` not an int.
        ValueError: if ``mask`` is not 2-D or ``rule`` is unknown.

    Example:
        >>> import torch
        >>> m = torch.zeros(4, 4, dtype=torch.bool); m[0, 0] = m[0, 1] = m[3, 3] = True
        >>> downsample_mask(m, 2).int(), downsample_mask(m, 2, rule="any").int()
        (tensor([[1, 0],
                [0, 0]], dtype=torch.int32), tensor([[1, 0],
                [0, 1]], dtype=torch.int32))
    """
    from camseg._checks import check_one_of

    check_bool_mask(mask, "mask", "(H, W)", 2)
    factor = check_positive_int(factor, "factor")
    check_one_of(rule, "rule", ("majority", "any"))
    frac = F.avg_pool2d(mask[None, None].float(), factor)[0, 0]
    return frac >= 0.5 if rule == "majority" else frac > 0


class SlideMetrics(NamedTuple):
    """Per-slide pixel metrics at the slide's own optimal threshold (0-d float64 each).

    Attributes:
        threshold: the threshold used (Youden's optimum unless given).
        auc: area under the pixel ROC curve.
        sensitivity: TP / (TP + FN).
        specificity: TN / (TN + FP).
        precision: TP / (TP + FP).
        fall_out: FP / (FP + TN) = 1 - specificity.
        accuracy: (TP + TN) / N.
        f1: 2 TP / (2 TP + FP + FN).
        iou: TP / (TP + FP + FN).
    """

    threshold: torch.Tensor
    auc: torch.Tensor
    sensitivity: torch.Tensor
    specificity: torch.Tensor
    precision: torch.Tensor
    fall_out: torch.Tensor
    accuracy: torch.Tensor
    f1: torch.Tensor
    iou: torch.Tensor


def slide_metrics(
    heatmap: torch.Tensor,
    truth: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    threshold: float | Literal["youden"] = "youden",
) -> SlideMetrics:
    r"""Pixel metrics of one slide heatmap against its tumour mask, at the Youden threshold.

    The pixels inside ``valid`` (all by default; typically the tissue the
    classifier saw, ``SlideMaps.weight > 0``) are scored; the threshold is the
    slide's own optimum :math:`\arg\max_t \mathrm{TPR}(t) - \mathrm{FPR}(t)` on its
    ROC curve, as in the per-slide evaluation of the HCC sliding-window study,
    and pixels with ``heatmap >= threshold`` are called tumour. Built on
    :func:`camseg.metrics.roc_auc`, :func:`camseg.metrics.youden_threshold`,
    :func:`camseg.metrics.binary_stats` and :func:`camseg.metrics.iou`.

    Args:
        heatmap: floating ``(H, W)`` slide map (e.g. ``SlideMaps.cam`` or ``.prob``).
        truth: ``torch.bool`` ``(H, W)`` tumour mask at the heatmap's resolution
            (see :func:`downsample_mask`).
        valid: optional ``torch.bool`` ``(H, W)`` mask of the pixels to score.
        threshold: ``"youden"`` or a fixed number.

    Returns:
        :class:`SlideMetrics`.

    Raises:
        TypeError: on a wrong dtype, or a ``threshold`` that is neither
            ``"youden"`` nor a number.
        ValueError: on a shape mismatch, a non-finite ``heatmap`` or ``threshold``,
            or if the scored pixels do not hold both tumour and non-tumour (the
            ROC is then undefined).

    Example:
        >>> import torch
        >>> heat = torch.tensor([[0.9, 0.8, 0.3], [0.6, 0.1, 0.2]])
        >>> truth = torch.tensor([[True, True, False], [False, False, True]])
        >>> m = slide_metrics(heat, truth)
        >>> float(m.threshold), round(float(m.auc), 4), float(m.sensitivity), float(m.iou)
        (0.8, 0.7778, 0.6666666666666666, 0.6666666666666666)

    References:
        Youden, "Index for rating diagnostic tests", Cancer 1950.
    """
    from camseg import metrics

    check_ndim(heatmap, "heatmap", 2, "(H, W)")
    check_floating(heatmap, "heatmap")
    check_finite(heatmap, "heatmap", "Hint: NaN maps come from a 0/0 normalization of a flat map.")
    check_bool_mask(truth, "truth", "(H, W)", 2)
    if heatmap.shape != truth.shape:
        raise ValueError(
            f"Expected `heatmap` and `truth` to have the same shape, but got "
            f"{tuple(heatmap.shape)} and {tuple(truth.shape)}. Hint: bring the mask to the "
            "heatmap's resolution with `downsample_mask(truth, output_downsample)`."
        )
    if valid is None:
        scores, labels = heatmap.flatten(), truth.flatten()
        valid_mask = torch.ones_like(truth)
    else:
        check_bool_mask(valid, "valid", "(H, W)", 2)
        check_same_shape(valid, "valid", heatmap, "heatmap")
        scores, labels = heatmap[valid], truth[valid]
        valid_mask = valid
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.numel():
        raise ValueError(
            "Expected the scored pixels of `truth` to hold both tumour and non-tumour, but "
            f"they hold {n_pos} tumour pixels of {labels.numel()}. Hint: per-slide ROC metrics "
            "are undefined for tumour-free slides; score those by their slide-level decision."
        )
    auc = metrics.roc_auc(scores, labels)
    if threshold == "youden":
        thr = metrics.youden_threshold(scores, labels).to(torch.float64)
    elif isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        thr = torch.tensor(check_number(threshold, "threshold"), dtype=torch.float64)
    else:
        raise TypeError(
            f"Expected `threshold` to be 'youden' or a number, but got {describe(threshold)}."
        )
    pred = scores >= thr.to(scores.dtype)
    stats = metrics.binary_stats(pred, labels)
    pred_map = (heatmap >= thr.to(heatmap.dtype)) & valid_mask
    iou = metrics.iou(pred_map[None], (truth & valid_mask)[None], average="none")[0]
    return SlideMetrics(
        threshold=thr,
        auc=auc.to(torch.float64),
        sensitivity=stats.sensitivity,
        specificity=stats.specificity,
        precision=stats.precision,
        fall_out=1.0 - stats.specificity,
        accuracy=stats.accuracy,
        f1=stats.f1,
        iou=iou.to(torch.float64),
    )
