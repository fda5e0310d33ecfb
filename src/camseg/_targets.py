"""The one interpreter of ``targets``: user targets into class indices and scores.

Extractors and :class:`camseg.LayerCapture` turn :data:`Targets` into the
scores a CAM differentiates (:func:`resolve_scores`); the perturbation metrics
need one class per image before any model call (:data:`ClassTargets`,
:func:`class_indices`, :func:`check_class_range`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch

from camseg._checks import describe

__all__ = [
    "ClassTargets",
    "Targets",
    "check_class_range",
    "class_indices",
    "gives_scores",
    "resolve_scores",
]

Targets: TypeAlias = (
    int
    | Sequence[int]
    | torch.Tensor
    | np.ndarray
    | Callable[[torch.Tensor], torch.Tensor]
    | Sequence[Callable[[torch.Tensor], torch.Tensor]]
    | None
)
"""What a CAM may be asked to explain.

- ``None``: the predicted class of each image (argmax; ``logit > 0`` for a
  single-logit head).
- ``int``: the same class for every image.
- sequence of ints or LongTensor ``(B,)``: one class per image.
- LongTensor ``(B, K)``: ``K`` classes per image (maps ``(B, K, H, W)``).
- NumPy integers work wherever ints do: scalars, arrays ``(B,)``/``(B, K)`` and
  sequences of them (``list(np.argmax(probs, 1))``).
- callable ``logits -> scores`` returning ``(B,)`` or ``(B, K)``: any
  differentiable score (a margin, a probability, a sum of classes).
- sequence of ``B`` callables, one per image, each given that image's output
  (``logits[i]``) and returning its score: pytorch-grad-cam's target objects
  (``[ClassifierOutputTarget(3), ...]``) work unchanged. A callable that
  returns several numbers is summed to one score, as pytorch-grad-cam does.

