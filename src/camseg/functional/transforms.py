"""The square symmetries of an image, and dense predictions averaged over them.

Histology has no canonical orientation, so a dense prediction (a map, a
per-pixel probability) should not change when the patch is rotated or mirrored
and the prediction is turned back. :func:`transform_mean` enforces that at
inference time (test-time augmentation): the function runs on every transformed
copy of the batch, each output is mapped back, and the outputs are averaged.
The same group elements serve the equivariance loss
(:func:`camseg.losses.equivariance_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from camseg._checks import check_callable, check_images, check_one_of, check_tensor, describe

__all__ = ["Group", "apply_transform", "transform_group", "transform_mean"]

Group = Literal["d4", "c4", "flips"]
"""A rotation/flip group: ``"d4"`` (8 elements), ``"c4"`` (4 rotations), ``"flips"`` (3)."""


def transform_group(transforms: Group | None) -> list[tuple[int, bool]]:
    """The elements of a rotation/flip group as ``(quarter_turns, flip)`` pairs.

    ``flip`` mirrors the last axis before rotating by ``quarter_turns × 90°``
    counter-clockwise (``torch.rot90`` on the last two axes). The identity comes
    first.

    Args:
        transforms: ``"d4"`` (8 rotations and reflections: histology has no canonical
            orientation), ``"c4"`` (4 rotations), ``"flips"`` (identity, horizontal,
            vertical flip) or None (the identity only).

    Returns:
        The list of elements.

    Raises:
        ValueError: if ``transforms`` is not one of the names.

    Example:
        >>> transform_group("flips")
        [(0, False), (0, True), (2, True)]
        >>> len(transform_group("d4"))
        8
    """
    check_one_of(transforms, "transforms", ("d4", "c4", "flips", None))
    if transforms is None:
        return [(0, False)]
    if transforms == "c4":
        return [(k, False) for k in range(4)]
    if transforms == "flips":
        return [(0, False), (0, True), (2, True)]
    return [(k, f) for f in (False, True) for k in range(4)]


def apply_transform(
    x: torch.Tensor, element: tuple[int, bool], *, inverse: bool = False
) -> torch.Tensor:
    """Apply one group element (or its inverse) to the last two axes of ``x``.

    Args:
        x: any tensor with at least two dimensions (an odd quarter turn swaps the
            sizes of the last two).
        element: ``(quarter_turns, flip)``, as listed by :func:`transform_group`.
        inverse: apply the inverse element: ``apply_transform(apply_transform(x,
            e), e, inverse=True)`` is ``x``.

    Returns:
        The transformed tensor (``x`` itself for the identity; never modified in place).

    Raises:
        TypeError: if ``x`` is not a tensor, ``element`` not a pair or ``inverse``
            not a bool.
        ValueError: for fewer than two dimensions.

    Example:
        >>> x = torch.arange(4.0).view(2, 2)
        >>> apply_transform(x, (1, True))
        tensor([[0., 1.],
                [2., 3.]])
        >>> y = apply_transform(x, (3, True))
        >>> torch.equal(apply_transform(y, (3, True), inverse=True), x)
        True
    """
    check_tensor(x, "x")
    if (
        not isinstance(element, tuple)
        or len(element) != 2
        or isinstance(element[0], bool)
        or not isinstance(element[0], int)
        or not isinstance(element[1], bool)
    ):
        raise TypeError(
            f"Expected `element` to be a (quarter_turns: int, flip: bool) pair, but got "
            f"{describe(element)}."
        )
    if not isinstance(inverse, bool):
        raise TypeError(f"Expected `inverse` to be a bool, but got {describe(inverse)}.")
    if x.ndim < 2:
        raise ValueError(f"Expected `x` to have at least 2 dimensions, but got {x.ndim}.")
    k, flip = element[0] % 4, element[1]
    if not inverse:
        x = x.flip(-1) if flip else x
        return torch.rot90(x, k, dims=(-2, -1)) if k else x
    x = torch.rot90(x, -k, dims=(-2, -1)) if k else x
    return x.flip(-1) if flip else x


def transform_mean(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    transforms: Group | None = "d4",
) -> torch.Tensor:
    """Average a dense prediction over the rotations and reflections of the images.

    For every element ``g`` of the group, ``fn`` runs on ``g(images)`` and its output
    is mapped back with ``g⁻¹``; the result is the mean of these outputs. For the groups
    ``"d4"`` and ``"c4"`` the mean is equivariant by construction: for any element
    ``h``, ``transform_mean(fn, h(images))`` equals ``h(transform_mean(fn, images))``
    (``"flips"`` is not closed under composition, so it only averages). It
    costs one call of ``fn`` per element (8 for ``"d4"``). Gradients flow if ``fn``'s
    do; wrap the call in :func:`torch.no_grad` for inference.

    Args:
        fn: maps a batch ``(B, C, H, W)`` to a dense prediction ``(B, ..., h, w)``
            whose last two axes are spatial and turn with the image (a CAM, a
            per-pixel probability, logits per location).
        images: ``(B, C, H, W)`` floating images (an odd quarter turn gives ``fn``
            ``(B, C, W, H)``).
        transforms: the group, see :func:`transform_group`; None calls ``fn`` once.

    Returns:
        The averaged prediction, shape and dtype of ``fn(images)``.

    Raises:
        TypeError: if ``fn`` is not callable, ``images`` or an output is not a tensor.
        ValueError: for bad ``images`` or ``transforms``, or outputs whose shape
            changes between elements or that have no batch and spatial axes.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> mean = transform_mean(lambda im: im[:, 0], x)  # the first channel, turned back
        >>> torch.allclose(mean, x[:, 0])
        True
        >>> top_rows = transform_mean(lambda im: im[:, 0, :4], x, transforms="c4")
        Traceback (most recent call last):
        ...
        ValueError: Expected `fn` to keep one output shape over the transforms, ...
    """
    check_callable(fn, "fn")
    check_images(images)
    elements = transform_group(transforms)
    total: torch.Tensor | None = None
    for element in elements:
        out = fn(apply_transform(images, element))
        check_tensor(out, "fn(images)")
        if out.ndim < 3 or out.shape[0] != images.shape[0]:
            raise ValueError(
                f"Expected the outputs of `fn` to be (B, ..., h, w) with B = {images.shape[0]}, "
                f"but got shape {tuple(out.shape)}."
            )
        back = apply_transform(out, element, inverse=True)
        if total is not None and back.shape != total.shape:
            raise ValueError(
                "Expected `fn` to keep one output shape over the transforms, but got "
                f"{tuple(total.shape)} and {tuple(back.shape)}."
            )
        total = back if total is None else total + back
    assert total is not None
    return total / len(elements)
