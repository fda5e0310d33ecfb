"""Sliding-window inference: tile grid, blending windows, and stitched slide maps."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from camseg._checks import check_one_of, check_positive_int, describe
from camseg.slide._readers import RegionReader, check_region
from camseg.slide._splits import shard_indices
from camseg.slide._tissue import TissueFilter

__all__ = [
    "MAX_TILES",
    "CAMExtractor",
    "SlideMaps",
    "blend_window",
    "read_tiles",
    "select_level",
    "sliding_window",
    "tile_grid",
]

Blend = Literal["gaussian", "uniform"]
Edge = Literal["shift", "pad"]
#: Value of the padding outside the slide in ``edge="pad"`` mode (white glass).
PAD_VALUE = 255

#: Most tiles :func:`tile_grid` lays out (2**26, a 1 GiB corner table); the count is
#: checked before anything is allocated.
MAX_TILES = 1 << 26


class _CAMOutput(Protocol):
    @property
    def maps(self) -> torch.Tensor: ...

    @property
    def logits(self) -> torch.Tensor: ...


@runtime_checkable
class CAMExtractor(Protocol):
    """What :func:`sliding_window` needs from a CAM extractor: one ``explain`` call.

    Every camseg extractor (:class:`camseg.GradCAM`, :class:`camseg.LinearCAM`, ...)
    has it: ``explain(images, targets, normalize=..., size="input")`` returns an
    object with ``maps`` ``(B, h, w)`` and ``logits`` ``(B, C)``. Anything else
    passed as ``extractor`` must be a callable ``tiles -> (probs, maps)``.

    Example:
        >>> import torch, camseg
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1),
        ...                             torch.nn.Flatten())
        >>> isinstance(camseg.GradCAM(model, "0"), CAMExtractor)
        True
    """

    def explain(
        self,
        images: torch.Tensor,
        targets: int | None = None,
        *,
        normalize: Literal["minmax", "max"] | None = ...,
        size: Literal["input"] = ...,
    ) -> _CAMOutput:
        """Maps and logits of ``images`` ``(B, 3, T, T)`` for class ``targets``."""
        ...


TileFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _count(length: int, tile: int, stride: int, axis: str) -> int:
    """Tiles along one axis (upper bound, +1 for a shifted or padded last tile)."""
    if tile > length:
        raise ValueError(
            f"Expected `tile` ({tile}) to fit in the slide, but the level is only {length} "
            f"pixels along {axis}. Hint: use a finer level or a smaller tile."
        )
    return (length - tile) // stride + 2


def _starts(length: int, tile: int, stride: int, edge: Edge, quantum: int, axis: str) -> list[int]:
    if edge == "pad":
        starts = [0]
        while starts[-1] + tile < length:
            starts.append(starts[-1] + stride)
        return starts
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:  # shift the last tile inward so it ends at the border
        last = ((length - tile) // quantum) * quantum
        if last > starts[-1]:
            starts.append(last)
    return starts


def tile_grid(
    size: tuple[int, int],
    *,
    tile: int,
    stride: int | None = None,
    edge: Edge = "shift",
    quantum: int = 1,
) -> torch.Tensor:
    """Top-left corners of the tiles that cover a level, row by row.

    Tiles start at 0 and step by ``stride``. Where the last tile of a row or
    column would not reach the border, ``edge`` decides:

    - ``"shift"`` (default): one more tile is placed flush with the border (its
      start is rounded down to a multiple of ``quantum``), so every tile lies
      inside the slide and nothing is padded; the last two tiles overlap more.
    - ``"pad"``: tiles keep the regular stride and the last one runs off the
      slide; its outside part is read as white glass and cropped when stitching.

    Args:
        size: ``(width, height)`` of the level, as :meth:`RegionReader.dimensions`.
        tile: tile side in pixels.
        stride: step between tiles; ``tile`` (no overlap) by default.
        edge: ``"shift"`` or ``"pad"``.
        quantum: shifted starts are multiples of this (the output downsample).

    Returns:
        ``(N, 2)`` int64 tensor of ``(x, y)`` corners, ``y``-major.

    Raises:
        TypeError: if ``tile``, ``stride`` or ``quantum`` is not an int.
        ValueError: if ``tile`` or ``stride`` is ``<= 0``, ``edge`` is unknown, or the
            tile is larger than the level.

    Example:
        >>> tile_grid((10, 4), tile=4, stride=3).tolist()
        [[0, 0], [3, 0], [6, 0]]
        >>> tile_grid((10, 4), tile=4, stride=4).tolist()  # last tile shifted to x=6
        [[0, 0], [4, 0], [6, 0]]
        >>> tile_grid((10, 4), tile=4, stride=4, edge="pad").tolist()
        [[0, 0], [4, 0], [8, 0]]
    """
    tile = check_positive_int(tile, "tile")
    stride = tile if stride is None else check_positive_int(stride, "stride")
    quantum = check_positive_int(quantum, "quantum")
    check_one_of(edge, "edge", ("shift", "pad"))
    width, height = (int(v) for v in size)
    count = _count(width, tile, stride, "x (width)") * _count(height, tile, stride, "y (height)")
    if count > MAX_TILES:
        raise ValueError(
            f"Expected at most {MAX_TILES} tiles (`MAX_TILES`), but a level of size "
            f"(width={width}, height={height}) with `tile`={tile} and `stride`={stride} has "
            f"about {count}. Hint: use a coarser level or a larger stride, or run the slide "
            "in regions."
        )
    xs = _starts(width, tile, stride, edge, quantum, "x (width)")
    ys = _starts(height, tile, stride, edge, quantum, "y (height)")
    gy, gx = torch.meshgrid(torch.tensor(ys), torch.tensor(xs), indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1).long()


def blend_window(
    tile: int,
    *,
    blend: Blend = "gaussian",
    sigma: float = 0.125,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Blending weights of one tile: flat, or a separable Gaussian bump.

    Stitched maps are :math:`\sum_t w_t m_t / \sum_t w_t`, so only ratios of
    weights matter. The Gaussian window down-weights tile borders, where a CNN
    sees the least context, and its weights stay strictly positive so every pixel
    a tile covers gets a value.

    .. math::

        w(i, j) = g(i)\, g(j),\qquad
        g(i) = \exp\left(-\frac{(i - (T - 1)/2)^2}{2 (\sigma T)^2}\right)

    Args:
        tile: tile side ``T``.
        blend: ``"gaussian"`` or ``"uniform"`` (all ones).
        sigma: Gaussian width as a fraction of the tile (nnU-Net uses 1/8).
        dtype: floating dtype of the window.
        device: device of the window.

    Returns:
        ``(T, T)`` window, maximum 1.

    Raises:
        ValueError: if ``blend`` is unknown or ``sigma`` is not positive.

    Example:
        >>> blend_window(4, blend="gaussian", sigma=0.25)
        tensor([[0.1054, 0.2865, 0.2865, 0.1054],
                [0.2865, 0.7788, 0.7788, 0.2865],
                [0.2865, 0.7788, 0.7788, 0.2865],
                [0.1054, 0.2865, 0.2865, 0.1054]])

    References:
        Isensee et al., "nnU-Net: a self-configuring method for deep
        learning-based biomedical image segmentation", Nature Methods 2021.
    """
    tile = check_positive_int(tile, "tile")
    check_one_of(blend, "blend", ("gaussian", "uniform"))
    _check_float_dtype(dtype)
    device = _check_device(device)
    if blend == "uniform":
        return torch.ones(tile, tile, dtype=dtype, device=device)
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool):
        raise TypeError(f"Expected `sigma` to be a number > 0, but got {describe(sigma)}.")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"Expected `sigma` to be a number > 0, but got {describe(sigma)}.")
    i = torch.arange(tile, dtype=torch.float64)
    g = torch.exp(-((i - (tile - 1) / 2) ** 2) / (2 * (sigma * tile) ** 2))
    g = g.clamp_min(1e-6)  # stay positive far from the centre
    return torch.outer(g, g).to(dtype=dtype, device=device)


