"""Sanity checks for saliency maps: model-parameter randomization (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
from torch import nn

from camseg._checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_pixels,
    check_same_shape,
    check_tensor,
    describe,
)
from camseg.capture import LayerSpec, resolve_layers
from camseg.metrics._perturb import (
    ClassTargets,
    check_class_range,
    class_indices,
    targets_from_model,
)
from camseg.metrics._ranking import average_ranks

__all__ = ["ExplainFn", "randomization_similarity", "spearman"]

ExplainFn: TypeAlias = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""An explanation method ``(model, images, targets) -> maps (B, H, W)``.

Unlike the losses' ``cam_fn`` (``images -> maps``, one fixed model), it takes
the model, so that the maps of a randomized copy can be computed.
"""


def _rank_correlation(
    a: torch.Tensor,
    b: torch.Tensor,
    zero_division: float | None,
    names: tuple[str, str],
) -> torch.Tensor:
    """Per-row Spearman correlation of ``(B, N)`` tensors; constant rows by ``zero_division``."""
    ra = average_ranks(a)
    rb = average_ranks(b)
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    var_a, var_b = (ra**2).sum(1), (rb**2).sum(1)
    den = torch.sqrt(var_a * var_b)
    num = (ra * rb).sum(1)
    defined = den > 0
    if zero_division is None and not bool(defined.all()):
        which, flat = (names[0], var_a) if not bool((var_a > 0).all()) else (names[1], var_b)
        i = int(torch.nonzero(flat <= 0)[0, 0])
        raise ValueError(
            f"Expected {which} to vary within each map, but map {i} is constant: Spearman's "
            "rank correlation is undefined for it. Hint: pass `zero_division=0.0` to score "
            "such a pair as uncorrelated (or NaN to mark it)."
        )
    fill = torch.full_like(num, float("nan") if zero_division is None else zero_division)
    return torch.where(defined, num / torch.where(defined, den, 1.0), fill)


def _check_zero_division(zero_division: object) -> float | None:
    if zero_division is None:
        return None
    if not isinstance(zero_division, (int, float)) or isinstance(zero_division, bool):
        raise TypeError(
            "Expected `zero_division` to be None (raise) or a number such as 0.0, "
            f"but got {describe(zero_division)}."
        )
    return float(zero_division)


def spearman(
    a: torch.Tensor, b: torch.Tensor, *, zero_division: float | None = None
) -> torch.Tensor:
    r"""Spearman rank correlation per image between two batches of maps.

    Each map is flattened; ranks are the batched average ranks (ties get the
    mean rank, as :func:`scipy.stats.spearmanr`), and the correlation is the
    Pearson correlation of the ranks:

    .. math::

        \rho = \frac{\operatorname{cov}(r(a), r(b))}{\sigma_{r(a)} \sigma_{r(b)}}

    A constant map has no rank variance, so :math:`\rho` is undefined for it
    (SciPy returns NaN with a warning). camseg raises a ``ValueError`` that
    names the map, unless ``zero_division`` gives the value to use instead:
    0.0 scores the pair as uncorrelated, NaN marks it.

    Args:
        a: maps ``(B, ...)`` (e.g. ``(B, H, W)``), real.
        b: maps of the same shape.
        zero_division: value for a pair with a constant map; ``None`` (the
            default) raises.

    Returns:
        float64 tensor ``(B,)`` in [-1, 1] (or ``zero_division`` for pairs
        with a constant map).

    Raises:
        TypeError: if an argument is not a real tensor, or ``zero_division``
            neither None nor a number.
        ValueError: on a shape mismatch, a missing batch dimension, NaN, or a
            constant map with ``zero_division=None``.

    Example:
        >>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
        >>> b = torch.tensor([[10.0, 20.0, 30.0, 99.0], [4.0, 3.0, 2.0, 1.0]])
        >>> spearman(a, b)
        tensor([ 1., -1.], dtype=torch.float64)
        >>> spearman(a, torch.ones(2, 4), zero_division=0.0)
        tensor([0., 0.], dtype=torch.float64)
    """
    for value, name in ((a, "a"), (b, "b")):
        check_tensor(value, name)
        if value.ndim < 2:
            raise ValueError(
                f"Expected `{name}` to be a tensor of shape (B, ...), "
                f"but got shape {tuple(value.shape)}."
            )
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"Expected `{name}` to hold real values, but got {value.dtype}.")
        check_finite(value, name)
    check_same_shape(a, "a", b, "b")
    zd = _check_zero_division(zero_division)
    return _rank_correlation(a.flatten(1), b.flatten(1), zd, ("`a`", "`b`"))


def _randomize(module: nn.Module) -> None:
    """Re-draw the parameters of ``module`` and its children (global RNG)."""
    done: set[int] = set()
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
            done.update(id(p) for p in sub.parameters(recurse=False))
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in done:
                std = float(p.std()) if p.numel() > 1 else 0.0
                p.normal_(0.0, std if std > 0 else 0.01)


