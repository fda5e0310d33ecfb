"""Pictures of maps and masks as ``uint8`` tensors, with no plotting library needed.

Every function takes a batch and returns ``torch.uint8`` RGB images ``(B, 3, H, W)``
on the input's device, ready for :func:`torchvision.utils.save_image`-style
writers, TensorBoard's ``add_images`` or PIL (``Image.fromarray(t.permute(1, 2, 0).numpy())``):

- :func:`colorize`: maps in ``[0, 1]`` through a colour map;
- :func:`overlay`: maps blended over the images, transparent where a map is 0
  (so a gated, empty map leaves the image untouched);
- :func:`draw_masks`: masks filled and/or outlined on the images;
- :func:`plot_grid`: a labelled matplotlib figure of several such rows (needs
  the ``viz`` extra, ``pip install "camseg[viz]"``; the only function here that does).

Maps are shown as given: normalise and gate them first
(:func:`camseg.functional.normalize`, :func:`camseg.postprocess.gate`) so that
a tumor-negative patch shows no hot spot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from camseg._checks import (
    check_finite,
    check_in_range,
    check_one_of,
    check_pixels,
    check_positive,
    check_tensor,
    describe,
    to_unit_rgb,
)

if TYPE_CHECKING:  # matplotlib is optional
    from matplotlib.figure import Figure

__all__ = ["COLORMAPS", "Colormap", "colorize", "draw_masks", "overlay", "plot_grid"]

Colormap = Literal["jet", "hot", "gray", "heat"]
#: the colour maps :func:`colorize` knows
COLORMAPS: tuple[str, ...] = ("jet", "hot", "gray", "heat")


def _lut(name: str, device: torch.device) -> torch.Tensor:
    """A 256 × 3 float table in [0, 1] of the named colour map (piecewise linear)."""
    t = torch.linspace(0.0, 1.0, 256, device=device, dtype=torch.float32)
    if name == "gray":
        rgb = torch.stack([t, t, t], 1)
    elif name == "hot":  # black -> red -> yellow -> white
        rgb = torch.stack(
            [(3 * t).clamp(0, 1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], 1
        )
    elif name == "heat":  # transparent-looking blue-free ramp: dark red -> orange -> yellow
        rgb = torch.stack([0.5 + 0.5 * t, t**1.5, 0.2 * t**4], 1)
    else:  # jet: blue -> cyan -> yellow -> red, the classic Grad-CAM display
        rgb = torch.stack(
            [
                (1.5 - (4 * t - 3).abs()).clamp(0, 1),
                (1.5 - (4 * t - 2).abs()).clamp(0, 1),
                (1.5 - (4 * t - 1).abs()).clamp(0, 1),
            ],
            1,
        )
    return rgb


def _check_maps(maps: object, name: str = "maps") -> torch.Tensor:
    m = check_tensor(maps, name)
    if m.ndim != 3:
        raise ValueError(
            f"Expected `{name}` to be a tensor of shape (B, H, W), but got shape {tuple(m.shape)}."
        )
    if not m.is_floating_point():
        raise TypeError(f"Expected `{name}` to be a floating tensor, but got {m.dtype}.")
    check_finite(m, name)
    check_in_range(
        m,
        name,
        0.0,
        1.0,
        hint="Hint: normalize the maps first, e.g. camseg.functional.normalize(maps, mode='max').",
    )
    return m


def _fit(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == size:
        return maps.float()
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[
        :, 0
    ].clamp_(0, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def colorize(maps: torch.Tensor, *, colormap: Colormap = "jet") -> torch.Tensor:
    """Colour maps in ``[0, 1]`` through a colour map.

    Args:
        maps: ``(B, H, W)`` floating maps in ``[0, 1]``.
        colormap: one of :data:`COLORMAPS`.

    Returns:
        ``torch.uint8`` images ``(B, 3, H, W)`` on the maps' device.

    Raises:
        TypeError: if ``maps`` is not a floating tensor.
        ValueError: if ``maps`` is not ``(B, H, W)``, holds NaN/inf or values outside
            ``[0, 1]``, or ``colormap`` is unknown.

    Example:
        >>> maps = torch.tensor([[[0.0, 1.0]]])
        >>> colorize(maps, colormap="gray")[0, :, 0].tolist()
        [[0, 255], [0, 255], [0, 255]]
    """
    m = _check_maps(maps)
    check_one_of(colormap, "colormap", COLORMAPS)
    lut = _lut(colormap, m.device)
    idx = m.float().mul(255.0).round_().long()
    return _to_uint8(lut[idx].permute(0, 3, 1, 2))


def overlay(
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    alpha: float = 0.5,
    colormap: Colormap = "jet",
) -> torch.Tensor:
    """Blend coloured maps over images, with opacity proportional to the map.

    A pixel's colour is ``(1 - alpha * m) * image + alpha * m * colormap(m)``: where the
    map is 0 the image shows unchanged, so a gated (empty) map of a negative patch
    draws nothing. Maps at another resolution are bilinearly resized to the images'.

    Args:
        images: RGB images ``(B, 3, H, W)``, float in ``[0, 1]`` or ``uint8``.
        maps: ``(B, h, w)`` floating maps in ``[0, 1]``.
        alpha: the opacity of a map value of 1, in ``[0, 1]``.
        colormap: one of :data:`COLORMAPS`.

    Returns:
        ``torch.uint8`` images ``(B, 3, H, W)`` on the images' device.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if the shapes or batch sizes do not fit, or a value is out of range.

    Example:
        >>> images = torch.full((1, 3, 2, 2), 0.5)
        >>> maps = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
        >>> out = overlay(images, maps, alpha=1.0, colormap="gray")
        >>> out[0, 0].tolist()
        [[128, 128], [128, 255]]
    """
    x = to_unit_rgb(images, "images")
    m = _check_maps(maps)
    if m.shape[0] != x.shape[0]:
        raise ValueError(
            f"Expected `maps` to hold one map per image ({x.shape[0]}), but got {m.shape[0]}."
        )
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise TypeError(f"Expected `alpha` to be a float, but got {type(alpha).__name__}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Expected `alpha` to lie in [0, 1], but got {alpha!r}.")
    check_one_of(colormap, "colormap", COLORMAPS)
    m = _fit(m.to(x.device), (x.shape[-2], x.shape[-1]))
    lut = _lut(colormap, x.device)
    color = lut[m.mul(255.0).round_().long()].permute(0, 3, 1, 2)
    a = (alpha * m)[:, None]
    return _to_uint8(torch.lerp(x.float(), color, a))


def _boundary(masks: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels of ``masks`` within ``width`` pixels of the outside (inner outline)."""
    inside = masks[:, None].float()
    k = 2 * width + 1
    eroded = -F.max_pool2d(-inside, k, stride=1, padding=width)
    return (inside > 0.5)[:, 0] & (eroded < 0.5)[:, 0]