def _check_float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"Expected `dtype` to be a floating torch dtype (e.g. torch.float32), but got "
            f"{describe(dtype)}."
        )
    return dtype


def _check_device(device: object) -> torch.device | None:
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"Expected `device` to be a torch.device, a string or None, but got {describe(device)}."
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"Expected `device` to name a torch device (e.g. 'cpu', 'cuda:0'), but got {device!r}."
        ) from err


def _check_fraction(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"Expected `{name}` to be a number in [0, 1], but got {describe(value)}.")
    if not 0.0 <= value <= 1.0:  # also False for NaN
        raise ValueError(f"Expected `{name}` to be a number in [0, 1], but got {value!r}.")
    return float(value)


def select_level(reader: RegionReader, mpp: float, *, tolerance: float = 0.1) -> int:
    """The pyramid level whose pixel size matches ``mpp`` (microns per pixel).

    Args:
        reader: a region reader with a known ``mpp``.
        mpp: wanted microns per pixel (e.g. about 0.97 for PCam's 10x patches).
        tolerance: allowed relative mismatch.

    Returns:
        The level index.

    Raises:
        ValueError: if the reader's ``mpp`` is unknown or no level is within the
            tolerance.

    Example:
        >>> import numpy as np
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((64, 64, 3), np.uint8)
        >>> reader = ArrayReader([img, img[::2, ::2], img[::4, ::4]], mpp=0.25)
        >>> select_level(reader, 1.0)
        2
    """
    if reader.mpp is None:
        raise ValueError(
            "Expected the reader to know its microns per pixel (`mpp`), but it is None. "
            "Hint: pass `mpp=` when creating the reader."
        )
    if not isinstance(mpp, (int, float)) or isinstance(mpp, bool) or not mpp > 0:
        raise ValueError(f"Expected `mpp` to be a number > 0, but got {describe(mpp)}.")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool):
        raise TypeError(f"Expected `tolerance` to be a number >= 0, but got {describe(tolerance)}.")
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"Expected `tolerance` to be a finite number >= 0, but got {tolerance!r}.")
    sizes = [reader.mpp * reader.downsample(lv) for lv in range(reader.level_count)]
    errors = [abs(s / mpp - 1.0) for s in sizes]
    best = int(np.argmin(errors))
    if errors[best] > tolerance:
        shown = ", ".join(f"{s:.3g}" for s in sizes)
        raise ValueError(
            f"Expected a level with about {mpp:g} microns per pixel (tolerance {tolerance:.0%}), "
            f"but the levels have {shown} microns per pixel."
        )
    return best


