"""Shared argument validation.

Every public function of camseg validates its inputs with these helpers so that
error messages read the same everywhere: the built-in exception type, the
argument in backticks, what was expected and what was got, and a hint where one
helps::

    ValueError: Expected `maps` to be a tensor of shape (B, H, W), but got shape (2, 3).

The helpers return nothing (or the normalised value) and never copy tensors.
Checks that would force a device synchronisation (``isfinite``) are kept to the
places where a silent wrong answer is the alternative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

__all__ = [
    "NAN_HINT",
    "REDUCTIONS",
    "UNIT_HINT",
    "Reduction",
    "as_compute_dtype",
    "check_binary_labels",
    "check_bool_mask",
    "check_callable",
    "check_finite",
    "check_floating",
    "check_images",
    "check_in_range",
    "check_labels",
    "check_maps",
    "check_masks",
    "check_ndim",
    "check_nonnegative",
    "check_one_of",
    "check_positive_int",
    "check_probability",
    "check_reduction",
    "check_same_batch",
    "check_same_shape",
    "check_tensor",
    "check_unit_range",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{value!r} ({type(value).__name__})"


def check_tensor(value: Any, name: str) -> torch.Tensor:
    """Raise ``TypeError`` unless ``value`` is a :class:`torch.Tensor`."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"Expected `{name}` to be a torch.Tensor, but got {describe(value)}.")
    return value


def check_ndim(value: torch.Tensor, name: str, ndims: int | Sequence[int], layout: str) -> None:
    """Raise ``ValueError`` unless ``value.ndim`` is one of ``ndims``.

    Args:
        value: the tensor.
        name: the argument's name.
        ndims: allowed numbers of dimensions.
        layout: the expected layout in words, e.g. ``"(B, H, W)"``.
    """
    check_tensor(value, name)
    allowed = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if value.ndim not in allowed:
        raise ValueError(
            f"Expected `{name}` to be a tensor of shape {layout}, "
            f"but got shape {tuple(value.shape)}."
        )


