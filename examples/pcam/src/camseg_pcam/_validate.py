"""Argument checks of the example, in camseg's message style.

The example is a user of camseg, so it does not import camseg's private
validation module; these few checks are what its configuration, options and
tensors need. Messages read like camseg's (torchmetrics' wording): the built-in
exception type, the argument in backticks, what was expected and what was got::

    ValueError: Expected `split` to be one of 'train', 'valid', 'test', but got 'validation'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "check_floating",
    "check_in_range",
    "check_ndim",
    "check_nonnegative",
    "check_one_of",
    "check_positive_int",
    "check_same_batch",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages.

    Example:
        >>> describe("x"), describe(3), describe(torch.zeros(2, 3))
        ("'x'", '3 (int)', 'a torch.float32 tensor of shape (2, 3)')
    """
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{value!r} ({type(value).__name__})"


def check_one_of(value: Any, name: str, options: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``options``.

    Example:
        >>> check_one_of("b", "mode", ("a", "b"))
        >>> check_one_of("c", "mode", ("a", "b"))
        Traceback (most recent call last):
        ...
        ValueError: Expected `mode` to be one of 'a', 'b', but got 'c'.
    """
    if not any(_same(value, o) for o in options):
        shown = ", ".join(repr(o) for o in options)
        raise ValueError(f"Expected `{name}` to be one of {shown}, but got {describe(value)}.")


def _same(value: Any, option: Any) -> bool:
    """Equal, and both or neither ``bool`` (``True`` does not pass for ``1``, nor ``1`` for it)."""
    if value is option:
        return True
    if isinstance(value, bool) != isinstance(option, bool):
        return False
    try:
        return bool(value == option)
    except (TypeError, ValueError, RuntimeError):  # arrays, tensors: no single truth value
        return False


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an ``int`` (not ``bool``) ``>= minimum``; return it.

    Example:
        >>> check_positive_int(3, "batch_size")
        3
        >>> check_positive_int(0, "batch_size")
        Traceback (most recent call last):
        ...
        ValueError: Expected `batch_size` to be an int >= 1, but got 0.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be an int, but got {describe(value)}.")
    if value < minimum:
        raise ValueError(f"Expected `{name}` to be an int >= {minimum}, but got {value}.")
    return value


def check_nonnegative(value: Any, name: str) -> float:
    """Raise unless ``value`` is a finite number ``>= 0``; return it as ``float``.

    Example:
        >>> check_nonnegative(0.5, "weight")
        0.5
        >>> check_nonnegative(float("nan"), "weight")
        Traceback (most recent call last):
        ...
        ValueError: Expected `weight` to be a finite number >= 0, but got nan.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number >= 0, but got {describe(value)}.")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"Expected `{name}` to be a finite number >= 0, but got {value!r}.")
    return float(value)


def check_in_range(value: Any, name: str, low: float, high: float, *, hint: str = "") -> None:
    """Raise unless ``value`` (a number or every element of a tensor) lies in ``[low, high]``.

    NaN never lies in a range.

    Example:
        >>> check_in_range(torch.tensor([0, 3]), "k", 0, 7)
        >>> check_in_range(8, "k", 0, 7)
        Traceback (most recent call last):
        ...
        ValueError: Expected `k` to lie in [0, 7], but got 8.
    """
    tail = f" {hint}" if hint else ""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return
        v = value.double() if value.is_floating_point() else value
        if bool(torch.isnan(v).any()) if v.is_floating_point() else False:
            raise ValueError(
                f"Expected `{name}` to lie in [{low}, {high}], but it holds NaN." + tail
            )
        lo, hi = float(v.min()), float(v.max())
        if not (low <= lo and hi <= high):
            raise ValueError(
                f"Expected `{name}` to lie in [{low}, {high}], but got values in "
                f"[{lo:.6g}, {hi:.6g}]." + tail
            )
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number, but got {describe(value)}.")
    if not (low <= value <= high):
        raise ValueError(f"Expected `{name}` to lie in [{low}, {high}], but got {value!r}." + tail)


def _check_tensor(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor, but got {describe(value)}.")
    return value


def check_ndim(value: Any, name: str, ndims: int | Sequence[int], layout: str) -> None:
    """Raise unless ``value`` is a tensor with one of ``ndims`` dimensions.

    Args:
        value: the tensor.
        name: the argument's name.
        ndims: allowed numbers of dimensions.
        layout: the expected layout in words, e.g. ``"(B, 3, H, W)"``.

    Example:
        >>> check_ndim(torch.zeros(2, 3), "maps", 3, "(B, H, W)")
        Traceback (most recent call last):
        ...
        ValueError: Expected `maps` to be a tensor of shape (B, H, W), but got shape (2, 3).
    """
    t = _check_tensor(value, name)
    allowed = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if t.ndim not in allowed:
        raise ValueError(
            f"Expected `{name}` to be a tensor of shape {layout}, but got shape {tuple(t.shape)}."
        )


def check_floating(value: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``value`` is a floating-point tensor.

    Example:
        >>> check_floating(torch.zeros(1, dtype=torch.uint8), "images")
        Traceback (most recent call last):
        ...
        TypeError: Expected `images` to have a floating-point dtype, but got torch.uint8. Hint: convert with `.float()` (and scale uint8 images to [0, 1]).
    """  # noqa: E501
    t = _check_tensor(value, name)
    if not t.is_floating_point():
        raise TypeError(
            f"Expected `{name}` to have a floating-point dtype, but got {t.dtype}. "
            "Hint: convert with `.float()` (and scale uint8 images to [0, 1])."
        )


def check_same_batch(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    """Raise ``ValueError`` unless two tensors have the same first dimension.

    Example:
        >>> check_same_batch(torch.zeros(2, 3), "images", torch.zeros(3), "k")
        Traceback (most recent call last):
        ...
        ValueError: Expected `images` and `k` to have the same batch size, but got shapes (2, 3) and (3,).
    """  # noqa: E501
    if a.ndim == 0 or b.ndim == 0 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"Expected `{a_name}` and `{b_name}` to have the same batch size, but got "
            f"shapes {tuple(a.shape)} and {tuple(b.shape)}."
        )