def read_tiles(reader: RegionReader, level: int, coords: torch.Tensor, tile: int) -> torch.Tensor:
    """Read square tiles into one ``uint8`` batch, padding outside the level with white.

    Args:
        reader: a region reader.
        level: pyramid level.
        coords: ``(N, 2)`` integer ``(x, y)`` corners in pixels of ``level``.
        tile: tile side in pixels.

    Returns:
        ``(N, 3, tile, tile)`` ``uint8`` tensor on the CPU.

    Raises:
        ValueError: if a tile lies entirely outside the level, or the level does not
            exist.

    Example:
        >>> import numpy as np, torch
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((4, 6, 3), np.uint8)
        >>> read_tiles(ArrayReader(img), 0, torch.tensor([[4, 2]]), 3)[0, 0]
        tensor([[  0,   0, 255],
                [  0,   0, 255],
                [255, 255, 255]], dtype=torch.uint8)
    """
    level = check_region(reader, level, 0, 0, 1, 1)[0]
    width, height = reader.dimensions(level)
    out = np.full((len(coords), tile, tile, 3), PAD_VALUE, np.uint8)
    for i, (x, y) in enumerate(coords.tolist()):
        w, h = min(tile, width - x), min(tile, height - y)
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            raise ValueError(
                f"Expected tile corner (x={x}, y={y}) to lie inside level {level} of size "
                f"(width={width}, height={height}), but it does not."
            )
        region = reader.read(level, x, y, w, h)
        if region.shape != (h, w, 3) or region.dtype != np.uint8:
            raise ValueError(
                f"Expected the reader to return a uint8 array of shape {(h, w, 3)}, but got "
                f"{region.dtype} {region.shape}."
            )
        out[i, :h, :w] = region
    return torch.from_numpy(out).permute(0, 3, 1, 2)