def randomization_similarity(
    model: nn.Module,
    explain_fn: ExplainFn,
    images: torch.Tensor,
    *,
    layers: Sequence[LayerSpec],
    targets: ClassTargets = None,
    seed: int = 0,
    zero_division: float | None = None,
) -> torch.Tensor:
    """Model-parameter randomization test: map similarity as layers are randomized.

    Cascading randomization (Adebayo et al. 2018): on a deep copy of the model
    (the caller's model is never changed), the layers named in ``layers`` are
    re-initialized one after the other, in the order given -- from the top
    (output) down -- and after each step the maps are recomputed and compared
    with the original ones by the per-image :func:`spearman` rank
    correlation. A map method that passes the check loses its similarity
    quickly; high similarity after randomizing the whole network means the
    maps do not depend on what the model learnt.

    A layer is re-initialized by calling ``reset_parameters()`` on it and all
    its submodules that have one (PyTorch's default init); parameters of
    modules without it are redrawn from a normal distribution with their
    current standard deviation. The random draws come from ``seed`` inside a
    forked RNG, so the caller's global RNG state is left as it was.

    The targets are fixed once, before any randomization (``None``: the
    original model's predictions), checked against the model's classes, and
    passed to every ``explain_fn`` call, so all maps explain the same class.

    Args:
        model: the trained model (left unchanged).
        explain_fn: callable ``(model, images, targets) -> maps (B, H, W)``, e.g.
            ``lambda m, x, t: camseg.GradCAM(m, "layer4")(x, targets=t)``.
        images: inputs, float ``(B, C, H, W)``.
        layers: layers to randomize, from the top down: names as in
            :func:`camseg.list_layers` (or submodules of ``model``).
        targets: class per image (int, sequence or LongTensor ``(B,)``).
        seed: seed of the re-initialization.
        zero_division: the similarity of a pair where a map is constant (e.g.
            a randomized model whose maps are all zero); ``None`` raises.

    Returns:
        float64 tensor ``(len(layers), B)``: row ``i`` is the Spearman
        correlation after randomizing ``layers[: i + 1]``.

    Raises:
        TypeError: on a non-module model, a non-callable ``explain_fn``, bad
            ``layers`` or ``targets``, or ``explain_fn`` returning no tensor.
        ValueError: on images without pixels, an unknown or repeated layer, an
            empty ``layers``, targets outside the model's classes, maps of the wrong shape or
            with NaN, or a constant map with ``zero_division=None``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 2))
        >>> def saliency(m, x, t):       # |input gradient| as the map
        ...     x = x.clone().requires_grad_(True)
        ...     score = m(x).gather(1, t[:, None]).sum()
        ...     return torch.autograd.grad(score, x)[0].abs()[:, 0]
        >>> rho = randomization_similarity(model, saliency, torch.rand(3, 1, 4, 4),
        ...                                layers=["2", "0"])
        >>> rho.shape
        torch.Size([2, 3])
        >>> bool((rho[-1] < 0.99).all())
        True

    References:
        Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity checks for
        saliency maps", NeurIPS 2018.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module, but got {describe(model)}.")
    if not callable(explain_fn):
        raise TypeError(f"Expected `explain_fn` to be callable, but got {describe(explain_fn)}.")
    check_tensor(images, "images")
    check_ndim(images, "images", 4, "(B, C, H, W)")
    check_floating(images, "images")
    check_pixels(images, "images")
    check_finite(images, "images")
    if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence):
        raise TypeError(
            f"Expected `layers` to be a sequence of layer names, but got {describe(layers)}."
        )
    if len(layers) == 0:
        raise ValueError("Expected `layers` to name at least one module, but got none.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"Expected `seed` to be an int, but got {describe(seed)}.")
    zd = _check_zero_division(zero_division)
    names = [name for name, _ in resolve_layers(model, list(layers))]

    b = images.shape[0]
    work = copy.deepcopy(model)
    t = class_indices(targets, b, images.device)
    with torch.no_grad():
        if t is None:
            t = targets_from_model(work, images, b)
        elif b:
            check_class_range(t, work(images[:1]))

    def maps_of(m: nn.Module) -> torch.Tensor:
        out = explain_fn(m, images, t)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"Expected `explain_fn` to return a torch.Tensor, but got {describe(out)}."
            )
        check_ndim(out, "explain_fn(...)", 3, f"({b}, H, W)")
        if out.shape[0] != b:
            raise ValueError(
                f"Expected `explain_fn(...)` to return {b} maps, but got shape {tuple(out.shape)}."
            )
        check_finite(out, "explain_fn(...)")
        return out.detach()

    original = maps_of(work)
    modules = dict(work.named_modules())
    fork_devices = [images.device] if images.device.type == "cuda" else []
    rows = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        for name in names:
            _randomize(modules[name])
            after = maps_of(work)
            if after.shape != original.shape:
                raise ValueError(
                    f"Expected `explain_fn(...)` to return maps of one shape, but got "
                    f"{tuple(original.shape)} before and {tuple(after.shape)} after "
                    f"randomizing {name!r}."
                )
            rows.append(
                _rank_correlation(
                    original.flatten(1),
                    after.flatten(1),
                    zd,
                    ("the original maps", f"the maps after randomizing {name!r}"),
                )
            )
    return torch.stack(rows)
