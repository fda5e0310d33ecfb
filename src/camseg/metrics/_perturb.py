"""Helpers shared by the perturbation metrics: faithfulness, ROAD and sanity (private).

Validating images and maps, fixing one target class per image, reading the
model's probability of that class (softmax, or sigmoid for a single-logit head,
as described in :mod:`camseg.metrics._faithfulness`), ranking pixels by
salience, and the substrates that replace removed pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeAlias

import torch
import torch.nn.functional as F

from camseg._checks import (
    check_callable,
    check_finite,
    check_floating,
    check_ndim,
    check_one_of,
    check_same_batch,
    check_tensor,
    describe,
)
from camseg._targets import ClassTargets, class_indices
from camseg._targets import check_class_range as check_indices_range

__all__ = [
    "ClassTargets",
    "Model",
    "check_class_range",
    "check_images_maps",
    "check_model_images_maps",
    "class_indices",
    "salience_rank",
    "substrate_of",
    "target_probability",
    "targets_from_model",
]

Model: TypeAlias = Callable[[torch.Tensor], torch.Tensor]
"""A classifier ``(n, C, H, W) -> logits (n, K)``, ``(n, 1)`` or ``(n,)``."""

_NAN_MAPS_HINT = "Hint: NaN maps come from a 0/0 normalization of a flat map."


def check_model_images_maps(
    model: object, images: torch.Tensor, maps: torch.Tensor
) -> torch.Tensor:
    """:func:`check_images_maps`, plus a callable model and a non-empty image batch."""
    check_callable(model, "model")
    m = check_images_maps(images, maps)
    if images.shape[0] == 0:
        raise ValueError("Expected `images` to hold at least one image, but got an empty batch.")
    if images.shape[-1] == 0 or images.shape[-2] == 0:
        raise ValueError(
            f"Expected `images` to have at least one pixel (H, W > 0), but got shape "
            f"{tuple(images.shape)}."
        )
    return m


def check_images_maps(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Validate and return maps resized (bilinear) to the images' size, ``(B, H, W)``."""
    check_tensor(images, "images")
    check_ndim(images, "images", 4, "(B, C, H, W)")
    check_floating(images, "images")
    check_finite(images, "images")
    check_tensor(maps, "maps")
    check_ndim(maps, "maps", 3, "(B, H, W)")
    check_floating(maps, "maps")
    check_same_batch(images, "images", maps, "maps")
    check_finite(maps, "maps", _NAN_MAPS_HINT)
    size = images.shape[-2:]
    if maps.shape[-2:] != size:
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps.to(images.dtype)


def _as_logits_2d(logits: torch.Tensor) -> torch.Tensor:
    """Logits as ``(n, C)``; a single-logit head stays ``(n, 1)``."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"Expected the model to return a tensor of logits, but got {describe(logits)}."
        )
    if logits.ndim == 1:
        return logits[:, None]
    if logits.ndim != 2:
        raise ValueError(
            "Expected the model to return logits of shape (B,), (B, 1) or (B, C), "
            f"but got shape {tuple(logits.shape)}."
        )
    return logits


def check_class_range(targets: torch.Tensor, logits: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every target is a class of the model's ``logits``."""
    check_indices_range(targets, _as_logits_2d(logits).shape[1])


def target_probability(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Probability of ``targets`` (argmax where None) from logits ``(n,)``/``(n, C)``."""
    z = _as_logits_2d(logits)
    if z.shape[1] == 1:
        p1 = torch.sigmoid(z[:, 0].float())
        t = (z[:, 0] > 0).long() if targets is None else targets
        check_class_range(t, z)
        return torch.where(t == 1, p1, 1 - p1)
    probs = torch.softmax(z.float(), dim=1)
    t = probs.argmax(dim=1) if targets is None else targets
    check_class_range(t, z)
    return probs.gather(1, t[:, None])[:, 0]


def targets_from_model(model: Model, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's predicted class per image (``logit > 0`` for a single-logit head)."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        z = _as_logits_2d(model(images[start : start + batch_size]))
        out.append((z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(dim=1))
    return torch.cat(out)


def salience_rank(maps: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel by decreasing map value, ``(B, H, W)`` long.

    Rank 0 is the most salient pixel; ties are broken in raster order (the
    earlier pixel ranks first).
    """
    b, h, w = maps.shape
    order = torch.sort(maps.reshape(b, -1), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(h * w, device=maps.device).expand(b, -1)
    )
    return rank.view(b, h, w)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(math.ceil(sigma), 1)
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    pad = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(pad, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def substrate_of(images: torch.Tensor, kind: str, sigma: float) -> torch.Tensor:
    """What removed pixels are replaced by: zeros, a Gaussian blur or the channel means."""
    check_one_of(kind, "substrate", ("zeros", "blur", "mean"))
    if kind == "zeros":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    return _gaussian_blur(images, sigma)
