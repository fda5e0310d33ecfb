"""Sliding-window inference: tile grid, blending windows, and stitched slide maps."""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from camseg._checks import (
    check_callable,
    check_device,
    check_nonnegative,
    check_one_of,
    check_positive_int,
    describe,
)
from camseg.slide._readers import RegionReader, check_reader, check_region
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
        TypeError: if ``size`` is not a pair of ints, or ``tile``, ``stride`` or
            ``quantum`` is not an int.
        ValueError: if a side of ``size`` is ``< 1``, ``tile`` or ``stride`` is
            ``<= 0``, ``edge`` is unknown, or the tile is larger than the level.

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
    width, height = _check_level_size(size)
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


def _check_level_size(size: object) -> tuple[int, int]:
    """``size`` as ``(width, height)`` ints >= 1, or a clear error naming it."""
    if (
        not isinstance(size, (tuple, list, torch.Size))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    ):
        raise TypeError(
            f"Expected `size` to be a pair of ints (width, height), but got {describe(size)}."
        )
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(
            f"Expected `size` to have width and height >= 1, but got {(width, height)}."
        )
    return width, height


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
    device = check_device(device)
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
        TypeError: if ``reader`` is not a :class:`~camseg.slide.RegionReader` or
            ``mpp`` is not a number.
        ValueError: if the reader's ``mpp`` is unknown, ``mpp`` is not a finite
            number > 0, or no level is within the tolerance.

    Example:
        >>> import numpy as np
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((64, 64, 3), np.uint8)
        >>> reader = ArrayReader([img, img[::2, ::2], img[::4, ::4]], mpp=0.25)
        >>> select_level(reader, 1.0)
        2
    """
    check_reader(reader)
    if reader.mpp is None:
        raise ValueError(
            "Expected the reader to know its microns per pixel (`mpp`), but it is None. "
            "Hint: pass `mpp=` when creating the reader."
        )
    if not isinstance(mpp, (int, float)) or isinstance(mpp, bool):
        raise TypeError(f"Expected `mpp` to be a number > 0, but got {describe(mpp)}.")
    if not (mpp > 0 and math.isfinite(mpp)):
        raise ValueError(f"Expected `mpp` to be a finite number > 0, but got {mpp!r}.")
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
        TypeError: if ``reader`` is not a :class:`~camseg.slide.RegionReader`
            (:func:`~camseg.slide.check_reader`), ``tile`` is not an int or ``coords``
            is not an integer tensor.
        ValueError: if ``coords`` is not ``(N, 2)``, a tile lies entirely outside the
            level, or the level does not exist.

    Example:
        >>> import numpy as np, torch
        >>> from camseg.slide import ArrayReader
        >>> img = np.zeros((4, 6, 3), np.uint8)
        >>> read_tiles(ArrayReader(img), 0, torch.tensor([[4, 2]]), 3)[0, 0]
        tensor([[  0,   0, 255],
                [  0,   0, 255],
                [255, 255, 255]], dtype=torch.uint8)
    """
    check_reader(reader)
    tile = check_positive_int(tile, "tile")
    if not isinstance(coords, torch.Tensor) or coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(
            "Expected `coords` to be an (N, 2) tensor of (x, y) corners, but got "
            f"{describe(coords)}."
        )
    if coords.is_floating_point() or coords.is_complex() or coords.dtype == torch.bool:
        raise TypeError(
            f"Expected `coords` to be an integer tensor of (x, y) corners, but got {coords.dtype}."
        )
    level = check_region(reader, level, 0, 0, 1, 1)[0]
    width, height = reader.dimensions(level)
    out = np.full((len(coords), tile, tile, 3), PAD_VALUE, np.uint8)
    for i, (x, y) in enumerate(coords.tolist()):
        w, h = min(tile, width - x), min(tile, height - y)
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            raise ValueError(
                f"Expected every tile of `coords` to overlap level {level} of size "
                f"(width={width}, height={height}), but the corner (x={x}, y={y}) does not."
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
            f"Expected the `extractor`'s probabilities to be a tensor of shape ({b},), "
            f"but got {describe(probs)}."
        )
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != b:
        raise ValueError(
            f"Expected the `extractor`'s maps to be a tensor of shape ({b}, h, w), "
            f"but got {describe(maps)}."
        )
    if not (probs.is_floating_point() and maps.is_floating_point()):
        raise TypeError(
            "Expected the `extractor`'s probabilities and maps to be floating tensors, but got "
            f"{probs.dtype} and {maps.dtype}."
        )
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError(
            "Expected the `extractor`'s probabilities to lie in [0, 1], but got values in "
            f"[{float(probs.min()):g}, {float(probs.max()):g}]. Hint: return "
            "softmax/sigmoid outputs, not logits."
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError(
            "Expected the `extractor`'s maps to be finite, but some tile's map holds NaN or inf. "
            "Hint: check the model's input transform and weights on that tile."
        )
    return probs, maps


class _TensorSink:
    """Output canvases ``(3, H_o, W_o)`` (prob, cam, weight) in memory, on the band's device."""

    def __init__(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> None:
        self.canvas = torch.zeros(3, height, width, dtype=dtype, device=device)

    def write(self, row: int, col: int, block: torch.Tensor) -> None:
        self.canvas[:, row : row + block.shape[1], col : col + block.shape[2]] = block

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.canvas[0], self.canvas[1], self.canvas[2]

    def abort(self) -> None:
        pass


_CANVAS_NAMES = ("prob", "cam", "weight")
_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


class _NpySink:
    """Output canvases written row band by row band into ``prob/cam/weight.npy`` files.

    Each file is created at its final size (sparse: zero rows cost no disk) under a
    temporary name, filled with ``pwrite``-style seeks (never memory-mapped while
    writing, so the written pages do not stay resident in this process), and moved
    into place with ``os.replace`` at the end. The result is memory-mapped
    copy-on-write: a page is read from disk only when it is used.
    """

    def __init__(self, directory: Path, height: int, width: int, dtype: torch.dtype) -> None:
        self.directory = directory
        self.shape = (height, width)
        self.np_dtype = np.dtype(_NUMPY_DTYPES[dtype])
        self.row_bytes = width * self.np_dtype.itemsize
        directory.mkdir(parents=True, exist_ok=True)
        self.tmp: list[Path] = []
        self.files: list[Any] = []
        self.offsets: list[int] = []
        try:
            for name in _CANVAS_NAMES:
                tmp = directory / f".{name}.npy.{os.getpid()}.tmp"
                self.tmp.append(tmp)
                fh = open(tmp, "wb")  # noqa: SIM115 -- closed in finish()/abort()
                self.files.append(fh)
                np.lib.format.write_array_header_1_0(
                    fh,
                    {
                        "descr": np.lib.format.dtype_to_descr(self.np_dtype),
                        "fortran_order": False,
                        "shape": self.shape,
                    },
                )
                self.offsets.append(fh.tell())
                fh.truncate(self.offsets[-1] + height * self.row_bytes)
        except BaseException:
            self.abort()
            raise

    def write(self, row: int, col: int, block: torch.Tensor) -> None:
        data = block.detach().to("cpu").numpy().astype(self.np_dtype, copy=False)
        k, w = data.shape[1], data.shape[2]
        for c, fh in enumerate(self.files):
            if w == self.shape[1]:  # whole rows: one contiguous write
                fh.seek(self.offsets[c] + row * self.row_bytes)
                fh.write(np.ascontiguousarray(data[c]).tobytes())
                continue
            start = self.offsets[c] + col * self.np_dtype.itemsize
            for r in range(k):
                fh.seek(start + (row + r) * self.row_bytes)
                fh.write(np.ascontiguousarray(data[c, r]).tobytes())

    def finish(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        finals = []
        for tmp, fh, name in zip(self.tmp, self.files, _CANVAS_NAMES, strict=True):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            final = self.directory / f"{name}.npy"
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, final)
            finals.append(final)
        self.files, self.tmp = [], []
        arrays = [np.load(f, mmap_mode="c") for f in finals]
        return torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1]), torch.from_numpy(arrays[2])

    def abort(self) -> None:
        for fh in self.files:
            fh.close()
        for tmp in self.tmp:
            tmp.unlink(missing_ok=True)
        self.files, self.tmp = [], []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Stitcher:
    """Weighted accumulation of tile maps into a band of output rows, flushed as it completes.

    Tiles arrive row by row (ascending ``y``). The accumulator holds only a band of
    ``2 T`` output rows (``T`` the tile side at output resolution) across the full
    width; once a tile starts at row ``y``, every row above ``y`` is final, so it is
    normalised (``sum w m / sum w``) and handed to the sink (in memory, or ``.npy``
    files on disk), and the band moves down. Memory is ``O(T x W_o)`` plus the
    sink's.

    The band is zero outside the columns ``[c0, c1)`` that tiles touched since it was
    last empty, so normalising, writing and moving it touch only those columns (on a
    slide with sparse tissue, a small part of the width). Whether it is empty after a
    flush is known on the host, from the lowest row a tile touched: no device sync.

    The weighting is one batched multiply; the accumulation is one in-place slice
    add per tile. (A single ``index_add_`` scatter of all tiles was measured several
    times slower on CPU: the slice adds are contiguous row copies, the scatter is
    random access.)
    """

    def __init__(
        self, height: int, width: int, window: torch.Tensor, sink: _TensorSink | _NpySink
    ) -> None:
        self.h, self.w = height, width
        self.window = window
        self.t = int(window.shape[0])
        self.cap = max(1, min(height, 2 * self.t))
        self.band = torch.zeros(3, self.cap, width, dtype=window.dtype, device=window.device)
        self.base = 0
        self.sink = sink
        self.c0, self.c1 = width, 0  # the band's touched columns (empty: c0 >= c1)
        self.bottom = 0  # one past the lowest row a tile touched (host-side: no device sync)

    def add(self, values: torch.Tensor, corners: torch.Tensor) -> None:
        """``values`` ``(2, B, t, t)`` at output resolution, ``corners`` ``(B, 2)`` (x, y)."""
        t = self.t
        weighted = values.to(self.band.dtype) * self.window
        for i, (x, y) in enumerate(corners.tolist()):
            h, w = min(t, self.h - y), min(t, self.w - x)
            if h <= 0 or w <= 0:
                continue
            if y < self.base:  # the tile order guarantees this never happens
                raise RuntimeError(
                    f"internal error: tile row {y} arrived after rows up to {self.base} were "
                    "written; tiles must come in ascending rows"
                )
            if y + h > self.base + self.cap:
                self._flush(y)
            r = y - self.base
            self.c0, self.c1 = min(self.c0, x), max(self.c1, x + w)
            self.bottom = max(self.bottom, y + h)
            self.band[:2, r : r + h, x : x + w] += weighted[:, i, :h, :w]
            self.band[2, r : r + h, x : x + w] += self.window[:h, :w]

    def _flush(self, upto: int) -> None:
        """Write the final rows ``[base, upto)`` and move the band down to ``upto``."""
        k = min(upto - self.base, self.cap)
        c0, c1 = self.c0, self.c1
        if k > 0 and c0 < c1:  # an untouched band is all zero: the sink's zeros stand
            acc, wsum = self.band[:2, :k, c0:c1], self.band[2, :k, c0:c1]
            out = torch.where(wsum > 0, acc / wsum.clamp_min(1e-30), 0.0)
            self.sink.write(self.base, c0, torch.cat([out, wsum[None]]))
            keep = self.cap - k
            if keep:
                self.band[:, :keep, c0:c1] = self.band[:, k:, c0:c1].clone()
            self.band[:, keep:, c0:c1] = 0
            if self.bottom <= upto:  # no tile reaches below the flushed rows
                self.c0, self.c1 = self.w, 0
        self.base = upto  # rows past the band had no tile: the sink's zeros stand

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        while self.base < self.h:
            self._flush(min(self.h, self.base + self.cap))
        return self.sink.finish()


