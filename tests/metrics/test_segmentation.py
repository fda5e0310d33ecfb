import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from camseg.metrics import (
    METRIC_NAMES,
    SegmentationCounter,
    confusion_counts,
    dice,
    fall_out,
    iou,
    pixel_accuracy,
    pixel_auroc,
    pixel_average_precision,
    precision,
    recall,
    specificity,
    threshold_curve,
)

FUNCS = {
    "iou": iou,
    "dice": dice,
    "precision": precision,
    "recall": recall,
    "specificity": specificity,
    "fall_out": fall_out,
    "pixel_accuracy": pixel_accuracy,
}


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    # image 0: pred 3 px, target 2 px, overlap 1 -> TP 1, FP 2, FN 1, TN 12
    p0 = torch.zeros(4, 4, dtype=torch.bool)
    p0[0, :3] = True
    t0 = torch.zeros(4, 4, dtype=torch.bool)
    t0[0, 2] = True
    t0[1, 2] = True
    # image 1: both empty
    e = torch.zeros(4, 4, dtype=torch.bool)
    # image 2: pred empty, target 4 px
    t2 = torch.zeros(4, 4, dtype=torch.bool)
    t2[2:, 2:] = True
    return torch.stack([p0, e, e]), torch.stack([t0, e, t2])


def test_confusion_counts_hand() -> None:
    p, t = _masks()
    assert confusion_counts(p, t).tolist() == [[1, 2, 1, 12], [0, 0, 0, 16], [0, 0, 4, 12]]


def test_hand_values_and_empty_rules() -> None:
    p, t = _masks()
    assert iou(p, t, average="none").tolist() == pytest.approx([1 / 4, 1.0, 0.0])
    assert dice(p, t, average="none").tolist() == pytest.approx([2 / 5, 1.0, 0.0])
    assert precision(p, t, average="none").tolist() == pytest.approx([1 / 3, 1.0, 1.0])
    assert recall(p, t, average="none").tolist() == pytest.approx([1 / 2, 1.0, 0.0])
    assert specificity(p, t, average="none").tolist() == pytest.approx([12 / 14, 1.0, 1.0])
    assert fall_out(p, t, average="none").tolist() == pytest.approx([2 / 14, 0.0, 0.0])
    assert pixel_accuracy(p, t, average="none").tolist() == pytest.approx([13 / 16, 1.0, 12 / 16])
    # explicit empty rules
    assert iou(p, t, average="none", zero_division=0.0).tolist() == pytest.approx([1 / 4, 0.0, 0.0])
    v = iou(p, t, average="none", zero_division=float("nan"))
    assert math.isnan(float(v[1]))
    # macro excludes NaN, includes the others; micro adds counts
    assert float(iou(p, t, zero_division=float("nan"), average="macro")) == pytest.approx(1 / 8)
    assert float(iou(p, t, average="macro")) == pytest.approx((1 / 4 + 1 + 0) / 3)
    assert float(iou(p, t, average="micro")) == pytest.approx(1 / (1 + 2 + 5))
    assert float(dice(p, t, average="micro")) == pytest.approx(2 / (2 + 2 + 5))
    # micro over an all-empty batch uses `empty`
    e = torch.zeros(2, 3, 3, dtype=torch.bool)
    assert float(iou(e, e, average="micro")) == 1.0
    assert math.isnan(float(iou(e, e, average="macro", zero_division=float("nan"))))


def test_specificity_full_target_rule() -> None:
    full = torch.ones(1, 2, 2, dtype=torch.bool)
    assert float(specificity(full, full, average="none")[0]) == 1.0
    assert float(fall_out(full, full, average="none")[0]) == 0.0
    assert math.isnan(float(fall_out(full, full, average="none", zero_division=float("nan"))[0]))


def test_metrics_match_sklearn_per_image() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, 8, 8, generator=g) > 0.5
    t = torch.rand(6, 8, 8, generator=g) > 0.6
    for i in range(6):
        a, b = t[i].flatten().numpy(), p[i].flatten().numpy()
        assert float(iou(p, t, average="none")[i]) == pytest.approx(skm.jaccard_score(a, b))
        assert float(dice(p, t, average="none")[i]) == pytest.approx(skm.f1_score(a, b))
        assert float(precision(p, t, average="none")[i]) == pytest.approx(skm.precision_score(a, b))
        assert float(recall(p, t, average="none")[i]) == pytest.approx(skm.recall_score(a, b))
        assert float(pixel_accuracy(p, t, average="none")[i]) == pytest.approx(
            skm.accuracy_score(a, b)
        )
    a, b = t.flatten().numpy(), p.flatten().numpy()
    assert float(iou(p, t, average="micro")) == pytest.approx(skm.jaccard_score(a, b))