def check_floating(value: torch.Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``value`` has a floating-point dtype."""
    check_tensor(value, name)
    if not value.is_floating_point():
        raise TypeError(
            f"Expected `{name}` to have a floating-point dtype, but got {value.dtype}. "
            "Hint: convert with `.float()` (and scale uint8 images to [0, 1])."
        )


def check_bool_mask(value: Any, name: str, layout: str = "(B, H, W)", ndim: int = 3) -> None:
    """Raise unless ``value`` is a ``torch.bool`` tensor with ``ndim`` dimensions."""
    check_tensor(value, name)
    if value.dtype != torch.bool:
        raise TypeError(
            f"Expected `{name}` to be a torch.bool mask, but got {value.dtype}. "
            "Hint: threshold it first, e.g. `maps >= t[:, None, None]`."
        )
    check_ndim(value, name, ndim, layout)


def check_same_shape(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    """Raise ``ValueError`` unless two tensors have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"Expected `{a_name}` and `{b_name}` to have the same shape, but got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )


def check_same_batch(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    """Raise ``ValueError`` unless two tensors have the same first dimension."""
    if a.ndim == 0 or b.ndim == 0 or a.shape[0] != b.shape[0]:
        raise ValueError(
            f"Expected `{a_name}` and `{b_name}` to have the same batch size, but got "
            f"shapes {tuple(a.shape)} and {tuple(b.shape)}."
        )


def check_finite(value: torch.Tensor, name: str, hint: str = "") -> None:
    """Raise ``ValueError`` if ``value`` holds NaN or infinity."""
    if not value.is_floating_point() or value.numel() == 0:
        return
    # fast path: one reduction; a NaN or infinity anywhere makes the sum non-finite
    # (a finite sum proves there is none). Only a non-finite sum, which may also
    # be a harmless overflow, pays for the element-wise check.
    if bool(torch.isfinite(value.sum())):
        return
    if not bool(torch.isfinite(value).all()):
        n_bad = int((~torch.isfinite(value)).sum())
        msg = f"Expected `{name}` to be finite, but it holds {n_bad} NaN or infinite values."
        raise ValueError(msg + (f" {hint}" if hint else ""))


def check_in_range(
    value: torch.Tensor | float,
    name: str,
    low: float,
    high: float,
    *,
    hint: str = "",
) -> None:
    """Raise ``ValueError`` unless every element lies in ``[low, high]``."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return
        lo, hi = float(value.min()), float(value.max())
        if not (low <= lo and hi <= high):
            raise ValueError(
                f"Expected `{name}` to lie in [{low}, {high}], but got values in "
                f"[{lo:.6g}, {hi:.6g}]." + (f" {hint}" if hint else "")
            )
    else:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"Expected `{name}` to be a number, but got {describe(value)}.")
        if not (low <= value <= high):
            raise ValueError(
                f"Expected `{name}` to lie in [{low}, {high}], but got {value!r}."
                + (f" {hint}" if hint else "")
            )


def check_probability(value: float, name: str) -> None:
    """Raise unless ``value`` is a number in ``[0, 1]``."""
    check_in_range(value, name, 0.0, 1.0)


def check_nonnegative(value: float, name: str) -> None:
    """Raise unless ``value`` is a finite number ``>= 0``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number >= 0, but got {describe(value)}.")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"Expected `{name}` to be a finite number >= 0, but got {value!r}.")


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an ``int`` (not ``bool``) ``>= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be an int, but got {describe(value)}.")
    if value < minimum:
        raise ValueError(f"Expected `{name}` to be an int >= {minimum}, but got {value}.")
    return value


def check_one_of(value: Any, name: str, options: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    if value not in options:
        shown = ", ".join(repr(o) for o in options)
        raise ValueError(f"Expected `{name}` to be one of {shown}, but got {describe(value)}.")


def check_binary_labels(value: Any, name: str) -> torch.Tensor:
    """Raise unless ``value`` is a 1-D tensor of 0/1 labels; return it as ``bool``.

    Accepts bool, integer and floating tensors whose values are exactly 0 or 1.
    """
    check_tensor(value, name)
    if value.ndim != 1:
        raise ValueError(
            f"Expected `{name}` to be a tensor of shape (B,), but got shape {tuple(value.shape)}."
        )
    if value.dtype == torch.bool:
        return value
    if value.is_complex():
        raise TypeError(f"Expected `{name}` to hold 0/1 labels, but got {value.dtype}.")
    if value.numel() and not bool(((value == 0) | (value == 1)).all()):
        bad = value[(value != 0) & (value != 1)][:5].tolist()
        raise ValueError(f"Expected `{name}` to hold binary labels 0/1, but got values {bad}.")
    return value.bool()


def to_unit_rgb(images: object, name: str = "images") -> torch.Tensor:
    """Validate ``(B, 3, H, W)`` RGB images; return them as float in ``[0, 1]``.

    uint8 images are scaled by 1/255 into float32; float images must already
    lie in ``[0, 1]`` and keep their dtype.
    """
    x = check_tensor(images, name)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"Expected `{name}` to be RGB images of shape (B, 3, H, W), "
            f"but got shape {tuple(x.shape)}."
        )
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise TypeError(
            f"Expected `{name}` to be float in [0, 1] or uint8 in [0, 255], but got {x.dtype}."
        )
    check_finite(x, name)
    check_in_range(
        x, name, 0.0, 1.0, hint="Hint: scale float images to [0, 1] or pass uint8 images."
    )
    return x


# ---------------------------------------------------------------------------
# the vocabulary's checks: maps, masks, images, labels, reductions, callables
# ---------------------------------------------------------------------------

NAN_HINT = "Hint: NaN maps come from a 0/0 normalization of a flat map."
"""The one hint for non-finite maps."""

UNIT_HINT = (
    "Hint: normalize the maps first, e.g. camseg.functional.normalize(maps, mode='minmax'), "
    "or threshold raw maps with threshold_fixed/threshold_otsu and compare yourself."
)
"""The one hint for maps outside ``[0, 1]`` where normalized maps are needed."""

Reduction = Literal["mean", "sum", "none"]
"""How per-image losses are combined: ``"mean"``, ``"sum"`` or ``"none"`` (a ``(B,)`` tensor)."""

REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

_LAYOUT_NDIMS = {"(H, W)": 2, "(B, H, W)": 3, "(B, K, H, W)": 4, "(B, C, H, W)": 4}


def _ndims_of(layout: str) -> tuple[int, ...]:
    """The allowed ndims of a layout such as ``"(B, H, W) or (B, K, H, W)"``."""
    out = []
    for part in layout.split(" or "):
        part = part.strip()
        out.append(_LAYOUT_NDIMS.get(part, part.count(",") + 1))
    return tuple(out)


def as_compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (autocast) are promoted to float32; others pass through."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def check_unit_range(lo: float, hi: float, name: str = "maps") -> None:
    """Raise ``ValueError`` unless a map range ``[lo, hi]`` lies in ``[0, 1]``."""
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"Expected `{name}` to be normalized maps with values in [0, 1], but got "
            f"values in [{lo:.6g}, {hi:.6g}]. {UNIT_HINT}"
        )


def check_maps(
    maps: object,
    name: str = "maps",
    *,
    layout: str = "(B, H, W)",
    finite: bool = True,
    unit: bool = False,
    nonempty: bool = False,
) -> torch.Tensor:
    """Validate floating maps and return them (never a copy).

    Args:
        maps: the maps.
        name: the argument's name in messages.
        layout: the allowed layouts in words, e.g. ``"(B, H, W)"`` or
            ``"(B, H, W) or (B, K, H, W)"``; their ndims are read from it.
        finite: raise for NaN or infinity (with :data:`NAN_HINT`).
        unit: raise unless every value lies in ``[0, 1]`` (with :data:`UNIT_HINT`).
        nonempty: raise when an image has no pixel (``H == 0`` or ``W == 0``).

    Raises:
        TypeError: not a tensor, or not floating.
        ValueError: wrong ndim, empty images (``nonempty``), NaN/inf (``finite``),
            values outside ``[0, 1]`` (``unit``).
    """
    t = check_tensor(maps, name)
    check_ndim(t, name, _ndims_of(layout), layout)
    check_floating(t, name)
    if nonempty and t.ndim >= 2 and (t.shape[-1] == 0 or t.shape[-2] == 0):
        raise ValueError(
            f"Expected `{name}` to have at least one pixel per image, "
            f"but got shape {tuple(t.shape)}."
        )
    if finite:
        check_finite(t, name, NAN_HINT)
    if unit and t.numel():
        lo, hi = torch.aminmax(t.detach())
        check_unit_range(float(lo), float(hi), name)
    return t


def check_masks(
    masks: object,
    name: str = "masks",
    *,
    like: torch.Tensor | None = None,
    like_name: str = "maps",
    layout: str = "(B, H, W)",
) -> torch.Tensor:
    """Validate a ``torch.bool`` mask (of ``like``'s shape when given) and return it.

    Raises:
        TypeError: not a tensor, or not ``torch.bool``.
        ValueError: wrong ndim, or a shape other than ``like``'s.
    """
    check_bool_mask(masks, name, layout, _ndims_of(layout)[0])
    m = check_tensor(masks, name)
    if like is not None:
        check_same_shape(m, name, like, like_name)
    return m


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """Validate floating ``(B, C, H, W)`` images and return them."""
    t = check_tensor(images, name)
    check_ndim(t, name, 4, "(B, C, H, W)")
    check_floating(t, name)
    return t


def check_labels(
    labels: object, like: torch.Tensor, name: str = "labels", like_name: str = "maps"
) -> torch.Tensor:
    """Validate 0/1 labels ``(B,)`` with the batch of ``like``; return bool on its device."""
    out = check_binary_labels(labels, name)
    check_same_batch(like, like_name, out, name)
    return out.to(like.device)


def check_reduction(reduction: object, name: str = "reduction") -> None:
    """Raise ``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`."""
    check_one_of(reduction, name, REDUCTIONS)


def check_callable(fn: object, name: str) -> None:
    """Raise ``TypeError`` unless ``fn`` is callable."""
    if not callable(fn):
        raise TypeError(f"Expected `{name}` to be callable, but got {describe(fn)}.")


def check_device(device: object, name: str = "device") -> torch.device | None:
    """Validate a device argument (a torch.device, a string or None); return it as a device."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"Expected `{name}` to be a torch.device, a string or None, but got {describe(device)}."
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"Expected `{name}` to name a torch device (e.g. 'cpu', 'cuda:0'), but got {device!r}."
        ) from err


# ---------------------------------------------------------------------------
# numbers, sequences, paths and non-empty batches
# ---------------------------------------------------------------------------


def check_number(value: object, name: str, *, hint: str = "") -> float:
    """Raise unless ``value`` is a finite real number (not ``bool``); return it as ``float``.

    Raises:
        TypeError: not an ``int`` or ``float`` (numpy scalars count).
        ValueError: NaN or infinity.
    """
    import numbers

    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a finite number, but got {describe(value)}.")
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(
            f"Expected `{name}` to be a finite number, but got {value!r}."
            + (f" {hint}" if hint else "")
        )
    return out


def check_positive(value: object, name: str, *, hint: str = "") -> float:
    """Raise unless ``value`` is a finite number ``> 0``; return it as ``float``.

    Raises:
        TypeError: not an ``int`` or ``float``.
        ValueError: zero, negative, NaN or infinity.
    """
    import numbers

    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a finite number > 0, but got {describe(value)}.")
    out = float(value)
    if not (0 < out < float("inf")):
        raise ValueError(
            f"Expected `{name}` to be a finite number > 0, but got {value!r}."
            + (f" {hint}" if hint else "")
        )
    return out


def check_sequence(value: object, name: str, what: str = "values") -> Sequence[Any]:
    """Raise ``TypeError`` unless ``value`` is a list, tuple or other non-string sequence.

    A 1-D tensor or numpy array counts (it is returned unchanged).

    Args:
        value: the argument.
        name: the argument's name in messages.
        what: what it holds, in words, e.g. ``"patient ids"``.
    """
    import numpy as np

    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim != 1:
            raise ValueError(
                f"Expected `{name}` to be a sequence of {what} (1-D), but got shape "
                f"{tuple(value.shape)}."
            )
        return value  # type: ignore[return-value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"Expected `{name}` to be a sequence of {what}, but got {describe(value)}.")
    return value


def check_path(value: object, name: str = "path") -> None:
    """Raise ``TypeError`` unless ``value`` is a ``str`` or an ``os.PathLike``."""
    import os

    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(
            f"Expected `{name}` to be a str or os.PathLike path, but got {describe(value)}."
        )


def check_nonempty(value: torch.Tensor, name: str, what: str = "sample", *, hint: str = "") -> None:
    """Raise ``ValueError`` if ``value`` has no element along its first dimension."""
    if value.ndim == 0 or value.shape[0] == 0:
        raise ValueError(
            f"Expected `{name}` to hold at least one {what}, but got shape "
            f"{tuple(value.shape)}." + (f" {hint}" if hint else "")
        )


def check_pixels(value: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if an image of ``value`` (its last two dimensions) has no pixel."""
    if value.ndim >= 2 and (value.shape[-1] == 0 or value.shape[-2] == 0):
        raise ValueError(
            f"Expected `{name}` to have at least one pixel per image (H, W > 0), "
            f"but got shape {tuple(value.shape)}."
        )
