r"""Faithfulness of explanations: perturb the input by the map and watch the model.

All functions call the model in chunks of ``batch_size`` images, batched over
images *and* perturbation steps, under :func:`torch.no_grad`. They never change
the model's mode: put it in ``eval()`` first (batch-norm in training mode would
mix the perturbed images of a chunk).

Class probabilities come from the model's logits: a softmax for ``(B, C)``
logits with ``C >= 2``; for a single-logit binary head (``(B,)`` or ``(B, 1)``)
the probability of class 1 is :math:`\sigma(z)` and of class 0
:math:`1 - \sigma(z)`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from camseg._checks import check_one_of, check_positive_int, describe
from camseg.metrics._perturb import (
    ClassTargets,
    Model,
    check_model_images_maps,
    class_indices,
    salience_rank,
    substrate_of,
    target_probability,
    targets_from_model,
)

__all__ = [
    "average_drop",
    "deletion_auc",
    "deletion_curve",
    "increase_in_confidence",
    "insertion_auc",
    "insertion_curve",
]

Substrate = Literal["zeros", "blur", "mean"]
PerImageAverage = Literal["macro", "none"]


# --------------------------------------------------------------------------- curves


def _curve(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets,
    *,
    insert: bool,
    steps: int,
    substrate: str,
    batch_size: int,
    blur_sigma: float,
) -> torch.Tensor:
    m = check_model_images_maps(model, images, maps)
    s = check_positive_int(steps, "steps")
    bs = check_positive_int(batch_size, "batch_size")
    if not isinstance(blur_sigma, (int, float)) or isinstance(blur_sigma, bool):
        raise TypeError(f"Expected `blur_sigma` to be a number, but got {describe(blur_sigma)}.")
    if not (blur_sigma > 0 and math.isfinite(blur_sigma)):
        raise ValueError(f"Expected `blur_sigma` to be a finite number > 0, but got {blur_sigma}.")
    b, _, h, w = images.shape
    n_pix = h * w
    with torch.no_grad():
        base = substrate_of(images, substrate, float(blur_sigma))
        t = class_indices(targets, b, images.device)
        if t is None:
            t = targets_from_model(model, images, bs)
        rank = salience_rank(m)[:, None]  # (B, 1, H, W)
        n_changed = (torch.arange(s + 1, device=m.device) * n_pix) // s  # (S + 1,)
        total = b * (s + 1)
        curve = torch.empty(total, dtype=torch.float32, device=images.device)
        for start in range(0, total, bs):
            idx = torch.arange(start, min(start + bs, total), device=images.device)
            img_i, step_i = idx // (s + 1), idx % (s + 1)
            changed = rank[img_i] < n_changed[step_i].view(-1, 1, 1, 1)
            if insert:
                x = torch.where(changed, images[img_i], base[img_i])
            else:
                x = torch.where(changed, base[img_i], images[img_i])
            curve[start : start + idx.numel()] = target_probability(model(x), t[img_i])
    return curve.view(b, s + 1)


def _auc(curve: torch.Tensor) -> torch.Tensor:
    s = curve.shape[1] - 1
    return (curve.sum(dim=1) - (curve[:, 0] + curve[:, -1]) / 2) / s


# --------------------------------------------------------------------------- deletion / insertion


def deletion_curve(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    steps: int = 32,
    substrate: Substrate = "zeros",
    batch_size: int = 256,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    """Target-class probability as the most salient pixels are deleted (RISE).

    Pixels are removed in decreasing map order (ties in raster order),
    replaced across all channels by the ``substrate``: ``"zeros"`` (RISE's
    deletion; zero is the mean colour for mean/std-normalised inputs),
    ``"blur"`` (Gaussian blur, ``blur_sigma`` px, kernel ``2 ceil(sigma) + 1``,
    replicate padding) or ``"mean"`` (the image's per-channel mean). Step
    ``s`` of ``steps`` has removed ``floor(s * H * W / steps)`` pixels, so the
    curve has ``steps + 1`` points from the intact image to the substrate.
    Maps of another size are resized bilinearly to the images.

    Args:
        model: callable ``(n, C, H, W) -> logits (n, K)``, ``(n, 1)`` or ``(n,)``,
            in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image (int, sequence or LongTensor ``(B,)``);
            ``None`` uses the model's prediction on the intact images.
        steps: number of deletion steps.
        substrate: ``"zeros"``, ``"blur"`` or ``"mean"``.
        batch_size: images per model call (all images x steps are chunked).
        blur_sigma: standard deviation of the blur, in pixels.

    Returns:
        float32 tensor ``(B, steps + 1)`` of target probabilities.

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, bad
            options or targets out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0      # class 1 looks at pixel (0, 0)
        >>> images = torch.ones(1, 1, 4, 4)
        >>> maps = torch.zeros(1, 4, 4); maps[0, 0, 0] = 1.0
        >>> deletion_curve(model, images, maps, 1, steps=4)
        tensor([[1.0000, 0.5000, 0.5000, 0.5000, 0.5000]])

    References:
        Petsiuk, Das and Saenko, "RISE: Randomized input sampling for
        explanation of black-box models", BMVC 2018.
    """
    return _curve(
        model,
        images,
        maps,
        targets,
        insert=False,
        steps=steps,
        substrate=substrate,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def insertion_curve(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    steps: int = 32,
    substrate: Substrate = "blur",
    batch_size: int = 256,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    """Target-class probability as the most salient pixels are inserted (RISE).

    Starts from the ``substrate`` (RISE: a blurred copy of the image, the
    default) and puts back the original pixels in decreasing map order. Step
    ``s`` of ``steps`` has inserted ``floor(s * H * W / steps)`` pixels.
    Options as in :func:`deletion_curve`.

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the intact images.
        steps: number of insertion steps.
        substrate: start image: ``"blur"`` (default), ``"zeros"`` or ``"mean"``.
        batch_size: images per model call.
        blur_sigma: standard deviation of the blur, in pixels.

    Returns:
        float32 tensor ``(B, steps + 1)`` of target probabilities.

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, bad
            options or targets out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0
        >>> images = torch.ones(1, 1, 4, 4)
        >>> maps = torch.zeros(1, 4, 4); maps[0, 0, 0] = 1.0
        >>> insertion_curve(model, images, maps, 1, steps=4, substrate="zeros")
        tensor([[0.5000, 1.0000, 1.0000, 1.0000, 1.0000]])

    References:
        Petsiuk, Das and Saenko, "RISE: Randomized input sampling for
        explanation of black-box models", BMVC 2018.
    """
    return _curve(
        model,
        images,
        maps,
        targets,
        insert=True,
        steps=steps,
        substrate=substrate,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )


def deletion_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    steps: int = 32,
    substrate: Substrate = "zeros",
    batch_size: int = 256,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    r"""Area under the deletion curve (RISE), per image; lower is more faithful.

    The trapezoidal area of :func:`deletion_curve` over the fraction of
    pixels removed, :math:`x_s = s / S`:

    .. math::

        \mathrm{AUC} = \frac{1}{S} \Big( \tfrac{1}{2} p_0 + \sum_{s=1}^{S-1} p_s
        + \tfrac{1}{2} p_S \Big)

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the intact images.
        steps: number of deletion steps ``S``.
        substrate: ``"zeros"`` (default), ``"blur"`` or ``"mean"``.
        batch_size: images per model call.
        blur_sigma: standard deviation of the blur, in pixels.

    Returns:
        float32 tensor ``(B,)`` in [0, 1].

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, bad
            options or targets out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0
        >>> images = torch.ones(2, 1, 4, 4)
        >>> good = torch.zeros(4, 4); good[0, 0] = 1.0       # points at the evidence
        >>> bad = torch.arange(16.0).view(4, 4) / 15         # ranks it last
        >>> deletion_auc(model, images, torch.stack([good, bad]), 1, steps=4)
        tensor([0.5625, 0.9375])

    References:
        Petsiuk, Das and Saenko, "RISE: Randomized input sampling for
        explanation of black-box models", BMVC 2018.
    """
    return _auc(
        deletion_curve(
            model,
            images,
            maps,
            targets,
            steps=steps,
            substrate=substrate,
            batch_size=batch_size,
            blur_sigma=blur_sigma,
        )
    )


def insertion_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    steps: int = 32,
    substrate: Substrate = "blur",
    batch_size: int = 256,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    r"""Area under the insertion curve (RISE), per image; higher is more faithful.

    The trapezoidal area of :func:`insertion_curve` over the fraction of
    pixels inserted (see :func:`deletion_auc` for the formula). The start
    image is the ``substrate``, by default the blurred image as in RISE.

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the intact images.
        steps: number of insertion steps ``S``.
        substrate: start image: ``"blur"`` (default), ``"zeros"`` or ``"mean"``.
        batch_size: images per model call.
        blur_sigma: standard deviation of the blur, in pixels.

    Returns:
        float32 tensor ``(B,)`` in [0, 1].

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, bad
            options or targets out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0
        >>> images = torch.ones(2, 1, 4, 4)
        >>> good = torch.zeros(4, 4); good[0, 0] = 1.0
        >>> bad = torch.arange(16.0).view(4, 4) / 15
        >>> insertion_auc(model, images, torch.stack([good, bad]), 1, steps=4,
        ...               substrate="zeros")
        tensor([0.9375, 0.5625])

    References:
        Petsiuk, Das and Saenko, "RISE: Randomized input sampling for
        explanation of black-box models", BMVC 2018.
    """
    return _auc(
        insertion_curve(
            model,
            images,
            maps,
            targets,
            steps=steps,
            substrate=substrate,
            batch_size=batch_size,
            blur_sigma=blur_sigma,
        )
    )


# --------------------------------------------------------------------------- Grad-CAM++ metrics


def _explanation_scores(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target probabilities ``Y`` on the images and ``O`` on ``images * maps``."""
    m = check_model_images_maps(model, images, maps)
    if m.numel() and (float(m.min()) < 0 or float(m.max()) > 1):
        raise ValueError(
            f"Expected `maps` to lie in [0, 1], but got values in "
            f"[{float(m.min()):.6g}, {float(m.max()):.6g}]. "
            "Hint: normalize the maps (e.g. normalize='minmax')."
        )
    bs = check_positive_int(batch_size, "batch_size")
    b = images.shape[0]
    with torch.no_grad():
        t = class_indices(targets, b, images.device)
        if t is None:
            t = targets_from_model(model, images, bs)
        y_parts, o_parts = [], []
        for start in range(0, b, bs):
            sl = slice(start, start + bs)
            x = images[sl]
            both = torch.cat([x, x * m[sl, None]])
            p = target_probability(model(both), torch.cat([t[sl], t[sl]]))
            y_parts.append(p[: x.shape[0]])
            o_parts.append(p[x.shape[0] :])
    return torch.cat(y_parts), torch.cat(o_parts)


def average_drop(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    batch_size: int = 128,
    average: PerImageAverage = "macro",
) -> torch.Tensor:
    r"""Average drop in % (Chattopadhyay et al. 2018); lower is better.

    The explanation map is the image masked by the saliency map,
    :math:`E = I \odot M` (the map resized to the image and broadcast over
    channels, applied to the tensor exactly as given to the model). With
    :math:`Y_c^i` the model's probability of class :math:`c` on image
    :math:`i` and :math:`O_c^i` on its explanation map:

    .. math::

        \text{Average Drop} = \frac{100}{N} \sum_{i=1}^{N}
        \frac{\max(0, Y_c^i - O_c^i)}{Y_c^i}

    a *relative* drop. The paper speaks of the class "score"; camseg uses the
    softmax (or sigmoid) probability, as the paper's evaluation does, so that
    :math:`Y_c > 0` and the ratio is meaningful (a logit can be negative).

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps in [0, 1], ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the images.
        batch_size: images per model call (each call holds images and
            explanation maps, ``2 * batch_size`` inputs).
        average: ``"macro"`` (default: the mean over images, 0-d, in %) or
            ``"none"`` (per-image drop in %).

    Returns:
        float32 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, maps outside [0, 1],
            targets out of range or an unknown ``average``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0
        >>> images = torch.ones(2, 1, 2, 2)
        >>> maps = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]])
        >>> average_drop(model, images, maps, 1, average="none")
        tensor([ 0.0000, 49.9977])

    References:
        Chattopadhyay, Sarkar, Howlader and Balasubramanian, "Grad-CAM++:
        Generalized gradient-based visual explanations for deep convolutional
        networks", WACV 2018.
    """
    check_one_of(average, "average", ("macro", "none"))
    y, o = _explanation_scores(model, images, maps, targets, batch_size)
    drop = 100.0 * (y - o).clamp_min(0) / y.clamp_min(torch.finfo(y.dtype).tiny)
    return drop.mean() if average == "macro" else drop


def increase_in_confidence(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    batch_size: int = 128,
    average: PerImageAverage = "macro",
) -> torch.Tensor:
    r"""Increase in confidence in % (Chattopadhyay et al. 2018); higher is better.

    The share of images whose explanation map :math:`E = I \odot M` gets a
    strictly higher target probability than the full image (notation of
    :func:`average_drop`):

    .. math::

        \text{Increase in Confidence} = \frac{100}{N} \sum_{i=1}^{N}
        \mathbb{1}\left[Y_c^i < O_c^i\right]

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps in [0, 1], ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the images.
        batch_size: images per model call.
        average: ``"macro"`` (default: the mean over images, 0-d, in %) or
            ``"none"`` (per-image 0 or 100).

    Returns:
        float32 tensor, 0-d or ``(B,)``.

    Raises:
        TypeError: on non-float images/maps or bad targets.
        ValueError: on shape mismatches, NaN or infinite images, NaN maps, maps outside [0, 1],
            targets out of range or an unknown ``average``.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 0] = 10.0; model[1].weight[1, 3] = -10.0
        >>> images = torch.ones(2, 1, 2, 2)
        >>> maps = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
        >>> increase_in_confidence(model, images, maps, 1)
        tensor(50.)

    References:
        Chattopadhyay, Sarkar, Howlader and Balasubramanian, "Grad-CAM++:
        Generalized gradient-based visual explanations for deep convolutional
        networks", WACV 2018.
    """
    check_one_of(average, "average", ("macro", "none"))
    y, o = _explanation_scores(model, images, maps, targets, batch_size)
    inc = 100.0 * (o > y).to(y.dtype)
    return inc.mean() if average == "macro" else inc
