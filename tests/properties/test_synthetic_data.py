"""Hypothesis properties of camseg.synthetic.make_patches.

(Named ``test_synthetic_data.py``: ``tests/test_synthetic.py`` already holds the
unit tests, and pytest's default import mode needs distinct test file names.)
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg.synthetic import label_region_mask, make_patches

SETTINGS = settings(max_examples=12, deadline=None)


@SETTINGS
@given(
    n=st.integers(1, 8),
    half=st.integers(8, 40),
    region_half=st.integers(1, 20),
    seed=st.integers(0, 10**6),
    tumour=st.floats(0, 1),
    peripheral=st.floats(0, 1),
)
def test_labels_are_the_pcam_rule_of_the_masks(
    n: int, half: int, region_half: int, seed: int, tumour: float, peripheral: float
) -> None:
    size = 2 * half
    region = min(2 * region_half, size)
    images, labels, masks = make_patches(
        n,
        size=size,
        label_region=region,
        seed=seed,
        tumor_fraction=tumour,
        peripheral_fraction=peripheral,
    )
    assert images.shape == (n, size, size, 3) and images.dtype == torch.uint8
    centre = label_region_mask(size=size, label_region=region)
    assert torch.equal(labels, (masks & centre).flatten(1).any(1).long())
    if tumour == 0 and peripheral == 0:
        assert not masks.any()


@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 70), k=st.integers(1, 70), seed=st.integers(0, 10**6))
def test_prefix_stable(n: int, k: int, seed: int) -> None:
    k = min(k, n)
    a = make_patches(n, seed=seed, size=32, label_region=10)
    b = make_patches(k, seed=seed, size=32, label_region=10)
    for x, y in zip(a, b):
        assert torch.equal(x[:k], y)