def draw_masks(
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    color: Sequence[int] = (0, 255, 0),
    fill: float = 0.0,
    width: int = 1,
) -> torch.Tensor:
    """Draw masks on images: an outline of ``width`` pixels, and an optional tinted fill.

    Args:
        images: RGB images ``(B, 3, H, W)``, float in ``[0, 1]`` or ``uint8``.
        masks: ``torch.bool`` masks ``(B, H, W)`` of the images' size.
        color: the RGB colour, three ints in ``[0, 255]``.
        fill: opacity of the fill inside the masks, in ``[0, 1]`` (0: outline only).
        width: outline width in pixels (0: no outline, then ``fill`` must be > 0).

    Returns:
        ``torch.uint8`` images ``(B, 3, H, W)`` on the images' device.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if the shapes do not fit, the images have no pixel, a value is
            out of range, or ``width=0`` with ``fill=0`` (nothing to draw).

    Example:
        >>> images = torch.zeros(1, 3, 5, 5)
        >>> masks = torch.zeros(1, 5, 5, dtype=torch.bool)
        >>> masks[0, 1:4, 1:4] = True
        >>> out = draw_masks(images, masks, color=(255, 0, 0))
        >>> out[0, 0].tolist()[2]  # the middle row: outline, inside, outline
        [0, 255, 0, 255, 0]
    """
    x = to_unit_rgb(images, "images")
    mk = check_tensor(masks, "masks")
    if mk.dtype != torch.bool:
        raise TypeError(f"Expected `masks` to be a torch.bool tensor, but got {mk.dtype}.")
    if mk.ndim != 3 or mk.shape[0] != x.shape[0] or mk.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"Expected `masks` of shape {(x.shape[0], x.shape[-2], x.shape[-1])} to match "
            f"`images`, but got shape {tuple(mk.shape)}."
        )
    check_pixels(x, "images")
    if (
        not isinstance(color, Sequence)
        or len(color) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) for c in color)
    ):
        raise TypeError(f"Expected `color` to be three ints, but got {color!r}.")
    if not all(0 <= c <= 255 for c in color):
        raise ValueError(f"Expected `color` values in [0, 255], but got {tuple(color)}.")
    if not isinstance(fill, (int, float)) or isinstance(fill, bool) or not 0.0 <= fill <= 1.0:
        raise ValueError(f"Expected `fill` to be a float in [0, 1], but got {fill!r}.")
    if not isinstance(width, int) or isinstance(width, bool) or width < 0:
        raise ValueError(f"Expected `width` to be an int >= 0, but got {width!r}.")
    if width == 0 and fill == 0:
        raise ValueError(
            "Expected `width` >= 1 (an outline) or `fill` > 0 (a tint), but got width=0 and "
            "fill=0, which draw nothing."
        )
    mk = mk.to(x.device)
    rgb = torch.tensor(color, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) / 255.0
    out = x.float()
    if fill > 0:
        out = torch.lerp(out, rgb.expand_as(out), fill * mk[:, None].float())
    if width > 0:
        edge = _boundary(mk, width)[:, None]
        out = torch.where(edge, rgb.expand_as(out), out)
    return _to_uint8(out)