class SlideMaps(NamedTuple):
    """Stitched slide-level maps returned by :func:`sliding_window`.

    Attributes:
        prob: ``(H_o, W_o)`` blended tile probabilities (0 where no tile was run).
        cam: ``(H_o, W_o)`` stitched CAM (0 where no tile was run).
        weight: ``(H_o, W_o)`` summed blending weights; ``weight > 0`` marks the
            pixels covered by at least one tissue tile.
        coords: ``(N, 2)`` int64 ``(x, y)`` corners of the tiles that were run, in
            pixels of ``level``.
        tile_probs: ``(N,)`` the classifier's probability for each tile run.
        level: the pyramid level read.
        downsample: level-0 pixels per output pixel.
        mpp: microns per output pixel, or ``None`` when the reader does not know.
    """

    prob: torch.Tensor
    cam: torch.Tensor
    weight: torch.Tensor
    coords: torch.Tensor
    tile_probs: torch.Tensor
    level: int
    downsample: float
    mpp: float | None


def _probs_from_logits(logits: torch.Tensor, targets: int | None) -> torch.Tensor:
    if logits.ndim == 2 and logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.ndim == 1:
        return torch.sigmoid(logits)
    p = torch.softmax(logits.float(), dim=1)
    if targets is None:
        return p.max(dim=1).values
    return p[:, targets]


