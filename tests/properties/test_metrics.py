"""Property-based tests of camseg.metrics."""

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from camseg.metrics import (
    aggregate,
    confusion_counts,
    dice,
    iou,
    pixel_accuracy,
    precision,
    recall,
    roc_auc,
    threshold_curve,
)

SETTINGS = settings(deadline=None, max_examples=40)

shapes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(shapes)
    a = draw(hnp.arrays(np.bool_, shape))
    b = draw(hnp.arrays(np.bool_, shape))
    return torch.from_numpy(a), torch.from_numpy(b)


@st.composite
def maps_and_masks(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(shapes)
    levels = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])  # ties and exact thresholds
    maps = draw(hnp.arrays(np.float32, shape, elements=levels))
    masks = draw(hnp.arrays(np.bool_, shape))
    return torch.from_numpy(maps), torch.from_numpy(masks)


@SETTINGS
@given(mask_pairs())
def test_iou_dice_identity_symmetry_range(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    a, b = pair
    assert (iou(a, a, average="none") == 1).all() and (dice(a, a, average="none") == 1).all()
    torch.testing.assert_close(iou(a, b, average="none"), iou(b, a, average="none"))
    torch.testing.assert_close(dice(a, b, average="none"), dice(b, a, average="none"))
    for fn in (iou, dice, precision, recall, pixel_accuracy):
        for red in ("none", "micro", "macro"):
            v = fn(a, b, average=red)  # type: ignore[operator]
            assert ((v >= 0) & (v <= 1)).all()
    # Dice = 2 IoU / (1 + IoU), image by image
    j = iou(a, b, average="none")
    torch.testing.assert_close(dice(a, b, average="none"), 2 * j / (1 + j))
    # IoU <= Dice
    assert (j <= dice(a, b, average="none") + 1e-12).all()


@SETTINGS
@given(mask_pairs(), st.sampled_from([1.0, 0.0, math.nan, 0.5]))
def test_zero_division_rule_honoured(pair: tuple[torch.Tensor, torch.Tensor], empty: float) -> None:
    a, b = pair
    both_empty = ~a.flatten(1).any(1) & ~b.flatten(1).any(1)
    v = iou(a, b, average="none", zero_division=empty)
    d = dice(a, b, average="none", zero_division=empty)
    for x in (v, d):
        if math.isnan(empty):
            assert torch.isnan(x[both_empty]).all()
        else:
            assert (x[both_empty] == empty).all()
        assert not torch.isnan(x[~both_empty]).any()
        assert ((x[~both_empty] >= 0) & (x[~both_empty] <= 1)).all()
    macro = iou(a, b, zero_division=empty, average="macro")
    kept = v[~torch.isnan(v)]
    if kept.numel():
        assert float(macro) == float(kept.mean())
    else:
        assert math.isnan(float(macro))


@SETTINGS
@given(mask_pairs(), st.randoms(use_true_random=False))
def test_batch_order_invariance(pair: tuple[torch.Tensor, torch.Tensor], rnd) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    perm = list(range(a.shape[0]))
    rnd.shuffle(perm)
    p = torch.tensor(perm)
    for fn in (iou, dice, precision, recall):
        torch.testing.assert_close(fn(a[p], b[p], average="none"), fn(a, b, average="none")[p])  # type: ignore[operator]
        for red in ("micro", "macro"):
            torch.testing.assert_close(
                fn(a[p], b[p], average=red),  # type: ignore[operator]
                fn(a, b, average=red),  # type: ignore[operator]
            )
    assert confusion_counts(a, b).sum(1).eq(a[0].numel()).all()


@SETTINGS
@given(maps_and_masks())
def test_threshold_curve_matches_thresholding_and_is_monotone(
    data: tuple[torch.Tensor, torch.Tensor],
) -> None:
    maps, masks = data
    thr = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0])
    curve = threshold_curve(maps, masks, thresholds=thr, metrics=("iou", "recall"), average="none")
    for j, t in enumerate(thr):
        pred = maps >= t
        torch.testing.assert_close(curve["iou"][:, j], iou(pred, masks, average="none"))
        # a higher threshold gives a subset mask
        if j:
            assert not (pred & ~(maps >= thr[j - 1])).any()
    # recall can only fall as the threshold rises
    assert (curve["recall"].diff(dim=1) <= 1e-12).all()


@SETTINGS
@given(
    hnp.arrays(np.float64, st.integers(2, 30), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])),
    st.data(),
)
def test_roc_auc_properties(scores: np.ndarray, data: st.DataObject) -> None:
    n = scores.shape[0]
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    labels[0], labels[1] = 0, 1
    s, y = torch.from_numpy(scores), torch.from_numpy(labels)
    auc = float(roc_auc(s, y))
    assert 0 <= auc <= 1
    # reversing the scores mirrors the curve
    assert abs(float(roc_auc(-s, y)) - (1 - auc)) < 1e-12
    # invariant under a strictly increasing transform
    assert abs(float(roc_auc(torch.exp(3 * s), y)) - auc) < 1e-12


@SETTINGS
@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 1)),
    st.data(),
    st.integers(1, 5),
)
def test_aggregate_orderings(values: np.ndarray, data: st.DataObject, k: int) -> None:
    groups = data.draw(hnp.arrays(np.int64, values.shape[0], elements=st.integers(0, 5)))
    v, g = torch.from_numpy(values), torch.from_numpy(groups)
    _, mx = aggregate(v, g, method="max")
    _, top = aggregate(v, g, method="topk_mean", k=k)
    _, mean = aggregate(v, g, method="mean")
    assert (mx + 1e-12 >= top).all() and (top + 1e-12 >= mean).all()
    perm = torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))
    for method in ("max", "mean", "sum", "topk_mean", "fraction_above"):
        ids1, a1 = aggregate(v, g, method=method, k=k)  # type: ignore[arg-type]
        ids2, a2 = aggregate(v[perm], g[perm], method=method, k=k)  # type: ignore[arg-type]
        assert torch.equal(ids1, ids2)
        torch.testing.assert_close(a1, a2)


@SETTINGS
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
        elements=st.floats(0, 4, width=32),
    ),
    hnp.arrays(np.float32, st.integers(1, 12), elements=st.floats(-1, 5, width=32)),
    st.data(),
)
def test_threshold_curve_exact_for_any_thresholds(
    maps: np.ndarray, thr: np.ndarray, data: st.DataObject
) -> None:
    # values drawn partly from the thresholds themselves, so ties are frequent
    pick = data.draw(hnp.arrays(np.bool_, maps.shape))
    idx = data.draw(hnp.arrays(np.int64, maps.shape, elements=st.integers(0, thr.size - 1)))
    maps = np.where(pick, np.clip(thr[idx], 0, None), maps).astype(np.float32)
    masks = torch.from_numpy(data.draw(hnp.arrays(np.bool_, maps.shape)))
    m, t = torch.from_numpy(maps), torch.from_numpy(thr)
    curve = threshold_curve(m, masks, thresholds=t, metrics=("iou", "recall"), average="none")
    for j in range(t.numel()):
        pred = m >= t[j]
        torch.testing.assert_close(
            curve["iou"][:, j], iou(pred, masks, average="none"), rtol=0, atol=0
        )
        torch.testing.assert_close(
            curve["recall"][:, j], recall(pred, masks, average="none"), rtol=0, atol=0
        )
