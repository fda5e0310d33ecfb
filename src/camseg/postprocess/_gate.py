"""Gating maps by the classifier's probability."""

from __future__ import annotations

import torch

from camseg._checks import (
    check_finite,
    check_floating,
    check_in_range,
    check_ndim,
    check_probability,
    check_same_batch,
    check_tensor,
)

__all__ = ["gate"]


def check_probs(probs: object, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """Validate per-image probabilities ``(B,)`` in ``[0, 1]`` matching ``ref``'s batch."""
    p = check_tensor(probs, "probs")
    check_ndim(p, "probs", 1, "(B,)")
    check_floating(p, "probs")
    check_finite(p, "probs")
    check_same_batch(p, "probs", ref, ref_name)
    check_in_range(
        p, "probs", 0.0, 1.0, hint="Hint: pass probabilities, e.g. logits.softmax(1)[:, 1]."
    )
    return p


def gate(maps: torch.Tensor, probs: torch.Tensor, *, min_prob: float = 0.5) -> torch.Tensor:
    """Zero the maps of images the classifier calls negative.

    Per-image min-max normalisation stretches every map to ``[0, 1]``, so a
    tumour-free patch still gets a "hot" region and any threshold turns it into
    a mask. Gating asks the classifier first: maps of images with
    ``probs < min_prob`` become all zero.

    Args:
        maps: float maps, shape ``(B, H, W)`` or ``(B, K, H, W)`` (any shape with
            the batch first).
        probs: the classifier's tumour probability per image, shape ``(B,)``, in
            ``[0, 1]``.
        min_prob: images with ``probs >= min_prob`` keep their maps.

    Returns:
        A new tensor like ``maps``, zero for the gated images.

    Raises:
        TypeError: if ``maps`` or ``probs`` is not a floating tensor.
        ValueError: if ``maps`` holds NaN or infinity, the batch sizes differ,
            ``probs`` is not ``(B,)``, holds
            NaN or values outside ``[0, 1]``, or ``min_prob`` lies outside ``[0, 1]``.

    Example:
        >>> maps = torch.ones(2, 2, 2)
        >>> gate(maps, torch.tensor([0.9, 0.2]))[:, 0, 0]
        tensor([1., 0.])
    """
    check_tensor(maps, "maps")
    if maps.ndim < 2:
        raise ValueError(
            f"Expected `maps` to be a tensor of shape (B, H, W) or (B, K, H, W), "
            f"but got shape {tuple(maps.shape)}."
        )
    check_floating(maps, "maps")
    check_finite(maps, "maps")  # a NaN map would be hidden when gated and kept when not
    p = check_probs(probs, maps, "maps")
    check_probability(min_prob, "min_prob")
    keep = (p >= min_prob).reshape((-1,) + (1,) * (maps.ndim - 1))
    return torch.where(
        keep.to(maps.device), maps, torch.zeros((), dtype=maps.dtype, device=maps.device)
    )
