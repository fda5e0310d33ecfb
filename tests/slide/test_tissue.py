from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from camseg.slide import (
    ArrayReader,
    TissueFilter,
    laplacian_variance,
    slide_tissue_mask,
    sliding_window,
    tissue_fraction,
)


def test_laplacian_variance_matches_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (3, 3, 12, 17), generator=g, dtype=torch.uint8)
    ours = laplacian_variance(tiles).double()
    for i in range(3):
        rgb = tiles[i].double().numpy()
        grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        lap = ndimage.laplace(grey)[1:-1, 1:-1]  # valid region only
        assert float(ours[i]) == pytest.approx(lap.var(), rel=1e-4)


def test_laplacian_variance_detects_blur() -> None:
    g = torch.Generator().manual_seed(1)
    sharp = torch.rand(1, 3, 32, 32, generator=g)
    blurred = torch.nn.functional.avg_pool2d(sharp, 5, stride=1, padding=2)
    lv = laplacian_variance(torch.cat([sharp, blurred]))
    assert float(lv[0]) > 20 * float(lv[1])
    # float and uint8 inputs agree
    u8 = (sharp * 255).round().byte()
    assert float(laplacian_variance(u8)[0]) == pytest.approx(
        float(laplacian_variance(u8.float() / 255)[0]), rel=1e-5
    )


def test_laplacian_variance_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 3x3"):
        laplacian_variance(torch.zeros(1, 3, 2, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        laplacian_variance(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="float in"):
        laplacian_variance(torch.zeros(1, 3, 8, 8, dtype=torch.int32))


def test_tissue_fraction_by_hand() -> None:
    tiles = torch.full((2, 3, 4, 5), 250, dtype=torch.uint8)
    tiles[0, :, :2, :] = torch.tensor([180, 90, 160], dtype=torch.uint8).view(3, 1, 1)  # 10/20
    tiles[1] = torch.tensor([150, 60, 140], dtype=torch.uint8).view(3, 1, 1)  # all tissue
    torch.testing.assert_close(
        tissue_fraction(tiles, method="brightness"), torch.tensor([0.5, 1.0])
    )
    sat = tissue_fraction(tiles, method="saturation", sigma=0)
    torch.testing.assert_close(sat, torch.tensor([0.5, 1.0]))


def test_tissue_filter_rules() -> None:
    g = torch.Generator().manual_seed(0)
    texture = torch.randint(40, 200, (1, 3, 16, 16), generator=g, dtype=torch.uint8)
    tiles = texture.repeat(4, 1, 1, 1)
    tiles[1, :, 10:] = 250  # 10/16 = 62.5% tissue
    tiles[2, :, 6:] = 250  # 6/16 = 37.5% tissue: below 0.4
    tiles[3] = 120  # flat (out of focus) but "tissue" by brightness
    keep = TissueFilter(method="brightness")(tiles)
    assert keep.tolist() == [True, True, False, False]
    assert TissueFilter(method="brightness", min_focus=None)(tiles).tolist() == [
        True,
        True,
        False,
        True,
    ]
    half = TissueFilter(method="brightness", min_fraction=0.5, min_focus=None)
    assert half(tiles).tolist() == [True, True, False, True]
    assert TissueFilter(method="brightness", min_fraction=0.7, min_focus=None)(tiles).tolist() == [
        True,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "otsu"}, ValueError, "`method` to be one of"),
        ({"min_fraction": 1.5}, ValueError, r"`min_fraction` to lie in \[0.0, 1.0\]"),
        ({"min_focus": -1.0}, ValueError, "`min_focus`"),
    ],
)
def test_tissue_filter_bad_input(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        TissueFilter(**kwargs)


def test_sliding_window_with_tissue_filter_skips_glass() -> None:
    g = np.random.default_rng(0)
    img = np.full((16, 32, 3), 245, np.uint8)
    img[:, :16] = g.integers(40, 200, (16, 16, 3))  # tissue on the left half
    seen: list[int] = []

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(t.shape[0])
        return torch.ones(t.shape[0]), t[:, 0]

    out = sliding_window(
        ArrayReader(img), fn, tile=8, stride=8, tissue=TissueFilter(), progress=False
    )
    assert sum(seen) == 4 and sorted(out.coords[:, 0].tolist()) == [0, 0, 8, 8]
    assert bool((out.weight[:, 16:] == 0).all()) and bool((out.weight[:, :16] > 0).all())


def test_slide_tissue_mask_on_coarse_level() -> None:
    img = np.full((32, 32, 3), 245, np.uint8)
    img[8:24, 4:20] = (150, 70, 140)
    reader = ArrayReader([img, np.ascontiguousarray(img[::4, ::4])])
    mask = slide_tissue_mask(reader, method="brightness")
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert mask.nonzero()[:, 0].unique().tolist() == [2, 3, 4, 5]
    full = slide_tissue_mask(reader, level=0, method="saturation")
    assert int(full.sum()) > 0 and not bool(full[0, 0])
    with pytest.raises(TypeError, match="`level` to be an int or None"):
        slide_tissue_mask(reader, level=0.5)  # type: ignore[arg-type]