def plot_grid(
    rows: Mapping[str, torch.Tensor],
    *,
    columns: Sequence[str] | None = None,
    scale: float = 1.5,
) -> Figure:
    """A matplotlib figure with one row per entry of ``rows`` and one column per image.

    Each value is a ``uint8`` image batch ``(B, 3, H, W)`` (as the functions above
    return), a float image batch in ``[0, 1]``, or maps ``(B, H, W)`` in ``[0, 1]``
    (drawn in gray). Needs matplotlib (``pip install "camseg[viz]"``).

    Args:
        rows: row title -> batch; all batches of the same length.
        columns: optional column titles, one per image.
        scale: inches per panel.

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Raises:
        ImportError: if matplotlib is not installed (the message names the extra).
        TypeError: if ``rows`` is not a mapping of tensors, ``columns`` not a
            sequence or ``scale`` not a number.
        ValueError: if it is empty, its batches differ in length, ``columns`` has
            the wrong length, or ``scale`` is not a finite number > 0.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError(f"Expected `rows` to be a non-empty mapping, but got {rows!r}.")
    batches: list[tuple[str, torch.Tensor]] = []
    for title, batch in rows.items():
        b = check_tensor(batch, f"rows[{title!r}]")
        if b.ndim == 3:
            b = colorize(_check_maps(b, f"rows[{title!r}]"), colormap="gray")
        elif b.ndim == 4 and b.dtype != torch.uint8:
            b = _to_uint8(to_unit_rgb(b, f"rows[{title!r}]"))
        elif b.ndim != 4:
            raise ValueError(
                f"Expected `rows[{title!r}]` to be (B, 3, H, W) images or (B, H, W) maps, "
                f"but got shape {tuple(b.shape)}."
            )
        batches.append((str(title), b.detach().cpu()))
    n = batches[0][1].shape[0]
    if any(b.shape[0] != n for _, b in batches):
        raise ValueError(
            f"Expected every row of `rows` to hold {n} images, but got "
            f"{[b.shape[0] for _, b in batches]}."
        )
    if columns is not None:
        if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
            raise TypeError(
                f"Expected `columns` to be a sequence of titles or None, but got "
                f"{describe(columns)}."
            )
        if len(columns) != n:
            raise ValueError(f"Expected {n} `columns` titles, but got {len(columns)}.")
    scale = check_positive(scale, "scale", hint="Hint: it is in inches per panel.")
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'plot_grid needs matplotlib: install it with pip install "camseg[viz]".'
        ) from err
    fig, axes = plt.subplots(
        len(batches), n, figsize=(scale * n, scale * len(batches)), squeeze=False
    )
    for r, (title, b) in enumerate(batches):
        for c in range(n):
            ax: Any = axes[r][c]
            ax.imshow(b[c].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title)
            if r == 0 and columns is not None:
                ax.set_title(str(columns[c]), fontsize=8)
    fig.tight_layout()
    return fig
