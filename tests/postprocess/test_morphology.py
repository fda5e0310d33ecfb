from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.morphology as skm
import torch

from camseg.postprocess import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    fill_holes,
    keep_largest_component,
    remove_small_objects,
)
from camseg.postprocess._morphology import footprint_rectangles


def _random_masks(b: int = 12, h: int = 17, w: int = 23, p: float = 0.55, seed: int = 0):
    return torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) > p


def _footprint(radius: int, kind: str) -> np.ndarray:
    if kind == "disk":
        return skm.disk(radius).astype(bool)
    return np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)


OPS: list[tuple[Callable[..., torch.Tensor], str]] = [
    (binary_dilation, "dilation"),
    (binary_erosion, "erosion"),
    (binary_opening, "opening"),
    (binary_closing, "closing"),
]


@pytest.mark.parametrize(("ours", "name"), OPS)
@pytest.mark.parametrize("kind", ["disk", "square"])
@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_morphology_equals_skimage_including_borders(
    ours, name: str, kind: str, radius: int
) -> None:
    masks = _random_masks()
    # a mask touching every border, where the border rule matters most
    masks[0] = True
    masks[0, 5:9, 6:12] = False
    fp = _footprint(radius, kind)
    got = ours(masks, radius=radius, footprint=kind).numpy()
    ref_fn = getattr(skm, name)
    ref = np.stack([ref_fn(m, fp, mode="ignore") for m in masks.numpy()])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("radius", range(0, 9))
def test_disk_rectangles_cover_exactly_the_skimage_disk(radius: int) -> None:
    size = 2 * radius + 1
    union = np.zeros((size, size), dtype=bool)
    for h, w in footprint_rectangles(radius, "disk"):
        union[radius - h : radius + h + 1, radius - w : radius + w + 1] = True
    np.testing.assert_array_equal(union, skm.disk(radius).astype(bool))


def test_erosion_keeps_full_mask_and_dilation_keeps_empty_mask() -> None:
    full = torch.ones(2, 5, 6, dtype=torch.bool)
    empty = torch.zeros(2, 5, 6, dtype=torch.bool)
    assert torch.equal(binary_erosion(full, radius=2), full)  # outside is ignored, not background
    assert torch.equal(binary_dilation(empty, radius=2), empty)
    assert torch.equal(binary_dilation(full, radius=0), full)


@pytest.mark.parametrize("fn", [binary_dilation, binary_erosion, binary_opening, binary_closing])
def test_morphology_errors(fn) -> None:
    masks = _random_masks(2, 5, 5)
    with pytest.raises(TypeError, match=r"`masks` to be a torch.bool mask, but got torch.float32"):
        fn(masks.float())
    with pytest.raises(ValueError, match=r"`masks` to be a tensor of shape \(B, H, W\)"):
        fn(masks[0])
    with pytest.raises(ValueError, match="`radius` to be an int >= 0"):
        fn(masks, radius=-1)
    with pytest.raises(TypeError, match="`radius` to be an int"):
        fn(masks, radius=1.5)
    with pytest.raises(ValueError, match="`footprint` to be one of 'disk', 'square'"):
        fn(masks, radius=1, footprint="diamond")


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("min_size", [2, 3, 5, 9])
def test_remove_small_objects_equals_skimage(connectivity: int, min_size: int) -> None:
    masks = _random_masks(p=0.6)
    got = remove_small_objects(masks, min_size, connectivity=connectivity).numpy()  # type: ignore[arg-type]
    # skimage >= 0.26: objects of size <= max_size are removed
    ref = np.stack(
        [
            skm.remove_small_objects(m, max_size=min_size - 1, connectivity=connectivity)
            for m in masks.numpy()
        ]
    )
    np.testing.assert_array_equal(got, ref)


