from __future__ import annotations

import numpy as np
import pytest
import torch

from camseg.postprocess import tissue_mask
from camseg.slide import SyntheticSlide, make_slide


@pytest.fixture(scope="module")
def slide() -> SyntheticSlide:
    return make_slide(height=400, width=520, tumors=2, seed=3, mpp=0.5, pool=32)


def test_make_slide_structure(slide: SyntheticSlide) -> None:
    assert slide.image.shape == (400, 520, 3) and slide.image.dtype == np.uint8
    assert slide.tumor.dtype == torch.bool and slide.tumor.shape == (400, 520)
    assert slide.mpp == 0.5
    assert not bool((slide.tumor & ~slide.tissue).any())
    assert 0.01 < float(slide.tumor.float().mean()) < 0.5
    assert 0.3 < float(slide.tissue.float().mean()) < 0.9
    # glass is background by both rules; the section is tissue by saturation
    img = torch.from_numpy(slide.image).permute(2, 0, 1)[None]
    assert not bool(tissue_mask(img, method="brightness")[0][~slide.tissue].any())
    sat = tissue_mask(img, method="saturation")[0]  # blurred: may leak a few pixels
    near = torch.nn.functional.max_pool2d(slide.tissue[None].float(), 9, 1, 4)[0] > 0
    assert not bool(sat[~near].any())
    assert float(sat[slide.tissue].float().mean()) > 0.8


def test_make_slide_tumour_pixels_look_different(slide: SyntheticSlide) -> None:
    img = torch.from_numpy(slide.image).float()
    # tumour nuclei are large and haematoxylin-dark: lower red/green than normal tissue
    normal = slide.tissue & ~slide.tumor
    assert float(img[slide.tumor].mean()) < float(img[normal].mean())


@pytest.mark.slow
def test_make_slide_deterministic(slide: SyntheticSlide) -> None:
    again = make_slide(height=400, width=520, tumors=2, seed=3, mpp=0.5, pool=32)
    assert np.array_equal(again.image, slide.image) and torch.equal(again.tumor, slide.tumor)
    other = make_slide(height=400, width=520, tumors=2, seed=4, mpp=0.5, pool=32)
    assert not np.array_equal(other.image, slide.image)
    assert not bool(make_slide(height=400, width=520, tumors=0, seed=3, pool=32).tumor.any())


def test_slide_reader_pyramid(slide: SyntheticSlide) -> None:
    reader = slide.reader(levels=3)
    assert reader.level_count == 3 and reader.mpp == 0.5
    assert reader.dimensions(2) == (130, 100) and reader.downsample(2) == 4.0
    block = slide.image[:2, :2].reshape(4, 3).astype(float).mean(0)
    np.testing.assert_allclose(reader.read(1, 0, 0, 1, 1)[0, 0], block, atol=0.51)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"height": 100}, ValueError, "`height` to be an int >= 384"),
        ({"width": 300.0}, TypeError, "`width` to be an int"),
        ({"tumors": -1}, ValueError, "`tumors`"),
        ({"mpp": 0}, ValueError, "`mpp` to be a number > 0"),
        ({"patch": 8}, ValueError, "`patch`"),
        ({"pool": 2}, ValueError, "`pool` to be an int >= 4"),
    ],
)
def test_make_slide_bad_input(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        make_slide(**{"height": 400, "width": 520, **kwargs})
