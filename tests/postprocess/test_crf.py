from __future__ import annotations

import pytest
import torch

from camseg.functional import gaussian_blur
from camseg.postprocess import crf_refine


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def _textured_squares(b: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Purple 'tumour' rectangles on pink 'stroma', both with pixel noise as texture."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(b, size, size, dtype=torch.bool)
    for i in range(b):
        y0, x0 = 8 + 3 * i, 10 + 2 * i
        masks[i, y0 : y0 + 20, x0 : x0 + 18] = True
    pink = torch.tensor([0.9, 0.6, 0.8])[None, :, None, None]
    purple = torch.tensor([0.5, 0.3, 0.7])[None, :, None, None]
    images = torch.where(masks[:, None], purple, pink)
    images = (images + 0.05 * torch.randn(b, 3, size, size, generator=g)).clamp(0, 1)
    return images, masks


@pytest.mark.parametrize("bias", [0.0, 0.25])
def test_crf_sharpens_blurry_maps_towards_colour_edges(bias: float) -> None:
    images, masks = _textured_squares()
    blurry = gaussian_blur(masks.float()[:, None], 4.0)[:, 0]
    blurry = (bias + (1 - bias) * blurry).clamp(0, 1)  # bias > 0: a map that spills over
    refined = crf_refine(images, blurry)
    before = _iou(blurry >= 0.5, masks)
    after = _iou(refined >= 0.5, masks)
    assert after > before + 0.1
    assert after > 0.97
    assert refined.min() >= 0 and refined.max() <= 1


def test_crf_without_pairwise_terms_returns_the_input() -> None:
    images, masks = _textured_squares(2, 16)
    probs = gaussian_blur(masks.float()[:, None], 2.0)[:, 0].double()
    out = crf_refine(images, probs, w_appearance=0.0, w_smooth=0.0)
    torch.testing.assert_close(out, probs)
    assert out.dtype == torch.float64
    assert torch.equal(crf_refine(images, probs, iterations=0), probs)


def test_crf_one_update_by_hand() -> None:
    # a 1x3 image, uniform colour, smoothness kernel only, window 3: the middle pixel
    # hears its two neighbours with weight w exp(-1 / (2 theta^2))
    images = torch.zeros(1, 3, 1, 3)
    probs = torch.tensor([[[0.9, 0.5, 0.9]]], dtype=torch.float64)
    out = crf_refine(
        images, probs, iterations=1, kernel_size=3, w_appearance=0.0, w_smooth=1.0, theta_gamma=1.0
    )
    k = torch.exp(torch.tensor(-0.5, dtype=torch.float64))
    mid = torch.sigmoid(0 + 2 * k * (2 * 0.9 - 1))
    edge = torch.sigmoid(torch.logit(torch.tensor(0.9, dtype=torch.float64)) + k * 0.0)
    torch.testing.assert_close(out[0, 0], torch.stack([edge, mid, edge]))


def test_crf_is_batch_independent_and_chunking_invariant(monkeypatch) -> None:
    images, masks = _textured_squares(3, 24)
    probs = gaussian_blur(masks.float()[:, None], 3.0)[:, 0]
    together = crf_refine(images, probs)
    single = torch.cat([crf_refine(images[i : i + 1], probs[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, single)
    import camseg.postprocess._crf as crf_module

    monkeypatch.setattr(crf_module, "_CHUNK_ELEMENTS", 1)  # one image per chunk
    torch.testing.assert_close(crf_refine(images, probs), together)


def test_crf_accepts_uint8_images() -> None:
    images, masks = _textured_squares(2, 16)
    probs = gaussian_blur(masks.float()[:, None], 2.0)[:, 0]
    as_u8 = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(crf_refine(as_u8, probs), crf_refine(as_u8.float() / 255, probs))


def test_crf_errors() -> None:
    images, masks = _textured_squares(2, 16)
    probs = masks.float()
    with pytest.raises(ValueError, match="`probs` to have shape \\(B, H, W\\) matching `images`"):
        crf_refine(images, probs[:, :8])
    with pytest.raises(ValueError, match=r"`probs` to lie in \[0.0, 1.0\]"):
        crf_refine(images, probs * 2)
    bad = probs.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`probs` to be finite"):
        crf_refine(images, bad)
    with pytest.raises(TypeError, match="`probs` to have a floating-point dtype"):
        crf_refine(images, masks)
    with pytest.raises(ValueError, match="`kernel_size` to be odd, but got 4"):
        crf_refine(images, probs, kernel_size=4)
    with pytest.raises(ValueError, match="`kernel_size` to be an int >= 3"):
        crf_refine(images, probs, kernel_size=1)
    with pytest.raises(ValueError, match="`iterations` to be an int >= 0"):
        crf_refine(images, probs, iterations=-1)
    with pytest.raises(ValueError, match="`theta_beta` to be a finite number > 0"):
        crf_refine(images, probs, theta_beta=0.0)
    with pytest.raises(TypeError, match="`theta_alpha` to be a number > 0"):
        crf_refine(images, probs, theta_alpha="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`w_smooth` to be a finite number >= 0"):
        crf_refine(images, probs, w_smooth=-1.0)
    with pytest.raises(ValueError, match=r"`images` to lie in \[0.0, 1.0\]"):
        crf_refine(images * 2, probs)