def _check_tissue_mask(tissue: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
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
    return tissue.cpu()


def _mask_span(starts: torch.Tensor, tile: int, length: int, m: int) -> tuple[torch.Tensor, ...]:
    """Mask cells ``[lo, hi)`` under tiles starting at ``starts`` (level pixels) on one axis."""
    lo = (starts.double() * m / length).floor().long().clamp(0, m - 1)
    hi = ((starts + tile).double() * m / length).ceil().long()
    hi = torch.minimum(torch.maximum(hi, lo + 1), torch.tensor(m))
    return lo, hi


def _grid_rows(
    size: tuple[int, int],
    *,
    tile: int,
    stride: int,
    edge: Edge,
    quantum: int,
    tissue: torch.Tensor | None,
    min_tissue: float,
    shard: tuple[int, int] | None,
) -> tuple[int, Iterator[tuple[int, torch.Tensor]]]:
    """The grid, lazily: ``(grid tile count, iterator of (grid tiles passed, corners (n, 2)))``.

    Only the two axes of starts are held (``O(W / stride + H / stride)``), never the
    ``N x 2`` table of a whole grid; with a tissue mask, each row's tissue fractions
    come from the mask rows under that row of tiles (one column sum per row), and
    with ``shard`` every ``world_size``-th selected tile is kept, counted across rows
    (the same tiles as sharding the selected list).
    """
    width, height = size
    _count(width, tile, stride, "x (width)")
    _count(height, tile, stride, "y (height)")
    xs = torch.tensor(_starts(width, tile, stride, edge, quantum, "x (width)"), dtype=torch.long)
    ys = _starts(height, tile, stride, edge, quantum, "y (height)")
    total = len(xs) * len(ys)

    def rows() -> Iterator[tuple[int, torch.Tensor]]:
        seen = 0
        if tissue is not None:
            mh, mw = tissue.shape
            x0, x1 = _mask_span(xs, tile, width, mw)
            col_area = (x1 - x0).double()
        for y in ys:
            corners = torch.stack([xs, torch.full_like(xs, y)], dim=1)
            if tissue is not None:
                y0, y1 = (int(v) for v in _mask_span(torch.tensor([y]), tile, height, mh))
                cols = F.pad(tissue[y0:y1].sum(0, dtype=torch.int64).cumsum(0), (1, 0))
                frac = ((cols[x1] - cols[x0]).double() / (col_area * (y1 - y0))).float()
                corners = corners[frac >= min_tissue]
            if shard is not None:
                rank, world = shard
                first = (rank - seen) % world
                n = len(corners)
                seen += n
                corners = corners[first::world]
            yield len(xs), corners

    return total, rows()


def _check_shard(shard: object) -> tuple[int, int] | None:
    if shard is None:
        return None
    if not isinstance(shard, tuple) or len(shard) != 2:
        raise TypeError(
            f"Expected `shard` to be a tuple (rank, world_size), but got {describe(shard)}."
        )
    try:
        shard_indices(0, rank=shard[0], world_size=shard[1])  # validates rank and world_size
    except ValueError as err:
        raise ValueError(f"Expected `shard` to be a valid (rank, world_size): {err}") from None
    return int(shard[0]), int(shard[1])


_DONE = object()


class _NoBar:
    """The part of a tqdm bar the tile stream uses, doing nothing (``progress=False``)."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int) -> Any:
    """A tqdm bar (the optional dependency of the `slide` extra), imported only when shown."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "Expected tqdm to be installed for `progress=True` (a progress bar), but it is not. "
            "Hint: pip install 'camseg[slide]', or pass `progress=False`."
        ) from None
    return tqdm(total=total, desc="tiles", unit="tile", leave=False)


