"""Group-aware, stratified data splits: no patient (or slide) in two splits."""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from camseg._checks import check_positive_int, check_sequence, describe

__all__ = ["group_split", "shard_indices"]


def group_split(
    groups: Sequence[Hashable] | torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> list[torch.Tensor]:
    """Split samples into disjoint sets of whole groups, stratified by group label.

    Every group (patient, slide, hospital...) lands in exactly one split, so no
    patient's patches leak from training into validation -- the mistake behind
    optimistic patch-level scores. Groups are stratified by their label, the
    largest label of their samples (a patient is positive when any of their
    slides is): within each stratum the groups are shuffled with ``seed`` and cut
    by ``fractions``, rounding the cumulative counts, so each split receives
    ``fraction * n_groups`` groups of every stratum to within one.

    Args:
        groups: group id of each sample, ``(N,)`` (any hashable, or an int tensor).
        labels: integer label of each sample ``(N,)``, or ``None`` for no
            stratification.
        fractions: fraction of the groups per split; non-negative, summing to 1.
        seed: seed of the shuffle; equal seeds give equal splits.

    Returns:
        One int64 tensor of sample indices per split, each sorted.

    Raises:
        TypeError: if ``groups``, ``labels`` or ``fractions`` is not a sequence,
            ``seed`` is not an int, a label is not an integer or a fraction not a
            number.
        ValueError: if the lengths differ, ``fractions`` are negative, NaN or do
            not sum to 1, or there are fewer groups than splits with a fraction > 0.

    Example:
        >>> groups = ["p1", "p1", "p2", "p3", "p3", "p4"]
        >>> labels = [0, 1, 0, 1, 1, 0]
        >>> train, test = group_split(groups, labels, fractions=(0.5, 0.5), seed=0)
        >>> sorted({groups[i] for i in train} & {groups[i] for i in test})
        []
        >>> len(train) + len(test)
        6
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    check_sequence(groups, "groups", "group ids")
    g = groups.tolist() if isinstance(groups, torch.Tensor) else list(groups)
    n = len(g)
    if labels is None:
        y = [0] * n
    else:
        check_sequence(labels, "labels", "integer labels")
        y = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        if len(y) != n:
            raise ValueError(
                f"Expected `groups` and `labels` to have the same length, but got {n} and {len(y)}."
            )
        for v in y:
            if not isinstance(v, (int, np.integer)):
                raise TypeError(f"Expected `labels` to hold integers, but got {describe(v)}.")
    check_sequence(fractions, "fractions", "numbers")
    given = fractions.tolist() if isinstance(fractions, (torch.Tensor, np.ndarray)) else fractions
    for f in given:
        if not isinstance(f, numbers.Real) or isinstance(f, bool):
            raise TypeError(
                f"Expected `fractions` to hold numbers, but got {describe(f)} in "
                f"{describe(fractions)}."
            )
    fr = [float(f) for f in given]
    if not fr or not all(f >= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(
            f"Expected `fractions` to be non-negative and sum to 1, but got {list(fractions)!r}."
        )
    members: dict[Hashable, list[int]] = {}
    group_label: dict[Hashable, int] = {}
    for i, (grp, lab) in enumerate(zip(g, y)):
        members.setdefault(grp, []).append(i)
        group_label[grp] = max(group_label.get(grp, int(lab)), int(lab))
    wanted = sum(f > 0 for f in fr)
    if len(members) < wanted:
        raise ValueError(
            f"Expected `groups` to hold at least one group per split with a fraction > 0 "
            f"({wanted} splits), but got {len(members)} group(s). Hint: use fewer `fractions`, "
            "or more groups."
        )
    strata: dict[int, list[Hashable]] = {}
    for grp in members:  # first-appearance order: deterministic for a seed
        strata.setdefault(group_label[grp], []).append(grp)
    rng = np.random.default_rng(seed)
    cum = np.cumsum([0.0, *fr])
    splits: list[list[int]] = [[] for _ in fr]
    for label in sorted(strata):
        grps = strata[label]
        order = rng.permutation(len(grps))
        cuts = np.round(cum * len(grps)).astype(int)
        cuts[-1] = len(grps)
        for s in range(len(fr)):
            for j in order[cuts[s] : cuts[s + 1]]:
                splits[s].extend(members[grps[j]])
    return [torch.tensor(sorted(idx), dtype=torch.long) for idx in splits]


def shard_indices(n: int, *, rank: int, world_size: int) -> list[int]:
    """Indices of the items that ``rank`` runs: ``rank, rank + world_size, ...``.

    Args:
        n: number of items.
        rank: this process's rank, in ``[0, world_size)``.
        world_size: number of processes.

    Returns:
        The indices, ascending. The shards of all ranks partition ``range(n)``.

    Raises:
        ValueError: if ``rank`` is outside ``[0, world_size)`` or ``n < 0``.

    Example:
        >>> shard_indices(5, rank=1, world_size=2)
        [1, 3]
    """
    check_positive_int(n, "n", minimum=0)
    world_size = check_positive_int(world_size, "world_size")
    check_positive_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"Expected `rank` to be in [0, {world_size - 1}], but got {rank}.")
    return list(range(rank, n, world_size))