def _run(
    extractor: CAMExtractor | TileFn,
    x: torch.Tensor,
    targets: int | None,
    cam_normalize: Literal["minmax", "max"] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a CAM extractor or a plain callable on a batch -> (probs (B,), maps (B, h, w))."""
    if isinstance(extractor, CAMExtractor):
        res = extractor.explain(x, targets, normalize=cam_normalize, size="input")
        probs, maps = _probs_from_logits(res.logits.detach(), targets), res.maps.detach()
    else:
        out = extractor(x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                "Expected `extractor` to be a CAM extractor (with `.explain`) or a callable "
                f"returning (probs, maps), but the callable returned {describe(out)}."
            )
        probs, maps = out
    b = x.shape[0]
    if not isinstance(probs, torch.Tensor) or probs.shape != (b,):
        raise ValueError(
            f"Expected the extractor's probabilities to be a tensor of shape ({b},), "
            f"but got {describe(probs)}."
        )
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != b:
        raise ValueError(
            f"Expected the extractor's maps to be a tensor of shape ({b}, h, w), "
            f"but got {describe(maps)}."
        )
    if not (probs.is_floating_point() and maps.is_floating_point()):
        raise TypeError(
            "Expected the extractor's probabilities and maps to be floating tensors, but got "
            f"{probs.dtype} and {maps.dtype}."
        )
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError(
            "Expected the extractor's probabilities to lie in [0, 1], but got values in "
            f"[{float(probs.min()):g}, {float(probs.max()):g}]. Hint: return "
            "softmax/sigmoid outputs, not logits."
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(
            "Expected the extractor's maps to be finite, but some tile's map holds NaN or inf. "
            "Hint: check the model's input transform and weights on that tile."
        )
    return probs, maps


class _Stitcher:
    """Weighted accumulation of tile maps into output-resolution canvases.

    The weighting is one batched multiply; the accumulation is one in-place
    slice add per tile. (A single ``index_add_`` scatter of all tiles was
    measured several times slower on CPU: the slice adds are contiguous row
    copies, the scatter is random access.)
    """

    def __init__(self, height: int, width: int, window: torch.Tensor) -> None:
        self.h, self.w = height, width
        self.window = window
        self.acc = torch.zeros(2, height, width, dtype=window.dtype, device=window.device)
        self.wsum = torch.zeros(height, width, dtype=window.dtype, device=window.device)

    def add(self, values: torch.Tensor, corners: torch.Tensor) -> None:
        """``values`` ``(2, B, t, t)`` at output resolution, ``corners`` ``(B, 2)`` (x, y)."""
        t = self.window.shape[0]
        weighted = values.to(self.acc.dtype) * self.window
        for i, (x, y) in enumerate(corners.tolist()):
            h, w = min(t, self.h - y), min(t, self.w - x)
            if h <= 0 or w <= 0:
                continue
            self.acc[:, y : y + h, x : x + w] += weighted[:, i, :h, :w]
            self.wsum[y : y + h, x : x + w] += self.window[:h, :w]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        covered = self.wsum > 0
        out = torch.where(covered, self.acc / self.wsum.clamp_min(1e-30), 0.0)
        return out[0], out[1], self.wsum


def _tile_fractions_from_mask(
    mask: torch.Tensor, coords: torch.Tensor, tile: int, size: tuple[int, int]
) -> torch.Tensor:
    """Tissue fraction of each tile footprint in a (coarse) mask of the whole level."""
    width, height = size
    mh, mw = mask.shape
    integral = F.pad(mask.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    x0 = (coords[:, 0].double() * mw / width).floor().long().clamp(0, mw - 1)
    y0 = (coords[:, 1].double() * mh / height).floor().long().clamp(0, mh - 1)
    x1 = ((coords[:, 0] + tile).double() * mw / width).ceil().long()
    x1 = torch.minimum(torch.maximum(x1, x0 + 1), torch.tensor(mw))
    y1 = ((coords[:, 1] + tile).double() * mh / height).ceil().long()
    y1 = torch.minimum(torch.maximum(y1, y0 + 1), torch.tensor(mh))
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (total / ((y1 - y0) * (x1 - x0)).double()).float()


def _select_tiles(
    size: tuple[int, int],
    *,
    tile: int,
    stride: int,
    edge: Edge,
    quantum: int,
    tissue: TissueFilter | torch.Tensor | None,
    min_tissue: float,
    shard: tuple[int, int] | None,
) -> tuple[torch.Tensor, TissueFilter | None]:
    """Grid and tissue selection: the corners to run, and the per-tile filter if any."""
    coords = tile_grid(size, tile=tile, stride=stride, edge=edge, quantum=quantum)
    filt: TissueFilter | None = None
    if isinstance(tissue, torch.Tensor):
        if tissue.dtype != torch.bool or tissue.ndim != 2:
            raise ValueError(
                "Expected `tissue` mask to be a torch.bool tensor of shape (H, W), but got "
                f"{describe(tissue)}."
            )
        mh, mw = tissue.shape
        if mh == 0 or mw == 0 or abs((mh / size[1]) / (mw / size[0]) - 1.0) > 0.1:
            raise ValueError(
                f"Expected `tissue` mask to cover the whole level (width={size[0]}, "
                f"height={size[1]}) at some scale, but its shape {(mh, mw)} has another "
                "aspect ratio. Hint: compute it with slide_tissue_mask(reader)."
            )
        frac = _tile_fractions_from_mask(tissue.cpu(), coords, tile, size)
        coords = coords[frac >= min_tissue]
    elif isinstance(tissue, TissueFilter):
        filt = tissue
    elif tissue is not None:
        raise TypeError(
            "Expected `tissue` to be a TissueFilter, a torch.bool mask or None, but got "
            f"{describe(tissue)}."
        )
    if shard is not None:
        if not isinstance(shard, tuple) or len(shard) != 2:
            raise TypeError(
                f"Expected `shard` to be a tuple (rank, world_size), but got {describe(shard)}."
            )
        coords = coords[shard_indices(len(coords), rank=shard[0], world_size=shard[1])]
    return coords, filt


def _tile_stream(
    reader: RegionReader,
    level: int,
    coords: torch.Tensor,
    *,
    tile: int,
    batch_size: int,
    filt: TissueFilter | None,
    device: torch.device,
    progress: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(corners (b, 2), uint8 tiles (b, 3, T, T) on device)``, filtered, non-empty."""
    from tqdm.auto import tqdm  # optional dependency (the `slide` extra): imported when used

    bar = tqdm(total=len(coords), disable=not progress, desc="tiles", unit="tile", leave=False)
    try:
        for start in range(0, len(coords), batch_size):
            batch = coords[start : start + batch_size]
            tiles = read_tiles(reader, level, batch, tile).to(device)
            if filt is not None:
                keep = filt(tiles).cpu()
                batch, tiles = batch[keep], tiles[keep.to(device)]
            bar.update(min(batch_size, len(coords) - start))
            if len(batch):
                yield batch, tiles
    finally:
        bar.close()


def _tile_maps(
    probs: torch.Tensor,
    maps: torch.Tensor,
    *,
    tile: int,
    downsample: int,
    gate: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile probabilities and maps at output resolution: resized, gated, area-pooled."""
    probs, maps = probs.detach().to(device, dtype), maps.detach().to(device, dtype)
    if maps.shape[-2:] != (tile, tile):
        maps = F.interpolate(
            maps[:, None], size=(tile, tile), mode="bilinear", align_corners=False
        )[:, 0]
    if gate:
        maps = maps * probs[:, None, None]
    if downsample > 1:
        maps = F.avg_pool2d(maps[:, None], downsample)[:, 0]
    return probs, maps


def sliding_window(
    reader: RegionReader,
    extractor: CAMExtractor | TileFn,
    *,
    tile: int,
    stride: int | None = None,
    batch_size: int = 32,
    level: int = 0,
    blend: Blend = "gaussian",
    sigma: float = 0.125,
    edge: Edge = "shift",
    tissue: TissueFilter | torch.Tensor | None = None,
    min_tissue: float = 0.4,
    targets: int | None = 1,
    cam_normalize: Literal["minmax", "max"] | None = "max",
    gate: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    output_downsample: int = 1,
    mpp: float | None = None,
    mpp_tolerance: float = 0.1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> SlideMaps:
    r"""Stream tissue tiles through a classifier + CAM extractor and stitch slide maps.

    Tiles of ``tile`` pixels are laid out every ``stride`` pixels on ``level``
    (:func:`tile_grid`), read in batches of ``batch_size``, filtered for tissue,
    sent through ``extractor`` as floats in [0, 1] (after ``transform``), and
    their probabilities and CAMs are blended into slide-level canvases with the
    window of :func:`blend_window`:

    .. math::

        M(p) = \frac{\sum_{t \ni p} w_t(p)\, m_t(p)}{\sum_{t \ni p} w_t(p)}

    Memory holds one batch of tiles and the output canvases (three
    ``(H_o, W_o)`` arrays), never the slide: choose ``output_downsample`` so the
    canvases fit (``H_o = H_level // output_downsample``; each output pixel is the
    area mean of ``output_downsample**2`` tile pixels).

    Args:
        reader: a :class:`~camseg.slide.RegionReader`.
        extractor: a camseg CAM extractor (``camseg.GradCAM(model, layer)``,
            ``camseg.LinearCAM(...)``...; see :class:`CAMExtractor`: its
            ``explain(x, targets, normalize=..., size="input")`` gives maps and
            logits), or any callable
            ``tiles (B, 3, T, T) -> (probs (B,), maps (B, h, w))``; maps of another
            size are resized bilinearly to the tile.
        tile: tile side in pixels of ``level``.
        stride: step between tiles (``tile // 2`` is a common overlap); ``tile`` by
            default.
        batch_size: tiles per forward pass.
        level: pyramid level to read.
        blend: ``"gaussian"`` or ``"uniform"`` blending over overlaps.
        sigma: Gaussian width as a fraction of the tile.
        edge: ``"shift"`` or ``"pad"``: what to do where the grid does not end on the
            border (see :func:`tile_grid`).
        tissue: a :class:`TissueFilter` applied to each tile, a ``torch.bool`` tissue
            mask of the whole level at any resolution (e.g. from
            :func:`slide_tissue_mask`: background tiles are then never read), or
            ``None`` to run every tile.
        min_tissue: minimum tissue fraction when ``tissue`` is a mask.
        targets: class index whose probability and CAM are stitched, or ``None``
            for the arg-max class (extractors only).
        cam_normalize: per-tile CAM normalisation passed to the extractor.
        gate: multiply each tile's CAM by its probability, so that tiles the
            classifier calls negative contribute (near) empty maps.
        transform: applied to the float tiles before the extractor (e.g. the
            model's mean/std normalisation).
        output_downsample: level pixels per output pixel; must divide ``tile`` and
            ``stride``.
        mpp: microns per pixel the model expects; checked against the level.
        mpp_tolerance: allowed relative mismatch of ``mpp``.
        device: where tiles, model inputs and canvases live (CPU by default).
        dtype: floating dtype of the canvases.
        shard: ``(rank, world_size)``: run only every ``world_size``-th tile of the
            grid (after selection by a tissue mask), starting at ``rank``; combine the
            ranks' results with :func:`merge_slide_maps` (tile-level sharding of one
            large slide).
        progress: show a tqdm progress bar.

    Returns:
        :class:`SlideMaps` with ``prob``, ``cam`` and ``weight`` canvases of shape
        ``(H_o, W_o)``, plus the tiles run and their probabilities.

    Raises:
        TypeError: if an option has the wrong type or the extractor returns
            something other than ``(probs, maps)``.
        ValueError: if ``stride <= 0``, the tile is larger than the level,
            ``output_downsample`` does not divide ``tile``/``stride``, the level's
            microns per pixel do not match ``mpp``, a region cannot be read, or the
            extractor's outputs have the wrong shape.

    Example:
        >>> import numpy as np, torch
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((8, 12, 3), np.uint8); img[..., 0] = np.arange(12) * 20
        >>> red = lambda t: (t.mean(dim=(1, 2, 3)), t[:, 0])  # "identity" model
        >>> out = sliding_window(ArrayReader(img), red, tile=4, stride=2, gate=False,
        ...                      progress=False)
        >>> torch.allclose(out.cam * 255, torch.from_numpy(img[..., 0]).float())
        True
        >>> out.coords.shape, out.weight.min() > 0
        (torch.Size([15, 2]), tensor(True))
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    tile = check_positive_int(tile, "tile")
    stride = tile if stride is None else check_positive_int(stride, "stride")
    d = check_positive_int(output_downsample, "output_downsample")
    check_one_of(edge, "edge", ("shift", "pad"))
    if tile % d or stride % d:
        raise ValueError(
            f"Expected `output_downsample` ({d}) to divide `tile` ({tile}) and `stride` "
            f"({stride}), but it does not."
        )
    if cam_normalize is not None:
        check_one_of(cam_normalize, "cam_normalize", ("minmax", "max"))
    if targets is not None and (not isinstance(targets, int) or isinstance(targets, bool)):
        raise TypeError(f"Expected `targets` to be an int or None, but got {describe(targets)}.")
    level = check_region(reader, level, 0, 0, 1, 1)[0]
    min_tissue = _check_fraction(min_tissue, "min_tissue")
    _check_float_dtype(dtype)
    if mpp is not None:
        if reader.mpp is None:
            raise ValueError(
                f"Expected the reader to know its microns per pixel to check `mpp`={mpp}, "
                "but its `mpp` is None. Hint: pass `mpp=` when creating the reader."
            )
        have = reader.mpp * reader.downsample(level)
        if abs(have / mpp - 1.0) > mpp_tolerance:
            raise ValueError(
                f"Expected level {level} to have about {mpp:g} microns per pixel (the model's "
                f"scale), but it has {have:.4g}. Hint: `select_level(reader, {mpp:g})`."
            )
    size = reader.dimensions(level)
    dev = _check_device(device) or torch.device("cpu")
    coords, filt = _select_tiles(
        size,
        tile=tile,
        stride=stride,
        edge=edge,
        quantum=d,
        tissue=tissue,
        min_tissue=min_tissue,
        shard=shard,
    )
    window = blend_window(tile // d, blend=blend, sigma=sigma, dtype=dtype, device=dev)
    stitcher = _Stitcher(size[1] // d, size[0] // d, window)
    kept_coords: list[torch.Tensor] = []
    kept_probs: list[torch.Tensor] = []
    stream = _tile_stream(
        reader,
        level,
        coords,
        tile=tile,
        batch_size=batch_size,
        filt=filt,
        device=dev,
        progress=progress,
    )
    for batch, tiles in stream:
        x = tiles.float().div_(255.0)
        if transform is not None:
            x = transform(x)
        probs, maps = _run(extractor, x, targets, cam_normalize)
        probs, maps = _tile_maps(
            probs, maps, tile=tile, downsample=d, gate=gate, dtype=dtype, device=dev
        )
        values = torch.stack([probs[:, None, None].expand_as(maps), maps])
        stitcher.add(values, (batch // d).to(dev))
        kept_coords.append(batch)
        kept_probs.append(probs)

    prob, cam, weight = stitcher.result()
    coords_out = torch.cat(kept_coords) if kept_coords else torch.zeros(0, 2, dtype=torch.long)
    probs_out = torch.cat(kept_probs) if kept_probs else torch.zeros(0, dtype=dtype, device=dev)
    ds = reader.downsample(level) * d
    return SlideMaps(
        prob=prob,
        cam=cam,
        weight=weight,
        coords=coords_out,
        tile_probs=probs_out,
        level=level,
        downsample=ds,
        mpp=None if reader.mpp is None else reader.mpp * ds,
    )


def slide_mask(
    maps: SlideMaps,
    *,
    source: Literal["cam", "prob"] = "cam",
    threshold: Literal["otsu"] | float = 0.5,
    min_size: int = 0,
    fill_holes: bool = False,
) -> torch.Tensor:
    """Tumour mask of a whole slide from stitched maps (:func:`~camseg.postprocess.cams_to_masks`).

    The chosen canvas is thresholded (a fixed number, or Otsu's threshold of the
    covered pixels' histogram), restricted to the pixels some tile covered
    (``maps.weight > 0``), cleaned of components smaller than ``min_size``
    output pixels, and optionally hole-filled.

    Args:
        maps: the output of :func:`sliding_window` (with maps in [0, 1]: the
            default ``cam_normalize="max"`` or ``"minmax"``).
        source: ``"cam"`` (stitched, probability-gated CAM) or ``"prob"`` (blended
            tile probabilities).
        threshold: ``"otsu"`` or a number in [0, 1].
        min_size: smallest component to keep, in output pixels.
        fill_holes: fill holes inside components.

    Returns:
        ``torch.bool`` ``(H_o, W_o)`` mask on the maps' device.

    Raises:
        ValueError: if ``source`` is unknown or the map leaves [0, 1].
        TypeError: if ``maps`` is not a :class:`SlideMaps`.

    Example:
        >>> import numpy as np
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((8, 16, 3), np.uint8); img[:, 8:] = 255
        >>> fn = lambda t: (t.mean(dim=(1, 2, 3)), t[:, 0])
        >>> out = sliding_window(ArrayReader(img), fn, tile=8, progress=False)
        >>> slide_mask(out).sum(dim=0)
        tensor([0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8])
    """
    from camseg.postprocess import cams_to_masks

    if not isinstance(maps, SlideMaps):
        raise TypeError(f"Expected `maps` to be a SlideMaps, but got {describe(maps)}.")
    check_one_of(source, "source", ("cam", "prob"))
    canvas = maps.cam if source == "cam" else maps.prob
    covered = maps.weight > 0
    if threshold == "otsu" and bool(covered.any()):
        # Otsu on the covered pixels only: uncovered zeros would bias the histogram
        from camseg.postprocess import threshold_otsu

        threshold = float(threshold_otsu(canvas[covered].view(1, 1, -1))[0])
    return cams_to_masks(
        canvas[None],
        threshold=threshold,
        tissue=covered[None],
        min_size=min_size,
        fill_holes=fill_holes,
    )[0]