def _batches(
    rows: Iterator[tuple[int, torch.Tensor]], batch_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Regroup per-row corners into batches of ``batch_size`` (grid tiles passed, corners)."""
    pending: list[torch.Tensor] = []
    count = passed = 0
    for n_grid, corners in rows:
        passed += n_grid
        while len(corners):
            take = corners[: batch_size - count]
            corners = corners[len(take) :]
            pending.append(take)
            count += len(take)
            if count == batch_size:
                yield passed, torch.cat(pending)
                pending, count, passed = [], 0, 0
    if pending or passed:
        yield passed, torch.cat(pending) if pending else torch.zeros(0, 2, dtype=torch.long)


def _tile_stream(
    reader: RegionReader,
    level: int,
    rows: Iterator[tuple[int, torch.Tensor]],
    *,
    total: int,
    tile: int,
    batch_size: int,
    filt: TissueFilter | None,
    device: torch.device,
    progress: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``(corners (b, 2), uint8 tiles (b, 3, T, T) on device)``, filtered, non-empty.

    Reading (and the per-tile tissue filter) runs one batch ahead in a background
    thread, so it overlaps the model's forward pass on the caller's thread (tile
    decoding, the reader's I/O and torch ops release the GIL). The reader is only
    ever called from that one thread, one region at a time.
    """
    bar = _progress_bar(total) if progress else _NoBar()
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for passed, batch in _batches(rows, batch_size):
                if stop.is_set():
                    return
                tiles = None
                if len(batch):
                    tiles = read_tiles(reader, level, batch, tile).to(device)
                    if filt is not None:
                        keep = filt(tiles).cpu()
                        batch, tiles = batch[keep], tiles[keep.to(device)]
                if not put((passed, batch, tiles)):
                    return
            put(_DONE)
        except BaseException as err:  # re-raised on the caller's thread
            put(err)

    worker = threading.Thread(target=work, name="camseg-tile-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            passed, batch, tiles = item
            bar.update(passed)
            if len(batch):
                yield batch, tiles
    finally:
        stop.set()
        worker.join()
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
    out: str | os.PathLike[str] | None = None,
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

    Memory does not grow with the slide: the tile grid is walked row by row (never
    materialised), reading runs one batch ahead in a background thread, and the
    canvases are stitched in a band of ``2 * tile / output_downsample`` rows that is
    normalised and written out as soon as no later tile can touch it. What stays is
    one batch of tiles, the band, the corners and probabilities of the tiles run
    (16 bytes each) and the output canvases (three ``(H_o, W_o)`` arrays,
    ``H_o = H_level // output_downsample``; each output pixel is the area mean of
    ``output_downsample**2`` tile pixels). With ``out=`` the canvases go to
    ``.npy`` files instead and the result maps them from disk, so even they do not
    have to fit in memory.

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
        out: a directory: write the canvases to ``prob.npy``, ``cam.npy`` and
            ``weight.npy`` there (atomically, replacing earlier ones) while
            stitching, and return them as copy-on-write memory maps on the CPU
            (``np.load(..., mmap_mode="c")``); ``None`` (default): in memory on
            ``device``. ``dtype`` must then be float16, float32 or float64.
        shard: ``(rank, world_size)``: run only every ``world_size``-th tile of the
            grid (after selection by a tissue mask), starting at ``rank``; combine the
            ranks' results with :func:`merge_slide_maps` (tile-level sharding of one
            large slide).
        progress: show a tqdm progress bar.

    Returns:
        :class:`SlideMaps` with ``prob``, ``cam`` and ``weight`` canvases of shape
        ``(H_o, W_o)``, plus the tiles run and their probabilities.

    Raises:
        TypeError: if ``reader`` is not a :class:`~camseg.slide.RegionReader`
            (checked first, by :func:`~camseg.slide.check_reader`), an option has the
            wrong type, or the extractor returns something other than
            ``(probs, maps)``.
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
    check_reader(reader)
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
    if targets is not None and targets < 0:
        raise ValueError(f"Expected `targets` to be a class index >= 0, but got {targets}.")
    if not (callable(extractor) or isinstance(extractor, CAMExtractor)):
        raise TypeError(
            "Expected `extractor` to have `explain` (a camseg extractor) or be a callable tiles -> "
            f"(probabilities, maps), but got {describe(extractor)}."
        )
    if transform is not None:
        check_callable(transform, "transform")
    if not isinstance(gate, bool):
        raise TypeError(f"Expected `gate` to be a bool, but got {describe(gate)}.")
    check_nonnegative(mpp_tolerance, "mpp_tolerance")
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
    dev = check_device(device) or torch.device("cpu")
    filt: TissueFilter | None = None
    mask: torch.Tensor | None = None
    if isinstance(tissue, torch.Tensor):
        mask = _check_tissue_mask(tissue, size)
    elif isinstance(tissue, TissueFilter):
        filt = tissue
    elif tissue is not None:
        raise TypeError(
            "Expected `tissue` to be a TissueFilter, a torch.bool mask or None, but got "
            f"{describe(tissue)}."
        )
    shard = _check_shard(shard)
    out_dir = _check_out(out, dtype)
    total, rows = _grid_rows(
        size,
        tile=tile,
        stride=stride,
        edge=edge,
        quantum=d,
        tissue=mask,
        min_tissue=min_tissue,
        shard=shard,
    )
    window = blend_window(tile // d, blend=blend, sigma=sigma, dtype=dtype, device=dev)
    h_o, w_o = size[1] // d, size[0] // d
    sink: _TensorSink | _NpySink = (
        _TensorSink(h_o, w_o, dtype, dev) if out_dir is None else _NpySink(out_dir, h_o, w_o, dtype)
    )
    try:
        stitcher = _Stitcher(h_o, w_o, window, sink)
        kept_coords: list[torch.Tensor] = []
        kept_probs: list[torch.Tensor] = []
        stream = _tile_stream(
            reader,
            level,
            rows,
            total=total,
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
    except BaseException:
        sink.abort()
        raise
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


def _check_out(out: object, dtype: torch.dtype) -> Path | None:
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"Expected `out` to be a directory path or None, but got {describe(out)}.")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"Expected `out` to be a directory, but {str(path)!r} is a file.")
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(
            f"Expected `dtype` to be float16, float32 or float64 with `out=`, but got {dtype}."
        )
    return path


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