def test_remove_small_objects_hand_case_and_no_leak_across_images() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 3, :] = True  # 4 pixels on the last row of image 0
    masks[1, 0, :2] = True  # 2 pixels on the first row of image 1: touching image 0 in the stack
    out = remove_small_objects(masks, 3)
    assert out[0].sum() == 4
    assert out[1].sum() == 0
    # diagonal neighbours join only with connectivity 2
    diag = torch.zeros(1, 3, 3, dtype=torch.bool)
    diag[0, 0, 0] = diag[0, 1, 1] = diag[0, 2, 2] = True
    assert remove_small_objects(diag, 2, connectivity=1).sum() == 0
    assert remove_small_objects(diag, 2, connectivity=2).sum() == 3
    assert torch.equal(remove_small_objects(diag, 1), diag)


@pytest.mark.parametrize("connectivity", [1, 2])
def test_fill_holes_equals_scipy(connectivity: int) -> None:
    masks = _random_masks(p=0.4, seed=2)
    got = fill_holes(masks, connectivity=connectivity).numpy()  # type: ignore[arg-type]
    structure = ndi.generate_binary_structure(2, connectivity)
    ref = np.stack([ndi.binary_fill_holes(m, structure) for m in masks.numpy()])
    np.testing.assert_array_equal(got, ref)


def test_fill_holes_ring_and_border_notch() -> None:
    masks = torch.zeros(2, 7, 7, dtype=torch.bool)
    masks[0, 1:6, 1:6] = True
    masks[0, 2:5, 2:5] = False  # a 3x3 hole inside a ring
    masks[1, :, :3] = True
    masks[1, 3, 0] = False  # open to the border: not a hole
    out = fill_holes(masks)
    assert out[0].sum() == 25
    assert torch.equal(out[1], masks[1])


def test_keep_largest_component_per_image_with_ties_and_empty() -> None:
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0, 0, :2] = True  # 2 pixels
    masks[0, 3:5, 3:6] = True  # 6 pixels: kept
    masks[1, 0, 4:6] = True  # 2 pixels, first in raster order: kept on the tie
    masks[1, 5, 0:2] = True  # 2 pixels
    out = keep_largest_component(masks)
    assert torch.equal(out[0], masks[0] & (torch.arange(6)[:, None] >= 3))
    assert out[1].sum() == 2 and out[1, 0, 4] and not out[1, 5, 0]
    assert out[2].sum() == 0


def test_keep_largest_component_equals_a_scipy_loop() -> None:
    masks = _random_masks(p=0.5, seed=4)
    got = keep_largest_component(masks, connectivity=2).numpy()
    for g, m in zip(got, masks.numpy(), strict=True):
        lab, n = ndi.label(m, ndi.generate_binary_structure(2, 2))
        if n == 0:
            assert not g.any()
            continue
        sizes = np.bincount(lab.ravel())[1:]
        np.testing.assert_array_equal(g, lab == (np.argmax(sizes) + 1))


@pytest.mark.parametrize(
    "fn",
    [
        lambda m, **kw: remove_small_objects(m, 3, **kw),
        fill_holes,
        keep_largest_component,
    ],
)
def test_component_ops_errors(fn) -> None:
    masks = _random_masks(2, 5, 5)
    with pytest.raises(TypeError, match=r"`masks` to be a torch.bool mask, but got torch.uint8"):
        fn(masks.to(torch.uint8))
    with pytest.raises(ValueError, match=r"`masks` to be a tensor of shape \(B, H, W\)"):
        fn(masks[None])
    with pytest.raises(ValueError, match="`connectivity` to be one of 1, 2, but got 3"):
        fn(masks, connectivity=3)


def test_remove_small_objects_min_size_errors() -> None:
    masks = _random_masks(2, 5, 5)
    with pytest.raises(ValueError, match="`min_size` to be an int >= 0"):
        remove_small_objects(masks, -2)
    with pytest.raises(TypeError, match="`min_size` to be an int"):
        remove_small_objects(masks, 2.0)  # type: ignore[arg-type]


def test_empty_batches_pass_through() -> None:
    empty = torch.zeros(0, 4, 4, dtype=torch.bool)
    for out in (
        binary_dilation(empty),
        remove_small_objects(empty, 3),
        fill_holes(empty),
        keep_largest_component(empty),
    ):
        assert out.shape == (0, 4, 4) and out.dtype == torch.bool
