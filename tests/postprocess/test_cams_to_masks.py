from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from skimage.filters import threshold_otsu as sk_otsu
from skimage.morphology import remove_small_objects as sk_remove

from camseg.postprocess import (
    cams_to_masks,
    fill_holes,
    gate,
    remove_small_objects,
    threshold_otsu,
)


def _cams(b: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, 5, 5, generator=g) ** 3
    maps = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    return (maps - lo) / (hi - lo)


def test_equals_the_per_image_skimage_loop() -> None:
    maps = _cams(seed=1).double()
    probs = torch.rand(16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = cams_to_masks(maps, probs=probs, min_prob=0.5, min_size=12)
    for m, p, out in zip(maps.numpy(), probs.numpy(), got.numpy(), strict=True):
        if p < 0.5:
            assert not out.any()
            continue
        ref = sk_remove(m >= sk_otsu(m), max_size=11)
        np.testing.assert_array_equal(out, ref)


def test_composes_the_public_pieces() -> None:
    maps = _cams(seed=3)
    probs = torch.linspace(0, 1, 16)
    tissue = torch.ones(16, 32, 32, dtype=torch.bool)
    tissue[:, :, :4] = False
    got = cams_to_masks(maps, probs=probs, min_prob=0.3, tissue=tissue, min_size=5, fill_holes=True)
    t = threshold_otsu(maps)
    expected = maps >= t[:, None, None]
    expected &= (probs >= 0.3)[:, None, None]
    expected &= tissue
    expected = fill_holes(remove_small_objects(expected, 5))
    assert torch.equal(got, expected)
    # gating the maps first gives the same masks: zero maps are constant, hence empty
    gated = gate(maps, probs, min_prob=0.3)
    assert torch.equal(cams_to_masks(gated, tissue=tissue, min_size=5, fill_holes=True), expected)


def test_fixed_and_per_image_thresholds() -> None:
    maps = torch.tensor([[[0.2, 0.5, 0.9]], [[0.2, 0.5, 0.9]]])
    assert cams_to_masks(maps, threshold=0.5).tolist() == [[[False, True, True]]] * 2
    t = torch.tensor([0.1, 0.6])
    assert cams_to_masks(maps, threshold=t).tolist() == [
        [[True, True, True]],
        [[False, False, True]],
    ]


def test_constant_maps_give_empty_masks() -> None:
    maps = torch.zeros(3, 4, 4)
    maps[1] = 1.0
    maps[2, 1:3, 1:3] = 1.0
    out = cams_to_masks(maps)
    assert out.sum((1, 2)).tolist() == [0, 0, 4]


def test_fill_holes_step() -> None:
    maps = torch.zeros(1, 7, 7)
    maps[0, 1:6, 1:6] = 1.0
    maps[0, 3, 3] = 0.0
    assert cams_to_masks(maps, threshold=0.5).sum() == 24
    assert cams_to_masks(maps, threshold=0.5, fill_holes=True).sum() == 25
    ring = cams_to_masks(maps, threshold=0.5, fill_holes=True)
    ref = ndi.binary_fill_holes(maps[0].numpy() >= 0.5)
    np.testing.assert_array_equal(ring[0].numpy(), ref)


def test_empty_batch() -> None:
    out = cams_to_masks(torch.zeros(0, 4, 4), probs=torch.zeros(0))
    assert out.shape == (0, 4, 4) and out.dtype == torch.bool


def test_errors() -> None:
    maps = _cams(2, 8)
    with pytest.raises(ValueError, match=r"`maps` to be normalized maps with values in \[0, 1\]"):
        cams_to_masks(maps * 2)
    bad = maps.clone()
    bad[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="`maps` to be finite, but it holds 1 NaN"):
        cams_to_masks(bad)
    with pytest.raises(ValueError, match=r"`threshold` to lie in \[0.0, 1.0\], but got 1.5"):
        cams_to_masks(maps, threshold=1.5)
    with pytest.raises(ValueError, match=r"`threshold` to lie in \[0.0, 1.0\]"):
        cams_to_masks(maps, threshold=torch.tensor([0.5, -0.1]))
    with pytest.raises(ValueError, match="`threshold` and `maps` to have the same batch size"):
        cams_to_masks(maps, threshold=torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(TypeError, match="`threshold` to have a floating-point dtype"):
        cams_to_masks(maps, threshold=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`threshold` to be 'otsu', a number"):
        cams_to_masks(maps, threshold="li")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`threshold` to be 'otsu', a number"):
        cams_to_masks(maps, threshold=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`tissue` to be a torch\.bool mask"):
        cams_to_masks(maps, tissue=torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="`tissue` and `maps` to have the same shape"):
        cams_to_masks(maps, tissue=torch.ones(2, 8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="`probs` and `maps` to have the same batch size"):
        cams_to_masks(maps, probs=torch.ones(3))
    with pytest.raises(ValueError, match="`min_size` to be an int >= 0"):
        cams_to_masks(maps, min_size=-1)
    with pytest.raises(TypeError, match="`fill_holes` to be a bool"):
        cams_to_masks(maps, fill_holes=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`min_prob` to lie in \[0.0, 1.0\]"):
        cams_to_masks(maps, probs=torch.ones(2), min_prob=1.2)
    with pytest.raises(TypeError, match="`maps` to have a floating-point dtype"):
        cams_to_masks(maps > 0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_compare_like_torch(dtype: torch.dtype) -> None:
    maps = _cams(4, 12, seed=5).to(dtype)
    assert torch.equal(cams_to_masks(maps, threshold=0.5), maps >= 0.5)
    t = threshold_otsu(maps)
    assert torch.equal(
        cams_to_masks(maps, min_size=3), remove_small_objects(maps >= t[:, None, None], 3)
    )
