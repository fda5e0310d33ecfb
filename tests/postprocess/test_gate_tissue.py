from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from skimage.color import rgb2hsv

from camseg.postprocess import gate, tissue_mask


def test_gate_zeroes_only_the_negatives_for_2d_and_multi_target_maps() -> None:
    maps = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0)) + 0.1
    probs = torch.tensor([0.9, 0.49, 0.5])
    out = gate(maps, probs)
    assert torch.equal(out[0], maps[0]) and torch.equal(out[2], maps[2])
    assert out[1].abs().sum() == 0
    multi = maps[:, None].expand(3, 2, 4, 5)
    assert torch.equal(gate(multi, probs, min_prob=0.95).abs().sum((1, 2, 3)), torch.zeros(3))
    assert torch.equal(gate(maps, probs, min_prob=0.0), maps)


def test_gate_errors() -> None:
    maps = torch.rand(2, 3, 3)
    with pytest.raises(ValueError, match="`probs` and `maps` to have the same batch size"):
        gate(maps, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`probs` to lie in \[0.0, 1.0\]"):
        gate(maps, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"`probs` to be a tensor of shape \(B,\)"):
        gate(maps, torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="`probs` to be finite"):
        gate(maps, torch.tensor([0.5, float("nan")]))
    with pytest.raises(TypeError, match="`probs` to have a floating-point dtype"):
        gate(maps, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"`min_prob` to lie in \[0.0, 1.0\]"):
        gate(maps, torch.tensor([0.5, 0.5]), min_prob=2.0)
    with pytest.raises(TypeError, match="`maps` to have a floating-point dtype"):
        gate(maps > 0.5, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`maps` to be a tensor of shape \(B, H, W\)"):
        gate(torch.rand(2), torch.tensor([0.5, 0.5]))


def _he_like(b: int = 3, h: int = 20, w: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pink = torch.tensor([0.85, 0.55, 0.75])[None, :, None, None]
    glass = torch.tensor([0.95, 0.95, 0.94])[None, :, None, None]
    region = torch.rand(b, 1, h // 4, w // 4, generator=g) > 0.5
    region = torch.nn.functional.interpolate(region.float(), size=(h, w)) > 0.5
    img = torch.where(region, pink, glass) + 0.04 * torch.randn(b, 3, h, w, generator=g)
    return img.clamp(0, 1)


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.5])
def test_tissue_saturation_equals_skimage_hsv_and_scipy_blur(sigma: float) -> None:
    images = _he_like().double()
    got = tissue_mask(images, sigma=sigma)
    for m, img in zip(got.numpy(), images.numpy(), strict=True):
        sat = rgb2hsv(img.transpose(1, 2, 0))[..., 1]
        if sigma:
            sat = ndi.gaussian_filter(sat, sigma, mode="nearest", truncate=4.0)
        np.testing.assert_array_equal(m, sat > 0.07)


def test_tissue_brightness_rule_and_uint8_input() -> None:
    img = torch.zeros(1, 3, 1, 3, dtype=torch.uint8)
    img[0, :, 0, 0] = torch.tensor([255, 255, 255], dtype=torch.uint8)  # glass
    img[0, :, 0, 1] = torch.tensor([200, 200, 200], dtype=torch.uint8)  # mean 200: tissue
    img[0, :, 0, 2] = torch.tensor([201, 200, 200], dtype=torch.uint8)  # mean > 200: background
    assert tissue_mask(img, method="brightness")[0, 0].tolist() == [False, True, False]
    # uint8 and float inputs agree
    images = _he_like()
    as_u8 = (images * 255).round().to(torch.uint8)
    assert torch.equal(tissue_mask(as_u8, sigma=0), tissue_mask(as_u8.float() / 255, sigma=0))


def test_tissue_grey_and_black_pixels_are_background() -> None:
    img = torch.zeros(1, 3, 2, 2)
    img[0, :, 0, 0] = 0.5  # grey: saturation 0
    img[0, :, 0, 1] = torch.tensor([0.6, 0.2, 0.5])  # stained
    out = tissue_mask(img, sigma=0, threshold=0.1)
    assert out[0].tolist() == [[False, True], [False, False]]


def test_tissue_errors() -> None:
    images = _he_like(1, 8, 8)
    with pytest.raises(ValueError, match=r"`images` to be RGB images of shape \(B, 3, H, W\)"):
        tissue_mask(images[:, :2])
    with pytest.raises(ValueError, match=r"`images` to lie in \[0.0, 1.0\]"):
        tissue_mask(images * 255)
    with pytest.raises(TypeError, match="`images` to be float in \\[0, 1\\] or uint8"):
        tissue_mask(images.to(torch.int32))
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`images` to be finite"):
        tissue_mask(bad)
    with pytest.raises(ValueError, match="`method` to be one of 'saturation', 'brightness'"):
        tissue_mask(images, method="otsu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`threshold` to lie in \[0.0, 1.0\]"):
        tissue_mask(images, threshold=200)
    with pytest.raises(TypeError, match="`threshold` to be a number or None"):
        tissue_mask(images, threshold="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`sigma` to be a finite number >= 0"):
        tissue_mask(images, sigma=-1.0)