def _curve_reference(
    maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray
) -> dict[str, np.ndarray]:
    """The plain per-threshold NumPy loop, micro reduction."""
    out: dict[str, list[float]] = {"iou": [], "dice": [], "recall": [], "fall_out": []}
    for t in thresholds:
        pred = maps >= t
        tp = np.sum(pred & masks)
        fp = np.sum(pred & ~masks)
        fn = np.sum(~pred & masks)
        tn = np.sum(~pred & ~masks)
        out["iou"].append(tp / (tp + fp + fn) if tp + fp + fn else 1.0)
        out["dice"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        out["recall"].append(tp / (tp + fn) if tp + fn else 1.0)
        out["fall_out"].append(fp / (fp + tn) if fp + tn else 0.0)
    return {k: np.array(v) for k, v in out.items()}


def test_threshold_curve_equals_loop() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(5, 12, 12, generator=g)
    maps[0, :4] = 0.5  # values equal to a threshold: counted as positive (>=)
    masks = torch.rand(5, 12, 12, generator=g) > 0.7
    thr = torch.tensor([0.9, 0.0, 0.5, 0.5, 0.25, 1.0, 1.5, -1.0])  # unsorted, duplicates
    names = ("iou", "dice", "recall", "fall_out")
    curve = threshold_curve(maps, masks, thresholds=thr, metrics=names)
    ref = _curve_reference(maps.numpy(), masks.numpy(), thr.numpy())
    for k in names:
        np.testing.assert_allclose(curve[k].numpy(), ref[k], atol=1e-12)


@pytest.mark.parametrize("average", ["none", "macro", "micro"])
def test_threshold_curve_equals_metric_functions(average: str) -> None:
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(4, 10, 10, generator=g)
    masks = torch.rand(4, 10, 10, generator=g) > 0.5
    masks[1] = False
    maps[1] = 0.0  # both empty for thresholds > 0
    thr = torch.linspace(0, 1, 11)
    curve = threshold_curve(maps, masks, thresholds=thr, metrics=METRIC_NAMES, average=average)  # type: ignore[arg-type]
    for name, fn in FUNCS.items():
        expect = torch.stack(
            [fn(maps >= t, masks, average=average) for t in thr],
            dim=-1,  # type: ignore[operator]
        )
        torch.testing.assert_close(curve[name], expect)


def test_threshold_curve_int_thresholds_and_empty() -> None:
    maps = torch.tensor([[[0.9, 0.6], [0.3, 0.1]]])
    masks = torch.zeros(1, 2, 2, dtype=torch.bool)
    c = threshold_curve(maps, masks, thresholds=3, metrics=("iou",), zero_division=float("nan"))
    # thresholds 0, 0.5, 1: 4, 2, 0 predicted pixels against an empty target
    assert c["iou"][0] == 0 and c["iou"][1] == 0 and math.isnan(float(c["iou"][2]))
    c = threshold_curve(maps, masks, thresholds=3, metrics=("iou",))
    assert c["iou"].tolist() == [0.0, 0.0, 1.0]


def test_threshold_curve_float64_and_none_shape() -> None:
    maps = torch.rand(3, 4, 4, dtype=torch.float64)
    masks = maps > 0.5
    c = threshold_curve(maps, masks, thresholds=[0.5], average="none")
    assert c["iou"].tolist() == [[1.0], [1.0], [1.0]]


def test_pixel_auroc_and_ap_equal_sklearn() -> None:
    g = torch.Generator().manual_seed(3)
    maps = torch.round(torch.rand(4, 8, 8, generator=g) * 8) / 8  # ties
    masks = torch.rand(4, 8, 8, generator=g) > 0.6
    masks[3] = False
    y, s = masks.flatten().numpy(), maps.flatten().numpy()
    assert float(pixel_auroc(maps, masks)) == pytest.approx(skm.roc_auc_score(y, s))
    assert float(pixel_average_precision(maps, masks)) == pytest.approx(
        skm.average_precision_score(y, s)
    )
    per = pixel_auroc(maps, masks, average="none")
    per_ap = pixel_average_precision(maps, masks, average="none")
    for i in range(3):
        yi, si = masks[i].flatten().numpy(), maps[i].flatten().numpy()
        assert float(per[i]) == pytest.approx(skm.roc_auc_score(yi, si))
        assert float(per_ap[i]) == pytest.approx(skm.average_precision_score(yi, si))
    assert math.isnan(float(per[3])) and math.isnan(float(per_ap[3]))


def test_counter_equals_batch_functions() -> None:
    g = torch.Generator().manual_seed(4)
    p = torch.rand(10, 6, 6, generator=g) > 0.5
    t = torch.rand(10, 6, 6, generator=g) > 0.5
    t[3] = False
    p[3] = False
    counter = SegmentationCounter()
    for i in range(0, 10, 3):
        counter.update(p[i : i + 3], t[i : i + 3])
    assert len(counter) == 10
    for name, fn in FUNCS.items():
        for red in ("micro", "macro", "none"):
            torch.testing.assert_close(
                counter.compute(name, average=red),  # type: ignore[arg-type]
                fn(p, t, average=red),  # type: ignore[operator]
            )
    assert counter.counts.shape == (10, 4)
    counter.reset()
    assert len(counter) == 0
    with pytest.raises(ValueError, match="at least one `update`"):
        counter.compute("iou")


# ------------------------------------------------------------------ errors


def test_errors() -> None:
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    maps = torch.rand(2, 4, 4)
    with pytest.raises(TypeError, match=r"`preds` to be a torch\.bool mask"):
        iou(maps, m)
    with pytest.raises(ValueError, match="`preds` and `masks` to have the same shape"):
        iou(m, torch.zeros(2, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`masks` to be a tensor of shape \(B, H, W\)"):
        dice(m, m[0])
    with pytest.raises(ValueError, match="`average` to be one of"):
        iou(m, m, average="mean")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`zero_division` to be a number"):
        iou(m, m, zero_division=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`maps` to be finite"):
        threshold_curve(torch.full((2, 4, 4), float("nan")), m, thresholds=5)
    with pytest.raises(TypeError, match="`maps` to have a floating-point dtype"):
        threshold_curve(m, m, thresholds=5)
    with pytest.raises(TypeError, match=r"`masks` to be a torch\.bool mask"):
        threshold_curve(maps, maps, thresholds=5)
    with pytest.raises(ValueError, match="`maps` and `masks` to have the same shape"):
        threshold_curve(maps, m[:1], thresholds=5)
    with pytest.raises(ValueError, match="`metrics` to be one of"):
        threshold_curve(maps, m, thresholds=5, metrics=("jaccard",))
    with pytest.raises(TypeError, match="`metrics` to be a sequence"):
        threshold_curve(maps, m, thresholds=5, metrics="iou")
    with pytest.raises(ValueError, match="`thresholds` to be finite"):
        threshold_curve(maps, m, thresholds=[0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one value"):
        threshold_curve(maps, m, thresholds=[])
    with pytest.raises(ValueError, match="`thresholds` to be an int >= 2"):
        threshold_curve(maps, m, thresholds=1)
    with pytest.raises(TypeError, match="`thresholds` to be an int, a sequence"):
        threshold_curve(maps, m, thresholds="0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`thresholds` to hold numbers"):
        threshold_curve(maps, m, thresholds=["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="both positive and negative pixels"):
        pixel_auroc(maps, m)
    with pytest.raises(ValueError, match="at least one positive pixel"):
        pixel_average_precision(maps, m)
    with pytest.raises(ValueError, match="`metric` to be one of"):
        SegmentationCounter().compute("jaccard")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("kind", ["unit", "negative", "wide", "near", "constant"])
def test_threshold_curve_exact_on_hard_values(dtype: torch.dtype, kind: str) -> None:
    """Bucketing is exact for values on, and one ulp either side of, each threshold."""
    g = torch.Generator().manual_seed(5)
    thr = torch.tensor([0.0, 0.01, 0.1, 1 / 3, 0.5, 0.7, 0.7, 0.999, 1.0], dtype=dtype)
    if kind == "unit":
        maps = torch.rand(3, 9, 9, generator=g).to(dtype)
    elif kind == "negative":  # takes the bucketize path
        maps = (torch.rand(3, 9, 9, generator=g) * 2 - 0.5).to(dtype)
    elif kind == "wide":  # range too wide for the lookup table
        span = 8 if dtype == torch.float16 else 60
        maps = (10 ** (torch.rand(3, 9, 9, generator=g).double() * span - span / 2)).to(dtype)
    elif kind == "constant":
        maps = torch.full((3, 9, 9), 0.7, dtype=dtype)
    else:
        up = torch.nextafter(thr, torch.tensor(2.0, dtype=dtype))
        down = torch.nextafter(thr, torch.tensor(-2.0, dtype=dtype))
        vals = torch.cat([thr, up, down, torch.tensor([-0.0], dtype=dtype)])
        idx = torch.randint(0, vals.numel(), (3, 9, 9), generator=g)
        maps = vals[idx]
    masks = torch.rand(3, 9, 9, generator=g) > 0.5
    for red in ("micro", "none"):
        curve = threshold_curve(maps, masks, thresholds=thr, metrics=("iou", "recall"), average=red)
        for j, t in enumerate(thr):
            pred = maps >= t
            expect_iou = iou(pred, masks, average=red)
            expect_rec = recall(pred, masks, average=red)
            torch.testing.assert_close(curve["iou"][..., j], expect_iou, rtol=0, atol=0)
            torch.testing.assert_close(curve["recall"][..., j], expect_rec, rtol=0, atol=0)


@pytest.mark.parametrize("n_thr", [21, 201])  # uint8 and int32 lookup tables
def test_threshold_curve_many_images_chunks(n_thr: int) -> None:
    # more pixels than one chunk, so the chunked histogram is exercised
    g = torch.Generator().manual_seed(6)
    maps = torch.rand(16, 96, 96, generator=g)
    masks = torch.rand(16, 96, 96, generator=g) < maps
    thr = torch.linspace(0, 1, n_thr)
    curve = threshold_curve(maps, masks, thresholds=thr, metrics=("dice",), average="none")["dice"]
    some = range(0, n_thr, 5)
    expect = torch.stack([dice(maps >= thr[j], masks, average="none") for j in some], dim=1)
    torch.testing.assert_close(curve[:, list(some)], expect, rtol=0, atol=0)
