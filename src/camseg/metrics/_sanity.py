"""Sanity checks for saliency maps: model-parameter randomisation (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from camseg._checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_same_shape,
    check_tensor,
    describe,
)
from camseg.metrics._classification import _average_ranks
from camseg.metrics._faithfulness import Targets, _as_targets, _targets_from_model

__all__ = ["randomisation_similarity", "spearman"]

CamFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Spearman rank correlation per image between two batches of maps.

    Each map is flattened; ranks are the batched average ranks (ties get the
    mean rank, as :func:`scipy.stats.spearmanr`), and the correlation is the
    Pearson correlation of the ranks:

    .. math::

        \rho = \frac{\operatorname{cov}(r(a), r(b))}{\sigma_{r(a)} \sigma_{r(b)}}

    A constant map has no rank variance: its correlation is NaN.

    Args:
        a: maps ``(B, ...)`` (e.g. ``(B, H, W)``), real.
        b: maps of the same shape.

    Returns:
        float64 tensor ``(B,)`` in [-1, 1].

    Raises:
        TypeError: if an argument is not a real tensor.
        ValueError: on a shape mismatch, a missing batch dimension or NaN.

    Example:
        >>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
        >>> b = torch.tensor([[10.0, 20.0, 30.0, 99.0], [4.0, 3.0, 2.0, 1.0]])
        >>> spearman(a, b)
        tensor([ 1., -1.], dtype=torch.float64)
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
    ra = _average_ranks(a.flatten(1))
    rb = _average_ranks(b.flatten(1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    den = torch.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    num = (ra * rb).sum(1)
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan)


def _randomise(module: nn.Module) -> None:
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


def randomisation_similarity(
    model: nn.Module,
    cam_fn: CamFn,
    images: torch.Tensor,
    *,
    layers: Sequence[str],
    targets: Targets = None,
    seed: int = 0,
) -> torch.Tensor:
    """Model-parameter randomisation test: map similarity as layers are randomised.

    Cascading randomisation (Adebayo et al. 2018): on a deep copy of the model
    (the caller's model is never changed), the layers named in ``layers`` are
    re-initialised one after the other, in the order given -- from the top
    (output) down -- and after each step the maps are recomputed and compared
    with the original ones by the per-image :func:`spearman` rank
    correlation. A map method that passes the check loses its similarity
    quickly; high similarity after randomising the whole network means the
    maps do not depend on what the model learnt.

    A layer is re-initialised by calling ``reset_parameters()`` on it and all
    its submodules that have one (PyTorch's default init); parameters of
    modules without it are redrawn from a normal distribution with their
    current standard deviation. The random draws come from ``seed`` inside a
    forked RNG, so the caller's global RNG state is left as it was.

    The targets are fixed once, before any randomisation (``None``: the
    original model's predictions), and passed to every ``cam_fn`` call, so all
    maps explain the same class.

    Args:
        model: the trained model (left unchanged).
        cam_fn: callable ``(model, images, targets) -> maps (B, H, W)``, e.g.
            ``lambda m, x, t: camseg.GradCAM(m, "layer4")(x, targets=t)``.
        images: inputs, float ``(B, C, H, W)``.
        layers: module names (as in ``model.named_modules()``) to randomise,
            from the top down.
        targets: class per image (int, sequence or LongTensor ``(B,)``).
        seed: seed of the re-initialisation.

    Returns:
        float64 tensor ``(len(layers), B)``: row ``i`` is the Spearman
        correlation after randomising ``layers[: i + 1]``.

    Raises:
        TypeError: on a non-module model, a non-callable ``cam_fn``, bad
            ``layers`` or ``targets``, or ``cam_fn`` returning no tensor.
        ValueError: on an unknown layer name, an empty ``layers``, or maps of
            the wrong shape or with NaN.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1),
        ...                             torch.nn.Flatten(), torch.nn.Linear(32, 2))
        >>> def saliency(m, x, t):       # |input gradient| as the map
        ...     x = x.clone().requires_grad_(True)
        ...     score = m(x).gather(1, t[:, None]).sum()
        ...     return torch.autograd.grad(score, x)[0].abs()[:, 0]
        >>> rho = randomisation_similarity(model, saliency, torch.rand(3, 1, 4, 4),
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
    if not callable(cam_fn):
        raise TypeError(f"Expected `cam_fn` to be callable, but got {describe(cam_fn)}.")
    check_tensor(images, "images")
    check_ndim(images, "images", 4, "(B, C, H, W)")
    check_floating(images, "images")
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(
            f"Expected `layers` to be a sequence of module names, but got {describe(layers)}."
        )
    if len(layers) == 0:
        raise ValueError("Expected `layers` to name at least one module, but got none.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"Expected `seed` to be an int, but got {describe(seed)}.")
    names = dict(model.named_modules())
    for name in layers:
        if not isinstance(name, str) or name not in names or name == "":
            raise ValueError(
                f"Expected `layers` to name submodules of the model, but got {name!r}. "
                "Hint: see [n for n, _ in model.named_modules()]."
            )

    b = images.shape[0]
    work = copy.deepcopy(model)
    t = _as_targets(targets, b, images.device)
    if t is None:
        with torch.no_grad():
            t = _targets_from_model(work, images, b)

    def maps_of(m: nn.Module) -> torch.Tensor:
        out = cam_fn(m, images, t)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"Expected `cam_fn` to return a torch.Tensor, but got {describe(out)}.")
        check_ndim(out, "cam_fn(...)", 3, f"({b}, H, W)")
        if out.shape[0] != b:
            raise ValueError(
                f"Expected `cam_fn(...)` to return {b} maps, but got shape {tuple(out.shape)}."
            )
        return out.detach()

    original = maps_of(work)
    modules = dict(work.named_modules())
    fork_devices = [images.device] if images.device.type == "cuda" else []
    rows = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        for name in layers:
            _randomise(modules[name])
            rows.append(spearman(original, maps_of(work)))
    return torch.stack(rows)
