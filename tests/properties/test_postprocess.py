"""Properties of camseg.postprocess (hypothesis)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.exposure import histogram
from skimage.filters import threshold_otsu as sk_otsu

from camseg.postprocess import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    cams_to_masks,
    fill_holes,
    keep_largest_component,
    remove_small_objects,
    threshold_otsu,
    threshold_percentile,
)

SETTINGS = settings(max_examples=40, deadline=None)

masks_st = arrays(
    np.bool_,
    st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
)
unit_maps_st = arrays(
    np.float64,
    st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
    elements=st.floats(0.0, 1.0, allow_nan=False, width=64),
)


@settings(max_examples=20, deadline=None)
@given(masks_st, st.integers(1, 3), st.sampled_from(["disk", "square"]))
def test_opening_is_inside_and_closing_contains(m: np.ndarray, r: int, fp: str) -> None:
    masks = torch.from_numpy(m)
    assert not bool((binary_opening(masks, radius=r, footprint=fp) & ~masks).any())  # type: ignore[arg-type]
    assert not bool((masks & ~binary_closing(masks, radius=r, footprint=fp)).any())  # type: ignore[arg-type]
    assert not bool((binary_erosion(masks, radius=r) & ~masks).any())
    assert not bool((masks & ~binary_dilation(masks, radius=r)).any())
    # opening and closing are idempotent
    opened = binary_opening(masks, radius=r)
    assert torch.equal(binary_opening(opened, radius=r), opened)


@SETTINGS
@given(masks_st)
def test_erosion_and_dilation_are_dual(m: np.ndarray) -> None:
    masks = torch.from_numpy(m)
    # erosion ignores the outside (foreground), dilation ignores it (background): exact duals
    assert torch.equal(binary_erosion(masks, radius=2), ~binary_dilation(~masks, radius=2))


@SETTINGS
@given(masks_st, st.integers(0, 6), st.sampled_from([1, 2]))
def test_component_ops_return_subsets_or_supersets(m: np.ndarray, k: int, c: int) -> None:
    masks = torch.from_numpy(m)
    small = remove_small_objects(masks, k, connectivity=c)  # type: ignore[arg-type]
    largest = keep_largest_component(masks, connectivity=c)  # type: ignore[arg-type]
    filled = fill_holes(masks, connectivity=c)  # type: ignore[arg-type]
    assert not bool((small & ~masks).any())
    assert not bool((largest & ~masks).any())
    assert not bool((masks & ~filled).any())
    assert torch.equal(fill_holes(filled, connectivity=c), filled)  # type: ignore[arg-type]
    assert torch.equal(remove_small_objects(small, k, connectivity=c), small)  # type: ignore[arg-type]
    # every non-empty mask keeps a non-empty largest component
    assert torch.equal(largest.flatten(1).any(1), masks.flatten(1).any(1))


@SETTINGS
@given(masks_st)
def test_component_ops_are_batch_independent(m: np.ndarray) -> None:
    masks = torch.from_numpy(m)
    for fn in (lambda x: remove_small_objects(x, 3), fill_holes, keep_largest_component):
        together = fn(masks)
        single = torch.cat([fn(masks[i : i + 1]) for i in range(masks.shape[0])])
        assert torch.equal(together, single)


def _sk_variance(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts, centres = histogram(image.reshape(-1), 256, source_range="image")
    counts = counts.astype("float32")
    w1 = np.cumsum(counts)
    w2 = np.cumsum(counts[::-1])[::-1]
    m1 = np.cumsum(counts * centres) / w1
    m2 = (np.cumsum((counts * centres)[::-1]) / w2[::-1])[::-1]
    return w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2, centres


@SETTINGS
@given(unit_maps_st)
def test_otsu_equals_skimage_up_to_float_ties(m: np.ndarray) -> None:
    maps = torch.from_numpy(m)
    ours = threshold_otsu(maps).numpy()
    for image, t in zip(m, ours, strict=True):
        try:
            ref = sk_otsu(image)
        except ValueError as err:  # a subnormal range: the reference cannot bin it
            assert "Too many bins for data range" in str(err)
            continue
        if t == ref:
            continue
        variance, centres = _sk_variance(image)
        (pick,) = np.nonzero(centres == t)[0]
        assert variance[pick] >= variance.max() * (1 - 1e-6)


@SETTINGS
@given(unit_maps_st, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_higher_threshold_gives_a_subset_mask(m: np.ndarray, a: float, b: float) -> None:
    maps = torch.from_numpy(m)
    lo, hi = min(a, b), max(a, b)
    assert not bool((cams_to_masks(maps, threshold=hi) & ~cams_to_masks(maps, threshold=lo)).any())
    q_lo = threshold_percentile(maps, q=100 * lo)
    q_hi = threshold_percentile(maps, q=100 * hi)
    assert bool((q_lo <= q_hi).all())


@SETTINGS
@given(unit_maps_st, st.integers(0, 5))
def test_cams_to_masks_is_batch_order_invariant(m: np.ndarray, k: int) -> None:
    maps = torch.from_numpy(m)
    perm = torch.randperm(maps.shape[0], generator=torch.Generator().manual_seed(k))
    out = cams_to_masks(maps, min_size=k)
    assert torch.equal(cams_to_masks(maps[perm], min_size=k), out[perm])
