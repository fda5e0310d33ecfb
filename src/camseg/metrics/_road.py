r"""ROAD: RemOve And Debias (Rong et al., ICML 2022), batched and on the input's device.

ROAD scores a saliency map by the model's target probability after the top
(MoRF) or bottom (LeRF) p % of the pixels, ranked by the map, have been
*imputed* from their surroundings. The imputation is noisy linear imputation:
every removed pixel equals the weighted mean of its 8 neighbours, with the
known pixels fixed, plus a little Gaussian noise, so that the shape of the
removed region leaks as little as possible into the imputed image.

The imputation is solved on the images' device, all images at once, by the
batched multigrid-preconditioned conjugate-gradient solver of
:mod:`camseg.metrics._imputation`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

import torch

from camseg._checks import (
    check_bool_mask,
    check_finite,
    check_floating,
    check_ndim,
    check_one_of,
    check_positive_int,
    check_tensor,
    describe,
)
from camseg.metrics._imputation import check_solver_options, impute
from camseg.metrics._perturb import (
    ClassTargets,
    Model,
    check_model_images_maps,
    class_indices,
    salience_rank,
    target_probability,
    targets_from_model,
)

__all__ = ["noisy_linear_imputation", "road_auc", "road_curve"]

Order = Literal["morf", "lerf"]

#: Shares of pixels removed (in %) by default: 10, 20, ..., 90 as in the paper's
#: figures and pytorch-grad-cam's ``ROAD*Average`` metrics.
PERCENTAGES: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)


# --------------------------------------------------------------------------- imputation


def noisy_linear_imputation(
    images: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> torch.Tensor:
    r"""Fill the removed pixels by noisy linear imputation (ROAD), batched.

    Per image and channel, the removed pixels :math:`U` get the values that
    make each of them the weighted mean of its in-image 8-neighbours, the
    known pixels held fixed:

    .. math::

        x_i = \frac{\sum_{j \in \mathcal{N}(i)} w_{ij} x_j}
                   {\sum_{j \in \mathcal{N}(i)} w_{ij}}, \quad i \in U,
        \qquad w_{ij} = \begin{cases} 1/6 & \text{direct neighbour} \\
                                      1/12 & \text{diagonal neighbour} \end{cases}

    with :math:`x_j` the known value where :math:`j \notin U`. Neighbours
    outside the image are dropped and the weights renormalised, exactly as
    the paper's reference code (``NoisyLinearImputer``, also in
    pytorch-grad-cam) does. Then i.i.d. Gaussian noise of standard deviation
    ``noise`` is added to every imputed value (the paper's default 0.01, in
    the units of ``images``; for mean/std-normalised inputs divide by the
    std to match the paper, which imputes in [0, 1] pixel units).

    The system is solved by float64 conjugate gradients with a float32
    multigrid preconditioner, on the images' device, all images and channels
    at once. The solver stops when the multigrid estimate of the error is at
    most ``tol`` times the half-range of the known values of every image and
    channel. A constant is imputed exactly, and imputed values (before the
    noise) lie in [min, max] of the known values of their channel, like the
    exact solution's. An image whose pixels are all removed has a singular
    system; its minimum-norm solution, 0, is used. The values of ``images``
    under ``removed`` are never read. Not differentiable.

    Args:
        images: float ``(B, C, H, W)``.
        removed: bool ``(B, H, W)``, ``True`` where a pixel is imputed (in all
            channels), on the images' device.
        noise: standard deviation of the added noise; 0 for plain linear
            imputation.
        generator: source of the noise (one draw of shape ``(B, C, H, W)``);
            ``None`` uses the global RNG. Another device than the images' is
            allowed: the noise is drawn there and moved.
        tol: relative accuracy of the solve.
        max_iter: most solver iterations (a ``RuntimeWarning`` if reached).

    Returns:
        tensor like ``images``: known pixels unchanged, removed ones imputed.

    Raises:
        TypeError: on a non-float ``images``, a non-bool ``removed``, or bad
            option types.
        ValueError: on shape or device mismatches, non-finite known values,
            or bad option values.

    Example:
        >>> images = torch.arange(36.0).view(1, 1, 6, 6)       # a linear ramp
        >>> removed = torch.zeros(1, 6, 6, dtype=torch.bool)
        >>> removed[0, 1:5, 1:5] = True                         # the interior
        >>> out = noisy_linear_imputation(images, removed, noise=0.0)
        >>> bool(torch.allclose(out, images, atol=1e-4))        # ramp reproduced
        True
        >>> g = torch.Generator().manual_seed(0)
        >>> noisy = noisy_linear_imputation(images, removed, generator=g)
        >>> bool((noisy - out).abs().max() < 0.05), bool((noisy == images)[~removed[:, None]].all())
        (True, True)

    References:
        Rong, Leemann, Borisov, Kasneci and Kasneci, "A consistent and
        efficient evaluation strategy for attribution methods", ICML 2022.
    """
    check_tensor(images, "images")
    check_ndim(images, "images", 4, "(B, C, H, W)")
    check_floating(images, "images")
    check_bool_mask(removed, "removed")
    b, _, h, w = images.shape
    if tuple(removed.shape) != (b, h, w):
        raise ValueError(
            f"Expected `removed` to have shape {(b, h, w)}, one mask per image of `images`, "
            f"but got shape {tuple(removed.shape)}."
        )
    if removed.device != images.device:
        raise ValueError(
            f"Expected `removed` on the images' device {images.device}, but got {removed.device}."
        )
    check_solver_options(noise, generator, tol, max_iter)
    with torch.no_grad():
        check_finite(
            torch.where(removed[:, None], 0, images),
            "images",
            "Hint: only the known pixels (outside `removed`) must be finite.",
        )
        return impute(images, removed, float(noise), generator, float(tol), max_iter)


# --------------------------------------------------------------------------- ROAD curves


def _check_percentages(percentages: Sequence[float] | torch.Tensor) -> list[float]:
    if isinstance(percentages, torch.Tensor):
        if percentages.ndim != 1 or percentages.is_complex() or percentages.dtype == torch.bool:
            raise TypeError(
                "Expected `percentages` to be a sequence of numbers or a 1-D real tensor, "
                f"but got {describe(percentages)}."
            )
        values = [float(p) for p in percentages.tolist()]
    elif isinstance(percentages, Sequence) and not isinstance(percentages, str):
        if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in percentages):
            raise TypeError(
                f"Expected `percentages` to hold numbers, but got {describe(percentages)}."
            )
        values = [float(p) for p in percentages]
    else:
        raise TypeError(
            "Expected `percentages` to be a sequence of numbers or a 1-D real tensor, "
            f"but got {describe(percentages)}."
        )
    if not values:
        raise ValueError("Expected `percentages` to hold at least one value, but got none.")
    bad = [p for p in values if not (math.isfinite(p) and 0 <= p <= 100)]
    if bad:
        raise ValueError(
            f"Expected `percentages` to lie in [0, 100] (percent of pixels removed), "
            f"but got {bad[0]!r}. Hint: 0.1 means 0.1 %, pass 10 for a tenth."
        )
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"Expected `percentages` to be strictly increasing, but got {values}.")
    return values


def road_curve(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    order: Order = "morf",
    percentages: Sequence[float] | torch.Tensor = PERCENTAGES,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> torch.Tensor:
    r"""Target probability after ROAD's noisy linear imputation of p % of the pixels.

    Pixels are ranked once by decreasing map value (ties in raster order: the
    earlier pixel counts as more relevant; maps of another size are resized
    bilinearly to the images). For each percentage :math:`p`, the
    :math:`k = \lfloor p H W / 100 \rfloor` top-ranked pixels (``"morf"``,
    most relevant first) or bottom-ranked pixels (``"lerf"``, least relevant
    first) are removed in all channels and filled by
    :func:`noisy_linear_imputation`, and the model's probability of the
    target class is read. So MoRF at :math:`p` and LeRF at :math:`100 - p`
    remove complementary sets when :math:`pHW/100` is an integer. A faithful
    map gives a *low* MoRF curve (removing what it points at destroys the
    evidence) and a *high* LeRF curve.

    All (image, percentage) pairs are imputed and scored in chunks of
    ``batch_size``; with ``noise > 0`` the draws depend on ``generator``'s
    state and on ``batch_size`` (one draw per chunk).

    Conventions differ between implementations: here (as in the paper's text
    and Quantus) ``p`` is always the share *removed*. The paper's code and
    pytorch-grad-cam's ``ROADLeastRelevantFirst(percentile=p)`` keep the top
    p % instead (remove 100 - p %), and pytorch-grad-cam's
    ``ROADMostRelevantFirst(percentile=p)`` thresholds the map at its p-th
    percentile (removes the top 100 - p %); their default grids 10, ..., 90
    are symmetric, so the averages agree. The paper breaks ties by adding
    1e-4 Gaussian noise to the map; add it yourself if wanted.

    Args:
        model: callable ``(n, C, H, W) -> logits (n, K)``, ``(n, 1)`` or
            ``(n,)``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image (int, sequence or LongTensor ``(B,)``);
            ``None`` uses the model's prediction on the intact images.
        order: ``"morf"`` (remove the most relevant first) or ``"lerf"``.
        percentages: shares of pixels removed, in %, strictly increasing in
            [0, 100]; default 10, 20, ..., 90. Quantus uses 1, 3, ..., 99.
        noise: standard deviation of the imputation noise (units of ``images``).
        generator: source of the noise; ``None`` uses the global RNG.
        batch_size: (image, percentage) pairs per imputation and model call.
        tol: relative accuracy of the imputation solve.
        max_iter: most solver iterations per chunk.

    Returns:
        float32 tensor ``(B, P)``, one probability per image and percentage.

    Raises:
        TypeError: on non-float images/maps, bad targets or option types.
        ValueError: on shape mismatches, NaN maps, non-finite images, an
            unknown ``order``, percentages outside [0, 100] or not strictly
            increasing, or targets out of range.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 5] = 10.0; model[1].bias[1] = -5.0  # looks at (1, 1)
        >>> images = torch.zeros(1, 1, 4, 4); images[0, 0, 1, 1] = 1.0
        >>> maps = torch.zeros(1, 4, 4); maps[0, 1, 1] = 1.0          # points at it
        >>> road_curve(model, images, maps, 1, percentages=[0, 25, 50], noise=0.0)
        tensor([[0.9933, 0.0067, 0.0067]])
        >>> road_curve(model, images, maps, 1, order="lerf", percentages=[0, 25, 50],
        ...            noise=0.0)
        tensor([[0.9933, 0.9933, 0.9933]])

    References:
        Rong, Leemann, Borisov, Kasneci and Kasneci, "A consistent and
        efficient evaluation strategy for attribution methods", ICML 2022.
    """
    m = check_model_images_maps(model, images, maps)
    check_one_of(order, "order", ("morf", "lerf"))
    pct = _check_percentages(percentages)
    bs = check_positive_int(batch_size, "batch_size")
    check_solver_options(noise, generator, tol, max_iter)
    b, _, h, w = images.shape
    n_pix = h * w
    n_p = len(pct)
    with torch.no_grad():
        t = class_indices(targets, b, images.device)
        if t is None:
            t = targets_from_model(model, images, bs)
        rank = salience_rank(m)  # (B, H, W), 0 = most relevant
        counts = [int(Fraction(p) * n_pix // 100) for p in pct]
        k = torch.tensor(counts, dtype=torch.long, device=images.device)
        total = b * n_p
        curve = torch.empty(total, dtype=torch.float32, device=images.device)
        for start in range(0, total, bs):
            idx = torch.arange(start, min(start + bs, total), device=images.device)
            img_i, step_i = idx // n_p, idx % n_p
            k_i = k[step_i].view(-1, 1, 1)
            # MoRF removes the k top-ranked pixels, LeRF the k bottom-ranked ones
            removed = rank[img_i] < k_i if order == "morf" else rank[img_i] >= n_pix - k_i
            x = impute(images[img_i], removed, float(noise), generator, float(tol), max_iter)
            curve[start : start + idx.numel()] = target_probability(model(x), t[img_i])
    return curve.view(b, n_p)


def road_auc(
    model: Model,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: ClassTargets = None,
    *,
    order: Order = "morf",
    percentages: Sequence[float] | torch.Tensor = PERCENTAGES,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    tol: float = 1e-5,
    max_iter: int = 100,
) -> torch.Tensor:
    r"""Mean target probability over the ROAD curve, per image (trapezoidal).

    The trapezoidal area under :func:`road_curve` over the fraction removed
    :math:`x_j = p_j / 100`, divided by the range covered, so that it is the
    curve's average probability:

    .. math::

        \mathrm{AUC} = \frac{1}{x_P - x_1} \sum_{j=1}^{P-1}
        (x_{j+1} - x_j) \, \frac{y_j + y_{j+1}}{2}

    (with one percentage, its probability). Over 0 to 100 % this is the
    formula of :func:`deletion_auc`. Lower is more faithful for ``"morf"``,
    higher for ``"lerf"``; ``(road_auc(..., order="lerf") - road_auc(...,
    order="morf")) / 2`` is a one-number summary in the spirit of
    pytorch-grad-cam's ``ROADCombined`` (which takes plain means over the
    percentages instead of the trapezoid).

    Args:
        model: callable ``(n, C, H, W) -> logits``, in eval mode.
        images: model inputs, float ``(B, C, H, W)``.
        maps: saliency maps ``(B, h, w)``.
        targets: class per image; ``None`` uses the prediction on the intact images.
        order: ``"morf"`` or ``"lerf"``.
        percentages: shares of pixels removed, in %, strictly increasing.
        noise: standard deviation of the imputation noise.
        generator: source of the noise; ``None`` uses the global RNG.
        batch_size: (image, percentage) pairs per imputation and model call.
        tol: relative accuracy of the imputation solve.
        max_iter: most solver iterations per chunk.

    Returns:
        float32 tensor ``(B,)`` in [0, 1].

    Raises:
        TypeError: on non-float images/maps, bad targets or option types.
        ValueError: as :func:`road_curve`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.zero_(); _ = model[1].bias.zero_()
        ...     model[1].weight[1, 5] = 10.0; model[1].bias[1] = -5.0
        >>> images = torch.zeros(2, 1, 4, 4); images[:, 0, 1, 1] = 1.0
        >>> good = torch.zeros(4, 4); good[1, 1] = 1.0        # points at the evidence
        >>> bad = -good                                       # ranks it last
        >>> road_auc(model, images, torch.stack([good, bad]), 1, noise=0.0,
        ...          percentages=[25, 50, 75])
        tensor([0.0067, 0.9933])

    References:
        Rong, Leemann, Borisov, Kasneci and Kasneci, "A consistent and
        efficient evaluation strategy for attribution methods", ICML 2022.
    """
    pct = _check_percentages(percentages)
    curve = road_curve(
        model,
        images,
        maps,
        targets,
        order=order,
        percentages=pct,
        noise=noise,
        generator=generator,
        batch_size=batch_size,
        tol=tol,
        max_iter=max_iter,
    )
    if len(pct) == 1:
        return curve[:, 0]
    x = torch.tensor(pct, dtype=torch.float64, device=curve.device) / 100
    dx = (x[1:] - x[:-1]).to(curve.dtype)
    area = ((curve[:, 1:] + curve[:, :-1]) / 2 * dx).sum(dim=1)
    return area / float(x[-1] - x[0])
