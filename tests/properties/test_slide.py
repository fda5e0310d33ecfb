"""Property tests of camseg.slide: stitching, tiling, staging, splits, tumour sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg.slide import (
    NODE_CLASSES,
    PN_STAGES,
    ArrayReader,
    group_split,
    pn_stage,
    sliding_window,
    tile_grid,
    tumor_regions,
)

SETTINGS = settings(max_examples=30, deadline=None)


def _identity(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(tiles.shape[0], dtype=tiles.dtype), tiles[:, 1]


@SETTINGS
@given(
    height=st.integers(6, 30),
    width=st.integers(6, 30),
    tile=st.integers(2, 6),
    stride=st.integers(1, 6),
    blend=st.sampled_from(["gaussian", "uniform"]),
    edge=st.sampled_from(["shift", "pad"]),
    seed=st.integers(0, 2**16),
)
def test_identity_stitching_reproduces_any_slide(height, width, tile, stride, blend, edge, seed):
    img = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = sliding_window(
        ArrayReader(img),
        _identity,
        tile=tile,
        stride=min(stride, tile),
        blend=blend,
        edge=edge,
        gate=False,
        dtype=torch.float64,
        progress=False,
        batch_size=7,
    )
    expected = (torch.from_numpy(img[..., 1]).float() / 255).double()
    torch.testing.assert_close(out.cam, expected, rtol=1e-12, atol=1e-12)
    assert bool((out.weight > 0).all())


@SETTINGS
@given(
    length=st.integers(1, 60),
    tile=st.integers(1, 20),
    stride=st.integers(1, 25),
    edge=st.sampled_from(["shift", "pad"]),
)
def test_tile_grid_covers_when_stride_le_tile(length, tile, stride, edge):
    if tile > length:
        return
    xs = tile_grid((length, tile), tile=tile, stride=stride, edge=edge)[:, 0].tolist()
    assert xs == sorted(set(xs)) and xs[0] == 0
    if edge == "shift":
        assert max(xs) + tile <= length
    assert max(xs) + tile >= length  # the border is always reached
    if stride <= tile:
        covered = np.zeros(length, bool)
        for x in xs:
            covered[x : x + tile] = True
        assert covered.all()


@SETTINGS
@given(nodes=st.lists(st.sampled_from(NODE_CLASSES), min_size=1, max_size=9), i=st.integers(0, 8))
def test_pn_stage_monotone_in_node_severity(nodes, i):
    i %= len(nodes)
    before = PN_STAGES.index(pn_stage(nodes))
    level = NODE_CLASSES.index(nodes[i])
    if level + 1 < len(NODE_CLASSES):
        worse = [*nodes[:i], NODE_CLASSES[level + 1], *nodes[i + 1 :]]
        assert PN_STAGES.index(pn_stage(worse)) >= before
    # adding a tumour-free node never changes the stage
    assert pn_stage([*nodes, "negative"]) == PN_STAGES[before]


@SETTINGS
@given(
    groups=st.lists(st.integers(0, 12), min_size=1, max_size=60),
    data=st.data(),
    seed=st.integers(0, 1000),
)
def test_group_split_partitions_by_group(groups, data, seed):
    labels = data.draw(st.lists(st.integers(0, 2), min_size=len(groups), max_size=len(groups)))
    if len(set(groups)) < 3:  # a split would be empty: refused, never silently returned
        with pytest.raises(ValueError, match="at least one group per split"):
            group_split(groups, labels, fractions=(0.6, 0.2, 0.2), seed=seed)
        return
    splits = group_split(groups, labels, fractions=(0.6, 0.2, 0.2), seed=seed)
    assert torch.cat(splits).sort().values.tolist() == list(range(len(groups)))
    owners = [{groups[i] for i in s.tolist()} for s in splits]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not owners[a] & owners[b]


@SETTINGS
@given(seed=st.integers(0, 2**16), density=st.floats(0.05, 0.6))
def test_tumour_region_area_bounded_by_diameter(seed, density):
    m = torch.from_numpy(np.random.default_rng(seed).random((20, 24)) < density)
    regions = tumor_regions(m, mpp=1000.0)  # 1 mm per pixel
    # isodiametric inequality: area <= pi d^2 / 4; and a region covers >= 1 pixel
    assert bool((regions.areas_mm2 <= math.pi / 4 * regions.diameters_mm**2 + 1e-9).all())
    assert bool((regions.diameters_mm >= math.sqrt(2) - 1e-9).all())
    assert int(regions.areas_mm2.sum().round()) == int(m.sum())
