from __future__ import annotations

import numpy as np
import pytest
import torch

from camseg.slide import group_split


def test_group_split_disjoint_complete_stratified() -> None:
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 40, 500)
    positive_patients = set(range(0, 40, 3))  # 14 positive patients
    labels = np.array([int(p in positive_patients and rng.random() < 0.6) for p in patients])
    splits = group_split(patients.tolist(), labels.tolist(), fractions=(0.5, 0.25, 0.25), seed=3)
    allidx = torch.cat(splits).sort().values
    assert allidx.tolist() == list(range(500))
    sets = [set(patients[s.numpy()].tolist()) for s in splits]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # stratified: positive groups (max label) are spread by the fractions to within one
    pos_groups = {p for p in set(patients.tolist()) if labels[patients == p].max() == 1}
    counts = [len(s & pos_groups) for s in sets]
    expected = np.array([0.5, 0.25, 0.25]) * len(pos_groups)
    assert np.all(np.abs(np.array(counts) - expected) <= 1)


def test_group_split_deterministic_and_seed_dependent() -> None:
    groups = [i // 3 for i in range(60)]
    a = group_split(groups, fractions=(0.5, 0.5), seed=1)
    b = group_split(groups, fractions=(0.5, 0.5), seed=1)
    c = group_split(groups, fractions=(0.5, 0.5), seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert len(a[0]) == 30  # 10 of 20 groups of 3


def test_group_split_tensor_inputs() -> None:
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 0, 0])
    train, test = group_split(groups, labels, fractions=(0.5, 0.5), seed=0)
    assert len(train) == 4 and len(test) == 4
    # each split holds one positive group (0 or 2) and one negative group (1 or 3)
    for split in (train, test):
        gs = set(groups[split].tolist())
        assert len(gs & {0, 2}) == 1 and len(gs & {1, 3}) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": [0, 1]}, ValueError, "same length"),
        ({"fractions": (0.5, 0.6)}, ValueError, "`fractions` to be non-negative and sum to 1"),
        ({"fractions": (1.5, -0.5)}, ValueError, "`fractions`"),
        ({"labels": [0.5, 1, 0]}, TypeError, "`labels` to hold integers"),
        ({"seed": -1}, ValueError, "`seed`"),
    ],
)
def test_group_split_bad_input(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        group_split(["a", "b", "c"], **kwargs)


def test_group_split_more_splits_than_groups_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one group per split"):
        group_split(["a", "a", "b"], fractions=(0.5, 0.3, 0.2))
    # a zero fraction needs no group
    train, empty = group_split(["a", "b"], fractions=(1.0, 0.0))
    assert len(train) == 2 and len(empty) == 0
