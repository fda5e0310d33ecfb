"""A weighted sum of named CAM losses with warm-up ramps."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from camseg._checks import check_nonnegative, check_positive_int, describe

__all__ = ["CAMRegularizer", "RegularizerOutput"]


class RegularizerOutput(NamedTuple):
    """Output of :class:`CAMRegularizer`.

    Attributes:
        total: the weighted sum, a scalar tensor that carries gradients.
        components: each loss by name, unweighted and detached (for logging); a loss
            whose current weight is 0 is not computed and reads 0.
    """

    total: torch.Tensor
    components: dict[str, torch.Tensor]


class CAMRegularizer(nn.Module):
    r"""A weighted sum of named CAM losses, with optional linear warm-up of the weights.

    Each term is a loss module (or function) and a weight :math:`w_i \ge 0`. A call
    passes keyword inputs (``maps``, ``labels``, ``images``, ``cam_fn``, ``score_fn``,
    ``masks``, ...); each loss receives the inputs its ``forward`` (or signature)
    names, so losses with different inputs mix freely. With a warm-up of :math:`W_i`
    steps the weight at step :math:`t` is

    .. math::

        w_i(t) = w_i \min\bigl(1, \max(0, t) / W_i\bigr), \qquad
        L(t) = \sum_i w_i(t) \, \ell_i .

    Terms whose current weight is 0 are skipped, so an expensive loss costs nothing
    during its warm-up's first step. Ramps are keyed by whatever ``step`` counts
    (optimiser steps or epochs).

    Args:
        terms: ``{name: (loss, weight)}``; ``loss`` is an ``nn.Module`` or a callable.
        warmup: steps of the linear ramp, one number for all terms or ``{name: steps}``
            (missing names: no warm-up). 0 disables the ramp.

    Raises:
        TypeError: if a loss is not callable, or a weight or warm-up is not a number.
        ValueError: if a weight is negative, there are no terms, or ``warmup`` names a
            term that does not exist.

    Example:
        >>> from camseg.losses import SmoothnessLoss, SuppressionLoss
        >>> reg = CAMRegularizer(
        ...     {"suppress": (SuppressionLoss(), 1.0), "tv": (SmoothnessLoss(), 0.5)},
        ...     warmup={"tv": 10},
        ... )
        >>> maps = torch.ones(2, 6, 6)
        >>> total, parts = reg(maps=maps, labels=torch.tensor([0, 1]), step=5)
        >>> float(total), {k: float(v) for k, v in parts.items()}
        (1.0, {'suppress': 1.0, 'tv': 0.0})
    """

    def __init__(
        self,
        terms: Mapping[str, tuple[Callable[..., torch.Tensor], float]],
        *,
        warmup: int | Mapping[str, int] = 0,
    ) -> None:
        super().__init__()
        if not isinstance(terms, Mapping) or not terms:
            raise ValueError(
                "Expected `terms` to be a non-empty mapping {name: (loss, weight)}, but got "
                f"{describe(terms)}."
            )
        self.names: list[str] = []
        self.weights: dict[str, float] = {}
        self._params: dict[str, tuple[set[str], set[str], bool]] = {}
        losses: dict[str, nn.Module] = {}
        self._functions: dict[str, Callable[..., torch.Tensor]] = {}
        for name, term in terms.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"Expected the names in `terms` to be str, but got {describe(name)}."
                )
            if not isinstance(term, tuple) or len(term) != 2:
                raise TypeError(
                    f"Expected `terms[{name!r}]` to be a pair (loss, weight), but got "
                    f"{describe(term)}."
                )
            loss, weight = term
            if not callable(loss):
                raise TypeError(
                    f"Expected the loss of `terms[{name!r}]` to be callable, but got "
                    f"{describe(loss)}."
                )
            check_nonnegative(weight, f"terms[{name!r}] weight")
            self.names.append(name)
            self.weights[name] = float(weight)
            if isinstance(loss, nn.Module):
                losses[name] = loss
                signature = inspect.signature(loss.forward)
            else:
                self._functions[name] = loss
                signature = inspect.signature(loss)
            self._params[name] = _parameters(signature)
        self.losses = nn.ModuleDict(losses)
        if isinstance(warmup, Mapping):
            unknown = [k for k in warmup if k not in self.weights]
            if unknown:
                raise ValueError(
                    f"Expected the names in `warmup` to be terms ({', '.join(self.names)}), "
                    f"but got {unknown}."
                )
            self.warmup = {k: check_positive_int(v, f"warmup[{k!r}]", 0) for k, v in warmup.items()}
        else:
            check_positive_int(warmup, "warmup", 0)
            self.warmup = dict.fromkeys(self.names, warmup)

    def current_weights(self, *, step: int | None = None) -> dict[str, float]:
        """The weights at ``step`` after the warm-up ramps.

        Args:
            step: the current step (or epoch); None means the end of every ramp.

        Returns:
            ``{name: weight}``.

        Raises:
            TypeError: if ``step`` is not an int or None.
            ValueError: if ``step`` is negative.

        Example:
            >>> from camseg.losses import SmoothnessLoss
            >>> reg = CAMRegularizer({"tv": (SmoothnessLoss(), 2.0)}, warmup=4)
            >>> reg.current_weights(step=1), reg.current_weights(step=10)
            ({'tv': 0.5}, {'tv': 2.0})
        """
        if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
            raise TypeError(f"Expected `step` to be an int or None, but got {describe(step)}.")
        if step is not None and step < 0:
            raise ValueError(f"Expected `step` to be an int >= 0 or None, but got {step}.")
        out = {}
        for name in self.names:
            ramp = self.warmup.get(name, 0)
            factor = 1.0 if step is None or ramp == 0 else min(1.0, max(0, step) / ramp)
            out[name] = self.weights[name] * factor
        return out

    def forward(self, *, step: int | None = None, **kwargs: Any) -> RegularizerOutput:
        """Compute the weighted sum and its components.

        Args:
            step: the current step (or epoch) for the warm-up ramps; None means fully
                warmed up.
            **kwargs: the losses' inputs by name (``maps``, ``labels``, ``images``,
                ``cam_fn``, ``score_fn``, ``masks``, ``valid``, ``generator`` ...).

        Returns:
            :class:`RegularizerOutput` ``(total, components)``.

        Raises:
            TypeError: if a loss needs an input that was not given.
        """
        weights = self.current_weights(step=step)
        total: torch.Tensor | None = None
        components: dict[str, torch.Tensor] = {}
        for name in self.names:
            required, accepted, var_kw = self._params[name]
            missing = sorted(required - kwargs.keys())
            if missing:
                raise TypeError(
                    f"Expected the inputs of CAMRegularizer to include {missing} for the term "
                    f"{name!r}, but got only {sorted(kwargs)}."
                )
            if weights[name] == 0.0:
                continue
            given = kwargs if var_kw else {k: v for k, v in kwargs.items() if k in accepted}
            loss_fn = self.losses[name] if name in self.losses else self._functions[name]
            value = loss_fn(**given)
            components[name] = value.detach()
            term = weights[name] * value
            total = term if total is None else total + term
        if total is None:
            like = next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            total = torch.zeros((), device=None if like is None else like.device)
        for name in self.names:
            if name not in components:
                components[name] = torch.zeros((), device=total.device)
        return RegularizerOutput(total, {k: components[k] for k in self.names})


def _parameters(signature: inspect.Signature) -> tuple[set[str], set[str], bool]:
    """Required and accepted keyword names of a loss, and whether it takes ``**kwargs``."""
    required, accepted, var_kw = set(), set(), False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            accepted.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
    return required, accepted, var_kw
