from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.exposure import histogram
from skimage.filters import threshold_otsu as sk_otsu

from camseg.postprocess import (
    best_threshold,
    threshold_fixed,
    threshold_otsu,
    threshold_percentile,
)


def _smooth_maps(b: int, h: int, w: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, 6, 6, generator=g, dtype=dtype)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False).squeeze(1)


def _bimodal_maps(b: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    fg = torch.rand(b, 30, 31, generator=g) < 0.3
    hi = 2.0 + 0.1 * torch.randn(b, 30, 31, generator=g, dtype=dtype)
    lo = 0.3 * torch.randn(b, 30, 31, generator=g, dtype=dtype)
    return torch.where(fg, hi, lo)


def _sk_variance(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's between-class variance per candidate (as threshold_otsu computes it)."""
    counts, centres = histogram(image.reshape(-1), 256, source_range="image")
    counts = counts.astype("float32")
    w1 = np.cumsum(counts)
    w2 = np.cumsum(counts[::-1])[::-1]
    m1 = np.cumsum(counts * centres) / w1
    m2 = (np.cumsum((counts * centres)[::-1]) / w2[::-1])[::-1]
    return w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2, centres


def _assert_matches_skimage(maps: torch.Tensor) -> int:
    """Equal to skimage per image, except on float near-ties; returns the number of those."""
    ours = threshold_otsu(maps).numpy()
    ties = 0
    for image, t in zip(maps.numpy(), ours, strict=True):
        ref = sk_otsu(image)
        if t == ref:
            continue
        # a different pick is allowed only where skimage's variances tie to float rounding
        variance, centres = _sk_variance(image)
        (pick,) = np.nonzero(centres == t)[0]
        assert variance[pick] >= variance.max() * (1 - 1e-6)
        ties += 1
    return ties


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_otsu_matches_skimage_on_smooth_random_and_bimodal_maps(dtype: torch.dtype) -> None:
    ties = 0
    total = 0
    for seed in range(3):
        for maps in (
            _smooth_maps(48, 40, 33, seed, dtype),
            _bimodal_maps(48, seed, dtype),
            torch.rand(48, 20, 20, generator=torch.Generator().manual_seed(seed), dtype=dtype),
        ):
            ties += _assert_matches_skimage(maps)
            total += maps.shape[0]
    assert ties <= total // 100


def test_otsu_bimodal_threshold_separates_the_modes() -> None:
    g = torch.Generator().manual_seed(0)
    fg = torch.rand(8, 30, 31, generator=g) < 0.3
    maps = torch.where(fg, 2.0, 0.0) + 0.1 * torch.randn(8, 30, 31, generator=g)
    t = threshold_otsu(maps)
    # the variance is flat across the empty gap; the first maximum sits at its lower end
    assert bool(((t > 0.2) & (t < 1.6)).all())
    # only pixels of the last background bin above its centre can be misclassified
    wrong = (maps >= t[:, None, None]) != fg
    assert int(wrong.sum()) <= 8


def test_otsu_constant_map_returns_its_value_like_skimage() -> None:
    maps = torch.zeros(3, 4, 5)
    maps[1] = 0.7
    maps[2, 0, 0] = 1.0  # not constant
    t = threshold_otsu(maps)
    assert t[0].item() == 0.0
    assert t[1].item() == pytest.approx(0.7)
    assert t[1].item() == sk_otsu(maps[1].numpy())
    assert t[2].item() == sk_otsu(maps[2].numpy())


def test_otsu_hand_worked_two_values() -> None:
    # values {0, 1}: bins of width 1/4, centres 1/8, 3/8, 5/8, 7/8; the best split
    # leaves bin 0 alone, so t = 1/8 and `>=` selects exactly the ones
    maps = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    t = threshold_otsu(maps, nbins=4)
    assert t.tolist() == [0.125]
    assert sk_otsu(maps[0].numpy(), nbins=4) == pytest.approx(0.125)


def test_otsu_dtype_device_and_empty_batch() -> None:
    assert threshold_otsu(torch.rand(2, 3, 3, dtype=torch.float64)).dtype == torch.float64
    assert threshold_otsu(torch.zeros(0, 3, 3)).shape == (0,)


def test_otsu_float16_maps_keep_their_dtype() -> None:
    maps = _smooth_maps(4, 16, 16, 0, torch.float32)
    t16 = threshold_otsu(maps.half())
    assert t16.dtype == torch.float16
    torch.testing.assert_close(t16.float(), threshold_otsu(maps.half().float()), atol=0, rtol=1e-3)


@pytest.mark.parametrize(
    ("maps", "err", "match"),
    [
        (torch.rand(2, 3), ValueError, r"`maps` to be a tensor of shape \(B, H, W\)"),
        (torch.ones(2, 3, 3, dtype=torch.int64), TypeError, "floating-point dtype"),
        ([[0.1]], TypeError, "`maps` to be a torch.Tensor"),
        (torch.zeros(2, 0, 3), ValueError, "at least one pixel"),
    ],
)
def test_otsu_rejects_bad_maps(maps: object, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        threshold_otsu(maps)  # type: ignore[arg-type]


def test_otsu_rejects_nan_and_inf_maps() -> None:
    maps = torch.rand(2, 4, 4)
    maps[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="`maps` to be finite, but it holds 1 NaN"):
        threshold_otsu(maps)
    maps[1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="`maps` to be finite"):
        threshold_otsu(maps)


def test_otsu_rejects_bad_nbins() -> None:
    with pytest.raises(ValueError, match="`nbins` to be an int >= 2"):
        threshold_otsu(torch.rand(1, 3, 3), nbins=1)
    with pytest.raises(TypeError, match="`nbins` to be an int"):
        threshold_otsu(torch.rand(1, 3, 3), nbins=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", [0, 12.5, 50, 73.3, 90, 100])
def test_percentile_matches_numpy(q: float) -> None:
    maps = torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = threshold_percentile(maps, q=q)
    ref = np.percentile(maps.reshape(5, -1).numpy(), q, axis=1)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


def test_percentile_hand_values_and_errors() -> None:
    maps = torch.tensor([[[4.0, 1.0, 3.0, 2.0]]])
    assert threshold_percentile(maps, q=50).tolist() == [2.5]
    assert threshold_percentile(maps, q=0).tolist() == [1.0]
    assert threshold_percentile(maps, q=100).tolist() == [4.0]
    with pytest.raises(ValueError, match=r"`q` to lie in \[0.0, 100.0\], but got 101"):
        threshold_percentile(maps, q=101)
    with pytest.raises(TypeError, match="`q` to be a number"):
        threshold_percentile(maps, q="50")  # type: ignore[arg-type]


def test_fixed_threshold_and_errors() -> None:
    t = threshold_fixed(torch.rand(3, 2, 2, dtype=torch.float64), value=0.25)
    assert t.dtype == torch.float64
    assert t.tolist() == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="`value` to be a finite number"):
        threshold_fixed(torch.rand(1, 2, 2), value=float("nan"))
    with pytest.raises(TypeError, match="`value` to be a number"):
        threshold_fixed(torch.rand(1, 2, 2), value=None)  # type: ignore[arg-type]


def _brute_force_best(
    maps: torch.Tensor, masks: torch.Tensor, cands: torch.Tensor, metric: str, reduction: str
) -> tuple[float, float]:
    best_t, best_s = 0.0, -1.0
    for t in cands.tolist():
        pred = maps >= t
        inter = (pred & masks).sum((1, 2)).double()
        union = (pred | masks).sum((1, 2)).double()
        total = pred.sum((1, 2)).double() + masks.sum((1, 2)).double()
        if reduction == "micro":
            inter, union, total = inter.sum(), union.sum(), total.sum()
        if metric == "iou":
            score = torch.where(union > 0, inter / union.clamp_min(1), 1.0)
        else:
            score = torch.where(total > 0, 2 * inter / total.clamp_min(1), 1.0)
        s = float(score.mean())
        if s > best_s + 1e-12:
            best_t, best_s = t, s
    return best_t, best_s


@pytest.mark.parametrize("metric", ["iou", "dice"])
@pytest.mark.parametrize("reduction", ["micro", "macro"])
def test_best_threshold_equals_brute_force_loop(metric: str, reduction: str) -> None:
    g = torch.Generator().manual_seed(3)
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 3:10] = True
    masks[5] = False  # an image without tumour
    maps = (0.6 * masks.float() + 0.5 * torch.rand(6, 16, 16, generator=g)).clamp(0, 1)
    t, score = best_threshold(maps, masks, metric=metric, thresholds=51, average=reduction)  # type: ignore[arg-type]
    ref_t, ref_s = _brute_force_best(maps, masks, torch.linspace(0, 1, 51), metric, reduction)
    assert t.ndim == 0 and score.ndim == 0
    assert float(t) == pytest.approx(ref_t)
    assert float(score) == pytest.approx(ref_s)


def test_best_threshold_custom_candidates_and_ties_to_lowest() -> None:
    maps = torch.tensor([[[0.9, 0.8, 0.2, 0.1]]])
    masks = torch.tensor([[[True, True, False, False]]])
    t, s = best_threshold(maps, masks, thresholds=torch.tensor([0.7, 0.3, 0.5, 0.95]))
    assert float(t) == pytest.approx(0.3)  # 0.3, 0.5 and 0.7 all score 1
    assert float(s) == 1.0


def test_best_threshold_errors() -> None:
    maps = torch.rand(2, 4, 4)
    masks = maps > 0.5
    with pytest.raises(TypeError, match=r"`masks` to be a torch\.bool mask"):
        best_threshold(maps, masks.float())
    with pytest.raises(ValueError, match="same shape"):
        best_threshold(maps, masks[:, :3])
    with pytest.raises(ValueError, match=r"`maps` to be normalized maps with values in \[0, 1\]"):
        best_threshold(maps * 3, masks)
    with pytest.raises(ValueError, match=r"`thresholds` to lie in \[0.0, 1.0\]"):
        best_threshold(maps, masks, thresholds=torch.tensor([0.5, 1.5]))
    with pytest.raises(TypeError, match="`thresholds` to be an int or a 1-D tensor"):
        best_threshold(maps, masks, thresholds=[0.5])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`thresholds` to be an int >= 2"):
        best_threshold(maps, masks, thresholds=1)
    with pytest.raises(ValueError, match="`metric` to be one of 'iou', 'dice'"):
        best_threshold(maps, masks, metric="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`average` to be one of"):
        best_threshold(maps, masks, average="none")  # type: ignore[arg-type]