For a single-logit binary head ``(B, 1)`` class 1 scores the logit and class 0
scores its negative.
"""


ClassTargets: TypeAlias = int | Sequence[int] | torch.Tensor | np.ndarray | None
"""One class per image: ``None`` (the prediction), an int, a sequence or a LongTensor ``(B,)``
(NumPy integers and arrays too)."""


def _from_numpy(targets: object) -> object:
    """NumPy integer scalars, arrays and sequences of NumPy integers as ints / tensors.

    Anything else is returned unchanged (floating or bool NumPy values become
    tensors or Python values of that kind, so the usual type errors name them).
    """
    if isinstance(targets, np.ndarray):
        if targets.dtype == object:
            return list(targets.tolist())
        return torch.from_numpy(np.ascontiguousarray(targets))
    if isinstance(targets, np.generic):
        return targets.item()
    if (
        isinstance(targets, Sequence)
        and not isinstance(targets, (str, bytes))
        and any(isinstance(v, np.generic) for v in targets)
    ):
        return [v.item() if isinstance(v, np.generic) else v for v in targets]
    return targets


def _per_image_callables(targets: object) -> list[Callable[[torch.Tensor], object]] | None:
    """The callables of a non-empty sequence made only of callables, else None."""
    if (
        isinstance(targets, Sequence)
        and not isinstance(targets, (str, bytes))
        and len(targets) > 0
        and all(callable(t) and not isinstance(t, torch.Tensor) for t in targets)
    ):
        return list(targets)
    return None


def gives_scores(targets: object) -> bool:
    """True for targets that define scores rather than classes.

    That is a callable or a sequence of per-image callables.
    """
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return True
    return _per_image_callables(targets) is not None


def class_indices(targets: ClassTargets, batch: int, device: torch.device) -> torch.Tensor | None:
    """One class id per image as a LongTensor ``(batch,)`` on ``device``.

    ``None`` stays ``None`` (the caller takes the model's prediction). A 0-d
    tensor is expanded to every image. Callables and ``(B, K)`` targets are
    rejected: the caller needs exactly one class per image.

    Raises:
        TypeError: for bool, float or complex ids, a callable or another type.
        ValueError: for a shape other than ``(batch,)`` or a negative id.
    """
    if targets is None:
        return None
    targets = _from_numpy(targets)  # type: ignore[assignment]
    if _per_image_callables(targets) is not None:
        raise TypeError(
            "Expected `targets` to be one class per image (None, an int, a sequence or a "
            "LongTensor (B,)), but got a sequence of callables: this function needs class "
            "indices."
        )
    if isinstance(targets, bool):
        raise TypeError(f"Expected `targets` to be class ids, but got {describe(targets)}.")
    if isinstance(targets, int):
        t = torch.full((batch,), targets, dtype=torch.long, device=device)
    else:
        if isinstance(targets, torch.Tensor):
            t = targets.expand(batch) if targets.ndim == 0 else targets
        elif isinstance(targets, Sequence) and not isinstance(targets, (str, bytes)):
            items = list(targets)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
                raise TypeError(
                    f"Expected `targets` to hold integer class ids, but got {items[:5]!r}."
                )
            t = torch.tensor(items, dtype=torch.long)
        elif callable(targets):
            raise TypeError(
                "Expected `targets` to be one class per image (None, an int, a sequence or a "
                "LongTensor (B,)), but got a callable: this function needs class indices."
            )
        else:
            raise TypeError(
                f"Expected `targets` to be None, an int, a sequence or a LongTensor (B,), "
                f"but got {describe(targets)}."
            )
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(f"Expected `targets` to hold integer class ids, but got {t.dtype}.")
        if t.ndim != 1 or t.shape[0] != batch:
            raise ValueError(
                f"Expected `targets` to have shape ({batch},), one class per image, "
                f"but got shape {tuple(t.shape)}."
            )
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"Expected `targets` to be >= 0, but got {int(t.min())}.")
    return t.to(device=device, dtype=torch.long)


def check_class_range(indices: torch.Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless every index is a class of a ``num_classes``-logit head.

    A single-logit head (``num_classes == 1``) has the classes 0 and 1.
    """
    if not indices.numel():
        return
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0:
        raise ValueError(f"Expected `targets` to be >= 0, but got {lo}.")
    if num_classes == 1 and hi > 1:
        raise ValueError(f"Expected `targets` in [0, 1] for a single-logit head, but got {hi}.")
    if num_classes > 1 and hi >= num_classes:
        raise ValueError(
            f"Expected `targets` in [0, {num_classes - 1}] for {num_classes} classes, but got {hi}."
        )


def _check_logits(logits: torch.Tensor, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"Expected the model output `{name}` to be a torch.Tensor of shape (B, C), but got "
            f"{describe(logits)}. Hint: pass `targets` as a callable that maps the output to "
            "scores of shape (B,)."
        )
    if logits.ndim != 2:
        raise ValueError(
            f"Expected the model output `{name}` to have shape (B, C), but got shape "
            f"{tuple(logits.shape)}. Hint: pass `targets` as a callable that maps the output to "
            "scores of shape (B,) or (B, K)."
        )


def _as_index_tensor(targets: object, batch: int, device: torch.device) -> torch.Tensor:
    targets = _from_numpy(targets)
    if isinstance(targets, torch.Tensor):
        t = targets
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(
                f"Expected `targets` to be an integer (long) tensor of class indices, but got "
                f"{t.dtype}. Hint: use `targets.long()` if the values are whole numbers."
            )
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim not in (1, 2):
            raise ValueError(
                f"Expected `targets` to have shape (B,) or (B, K) with B = {batch}, but got shape "
                f"{tuple(t.shape)}."
            )
        return t.to(device=device, dtype=torch.long)
    if isinstance(targets, bool):
        raise TypeError(f"Expected `targets` to be an int class index, but got {targets!r}.")
    if isinstance(targets, int):
        return torch.full((batch,), targets, dtype=torch.long, device=device)
    if isinstance(targets, Sequence) and not isinstance(targets, (str, bytes)):
        items = list(targets)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise TypeError(
                f"Expected `targets` to be a sequence of int class indices, but got {items[:5]!r}."
            )
        return torch.tensor(items, dtype=torch.long, device=device)
    raise TypeError(
        "Expected `targets` to be None, an int, a sequence of ints, a LongTensor of shape (B,) "
        f"or (B, K), or a callable logits -> scores, but got {describe(targets)}."
    )


def resolve_scores(
    logits: torch.Tensor, targets: Targets, *, name: str = "logits"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(scores, target_indices)`` for a model output and a target spec.

    ``scores`` has shape ``(B,)`` or ``(B, K)``; ``target_indices`` is the
    LongTensor of classes explained (``None`` when ``targets`` is a callable).
    """
    per_image = _per_image_callables(targets)
    if per_image is not None:
        return _per_image_scores(logits, per_image), None
    if callable(targets) and not isinstance(targets, torch.Tensor):
        scores = targets(logits)
        batch = logits.shape[0] if isinstance(logits, torch.Tensor) and logits.ndim else None
        if not isinstance(scores, torch.Tensor) or scores.ndim not in (1, 2):
            raise ValueError(
                "Expected the `targets` callable to return scores of shape (B,) or (B, K), but "
                f"got {describe(scores)}."
            )
        if batch is not None and scores.shape[0] != batch:
            raise ValueError(
                f"Expected the `targets` callable to return {batch} scores (one per image), but "
                f"got shape {tuple(scores.shape)}."
            )
        if not scores.is_floating_point():
            raise TypeError(
                f"Expected the `targets` callable to return floating scores, but got "
                f"{scores.dtype}."
            )
        return scores, None

    _check_logits(logits, name)
    batch, n_cls = logits.shape
    if targets is None:
        idx = (logits[:, 0] > 0).long() if n_cls == 1 else logits.argmax(dim=1)
    else:
        idx = _as_index_tensor(targets, batch, logits.device)
    if idx.shape[0] != batch:
        raise ValueError(
            f"Expected `targets` to give one class per image ({batch} images), but got "
            f"{idx.shape[0]} (shape {tuple(idx.shape)}). Targets are never truncated or repeated."
        )
    limit = 2 if n_cls == 1 else n_cls
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= limit:
            head = "a single-logit head (classes 0 and 1)" if n_cls == 1 else f"{n_cls} classes"
            raise ValueError(
                f"Expected `targets` in [0, {limit - 1}] for {head}, but got values in "
                f"[{lo}, {hi}]."
            )
    if n_cls == 1:
        sign = (2 * idx - 1).to(logits.dtype)
        scores = sign * (logits[:, 0] if idx.ndim == 1 else logits[:, :1].expand_as(sign))
    elif idx.ndim == 1:
        scores = logits.gather(1, idx[:, None]).squeeze(1)
    else:
        scores = logits.gather(1, idx)
    return scores, idx


def _per_image_scores(
    logits: torch.Tensor, fns: list[Callable[[torch.Tensor], object]]
) -> torch.Tensor:
    """``(B,)`` scores from one callable per image, each given ``logits[i]``."""
    if not isinstance(logits, torch.Tensor) or logits.ndim == 0:
        raise TypeError(
            "Expected the model output to be a tensor with a batch axis for a sequence of "
            f"per-image `targets` callables, but got {describe(logits)}."
        )
    if len(fns) != logits.shape[0]:
        raise ValueError(
            f"Expected one `targets` callable per image ({logits.shape[0]} images), but got "
            f"{len(fns)}. Targets are never truncated or repeated."
        )
    scores = []
    for i, fn in enumerate(fns):
        s = fn(logits[i])
        if not isinstance(s, torch.Tensor) or not s.is_floating_point() or s.numel() == 0:
            raise TypeError(
                f"Expected `targets[{i}]` to return a floating tensor score for image {i}, but "
                f"got {describe(s)}."
            )
        scores.append(s.sum())
    return torch.stack(scores)
