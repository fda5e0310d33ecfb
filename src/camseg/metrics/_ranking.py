"""Ranking helpers shared by the classification, segmentation and sanity metrics (private)."""

from __future__ import annotations

import torch

__all__ = ["auc_sorted", "average_ranks", "distinct_cumulative"]


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dimension, 1-based, ties given their average rank.

    Batched equivalent of :func:`scipy.stats.rankdata` with ``method="average"``
    applied to every row: sort once, find the runs of equal values, give each
    run the mean of its first and last ordinal rank, and scatter back.

    Args:
        x: scores, shape ``(..., N)``.

    Returns:
        float64 ranks of the same shape.
    """
    n = x.shape[-1]
    if n == 0:
        return torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    values, order = torch.sort(x, dim=-1, stable=True)
    pos = torch.arange(n, device=x.device).expand_as(values)
    new_run = torch.ones_like(values, dtype=torch.bool)
    new_run[..., 1:] = values[..., 1:] != values[..., :-1]
    end_run = torch.ones_like(values, dtype=torch.bool)
    end_run[..., :-1] = new_run[..., 1:]
    # first position of the run each element belongs to: running max of run starts
    first = torch.where(new_run, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    # last position: same from the right
    last_rev = torch.where(end_run, pos, torch.full_like(pos, n - 1)).flip(-1)
    last = (-(-last_rev).cummax(dim=-1).values).flip(-1)
    avg = (first + last).to(torch.float64) / 2.0 + 1.0
    return torch.empty_like(avg).scatter_(-1, order, avg)


def distinct_cumulative(
    scores: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True/false positives at every distinct score, thresholds in decreasing order."""
    s, order = torch.sort(scores, descending=True)
    cum = torch.cumsum(y[order], 0)  # int64 running count of positives
    last_of_run = torch.ones_like(s, dtype=torch.bool)
    torch.ne(s[1:], s[:-1], out=last_of_run[:-1])
    idx = torch.nonzero(last_of_run).squeeze(1)
    tps = cum[idx].to(torch.float64)
    fps = (idx + 1).to(torch.float64) - tps
    return tps, fps, s[idx]


def auc_sorted(scores: torch.Tensor, y: torch.Tensor, n_pos: int, n_neg: int) -> torch.Tensor:
    """Trapezoidal ROC area from one sort (equal to the tie-averaged rank statistic).

    With integer counts ``tps``/``fps`` at the distinct thresholds, twice the
    area times ``n_pos * n_neg`` is ``sum (fps_k - fps_{k-1}) (tps_k + tps_{k-1})``,
    a sum of integers held exactly in float64 up to 2**53.
    """
    tps, fps, _ = distinct_cumulative(scores, y)
    zero = torch.zeros(1, dtype=tps.dtype, device=tps.device)
    tps = torch.cat([zero, tps])
    fps = torch.cat([zero, fps])
    area2 = (torch.diff(fps) * (tps[1:] + tps[:-1])).sum()
    return area2 / (2.0 * n_pos * n_neg)
