"""camseg.postprocess.pseudo_masks: the three-way rule, the negative's label region,
per-sample regions, and errors that name the argument."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg.postprocess import pseudo_masks


def test_thresholds_and_the_ignore_band() -> None:
    p = torch.tensor([[[0.0, 0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9]]])
    out = pseudo_masks(p, torch.tensor([1]), margin=0.25, region=0.125)
    assert out.dtype == torch.int8
    assert out[0, 0].tolist() == [0, 0, 0, -1, -1, -1, 1, 1]
    zero = pseudo_masks(p, torch.tensor([1]), margin=0.0, region=0.125)
    assert zero[0, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]  # a tie at 0.5 is background


def test_a_negatives_label_region_is_background_whatever_the_map() -> None:
    p = torch.ones(2, 6, 6)
    out = pseudo_masks(p, torch.tensor([0, 1]))
    centre = torch.zeros(6, 6, dtype=torch.bool)
    centre[2:4, 2:4] = True
    assert bool((out[0][centre] == 0).all()) and bool((out[0][~centre] == 1).all())
    assert bool((out[1] == 1).all())  # a positive keeps its map


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_per_sample_regions_equal_one_call_per_image(b: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, 8, 8, generator=g)
    y = torch.randint(0, 2, (b,), generator=g)
    regions = torch.zeros(b, 8, 8, dtype=torch.bool)
    for i in range(b):
        oy, ox = (int(v) for v in torch.randint(0, 5, (2,), generator=g))
        regions[i, oy : oy + 4, ox : ox + 4] = True
    out = pseudo_masks(p, y, region=regions)
    for i in range(b):
        assert torch.equal(out[i], pseudo_masks(p[i : i + 1], y[i : i + 1], region=regions[i])[0])
    # batch order does not matter
    perm = torch.randperm(b, generator=g)
    assert torch.equal(pseudo_masks(p[perm], y[perm], region=regions[perm]), out[perm])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"probs": [[0.5]]}, TypeError, r"`probs`"),
        ({"probs": torch.zeros(2, 4)}, ValueError, r"`probs`"),
        ({"probs": torch.full((2, 6, 6), 1.5)}, ValueError, r"`probs`"),
        ({"probs": torch.full((2, 6, 6), float("nan"))}, ValueError, r"`probs`"),
        ({"labels": torch.tensor([1, 2])}, ValueError, r"`labels`"),
        ({"labels": torch.tensor([1])}, ValueError, r"`labels`|`probs`"),
        ({"margin": 0.5}, ValueError, r"`margin`"),
        ({"margin": "0.1"}, TypeError, r"`margin`"),
        ({"region": 0.0}, ValueError, r"`region`"),
        ({"region": torch.ones(6, 5, dtype=torch.bool)}, ValueError, r"`region`"),
        ({"region": torch.ones(2, 6, 5, dtype=torch.bool)}, ValueError, r"`region`"),
        ({"region": torch.ones(3, 6, 6, dtype=torch.bool)}, ValueError, r"`region`"),
        ({"region": torch.ones(2, 6, 6)}, ValueError, r"`region`"),
    ],
)
def test_errors_name_the_argument(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"probs": torch.rand(2, 6, 6), "labels": torch.tensor([1, 0])}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pseudo_masks(**args)  # type: ignore[arg-type]
