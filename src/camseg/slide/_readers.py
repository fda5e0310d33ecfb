"""Region readers: one small protocol, three adapters.

A region reader hands out rectangular RGB regions of a (possibly pyramidal)
slide. camseg never needs more: tiling, tissue detection and stitching only call
:meth:`RegionReader.read` on tile-sized regions, so a slide much larger than
memory streams through.

Coordinates are **in the pixels of the requested level** (``x`` along the width,
``y`` along the height), and regions come back as NumPy ``uint8`` arrays of shape
``(h, w, 3)`` -- the layout OpenSlide and tifffile hand out, so adapters do not
copy. (OpenSlide's own ``read_region`` takes level-0 coordinates;
:class:`OpenSlideReader` converts.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from camseg._checks import describe

__all__ = ["ArrayReader", "OpenSlideReader", "RegionReader", "TiffReader", "check_region"]


@runtime_checkable
class RegionReader(Protocol):
    """What camseg needs from a slide: levels, their sizes, and RGB regions.

    Any object with these members works (duck typing, no base class needed):
    :class:`ArrayReader`, :class:`TiffReader`, :class:`OpenSlideReader` or your
    own.

    Attributes:
        level_count: number of pyramid levels (level 0 is the full resolution).
        mpp: microns per pixel at level 0, or ``None`` when unknown.

    Example:
        >>> import numpy as np
        >>> reader = ArrayReader(np.zeros((64, 96, 3), np.uint8), mpp=0.5)
        >>> isinstance(reader, RegionReader)
        True
    """

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        ...

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0, or ``None`` when unknown."""
        ...

    def dimensions(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of ``level`` in pixels (OpenSlide's order)."""
        ...

    def downsample(self, level: int) -> float:
        """Size of one pixel of ``level`` in level-0 pixels."""
        ...

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Region ``[y, y + h) x [x, x + w)`` of ``level`` as ``uint8`` ``(h, w, 3)``."""
        ...


def _check_level(level: Any, level_count: int) -> int:
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
        raise TypeError(f"Expected `level` to be an int, but got {describe(level)}.")
    if not 0 <= int(level) < level_count:
        raise ValueError(
            f"Expected `level` to be in [0, {level_count - 1}] (the slide has {level_count} "
            f"level(s)), but got {int(level)}."
        )
    return int(level)


def check_region(
    reader: RegionReader, level: int, x: int, y: int, w: int, h: int
) -> tuple[int, int, int, int, int]:
    """Validate a region request against a reader's level sizes.

    Args:
        reader: the region reader.
        level: pyramid level.
        x: left column of the region, in pixels of ``level``.
        y: top row of the region, in pixels of ``level``.
        w: width of the region in pixels (``>= 1``).
        h: height of the region in pixels (``>= 1``).

    Returns:
        ``(level, x, y, w, h)`` as Python ints.

    Raises:
        TypeError: if a coordinate or the level is not an int.
        ValueError: if the level does not exist or the region leaves the level.

    Example:
        >>> import numpy as np
        >>> check_region(ArrayReader(np.zeros((4, 6, 3), np.uint8)), 0, 2, 0, 4, 4)
        (0, 2, 0, 4, 4)
    """
    level = _check_level(level, reader.level_count)
    vals = []
    for name, v in (("x", x), ("y", y), ("w", w), ("h", h)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"Expected `{name}` to be an int, but got {describe(v)}.")
        vals.append(int(v))
    x, y, w, h = vals
    if w < 1 or h < 1:
        raise ValueError(f"Expected region size `w`, `h` to be >= 1, but got w={w}, h={h}.")
    width, height = reader.dimensions(level)
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(
            f"Expected the region (x={x}, y={y}, w={w}, h={h}) to lie inside level {level} "
            f"of size (width={width}, height={height}), but it does not. "
            "Hint: regions are given in pixels of the requested level."
        )
    return level, x, y, w, h


def _check_mpp(mpp: Any) -> float | None:
    if mpp is None:
        return None
    if not isinstance(mpp, (int, float)) or isinstance(mpp, bool):
        raise TypeError(f"Expected `mpp` to be a number or None, but got {describe(mpp)}.")
    if not (mpp > 0 and np.isfinite(mpp)):
        raise ValueError(f"Expected `mpp` (microns per pixel) to be > 0, but got {mpp!r}.")
    return float(mpp)


class ArrayReader:
    """Region reader over in-memory or memory-mapped ``(H, W, 3)`` ``uint8`` arrays.

    Args:
        levels: one array or a sequence of arrays, level 0 first, each ``(H_l, W_l, 3)``
            ``uint8`` (``np.memmap`` works: only the requested region is touched).
        mpp: microns per pixel at level 0, or ``None``.
        downsamples: level-0 pixels per level pixel, one per level; by default the
            ratio of level-0 width to the level's width.

    Raises:
        TypeError: if a level is not a ``uint8`` NumPy array.
        ValueError: if a level is not ``(H, W, 3)``, levels grow, or ``downsamples``
            does not match.

    Example:
        >>> import numpy as np
        >>> img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
        >>> reader = ArrayReader([img, img[::2, ::2]], mpp=0.25)
        >>> reader.level_count, reader.dimensions(1), reader.downsample(1)
        (2, (3, 2), 2.0)
        >>> reader.read(0, 1, 2, 2, 1)[..., 0]
        array([[39, 42]], dtype=uint8)
    """

    def __init__(
        self,
        levels: np.ndarray | Sequence[np.ndarray],
        *,
        mpp: float | None = None,
        downsamples: Sequence[float] | None = None,
    ) -> None:
        arrays = [levels] if isinstance(levels, np.ndarray) else list(levels)
        if not arrays:
            raise ValueError("Expected `levels` to hold at least one array, but got none.")
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(
                    f"Expected `levels[{i}]` to be a numpy array, but got {describe(a)}."
                )
            if a.dtype != np.uint8:
                raise TypeError(
                    f"Expected `levels[{i}]` to have dtype uint8, but got {a.dtype}. "
                    "Hint: scale float images with `(img * 255).round().astype(np.uint8)`."
                )
            if a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(
                    f"Expected `levels[{i}]` to have shape (H, W, 3), but got {a.shape}."
                )
            if i and (a.shape[0] > arrays[i - 1].shape[0] or a.shape[1] > arrays[i - 1].shape[1]):
                raise ValueError(
                    f"Expected `levels` to shrink from level 0 on, but level {i} has shape "
                    f"{a.shape} after {arrays[i - 1].shape}."
                )
        self._levels = arrays
        self._mpp = _check_mpp(mpp)
        if downsamples is None:
            w0 = arrays[0].shape[1]
            self._downsamples = [w0 / a.shape[1] for a in arrays]
        else:
            ds = [float(d) for d in downsamples]
            if len(ds) != len(arrays) or any(not d > 0 for d in ds):
                raise ValueError(
                    f"Expected `downsamples` to hold {len(arrays)} positive numbers, "
                    f"but got {list(downsamples)!r}."
                )
            self._downsamples = ds

    @property
    def level_count(self) -> int:
        """Number of levels."""
        return len(self._levels)

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0 (``None`` when unknown)."""
        return self._mpp

    def dimensions(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a level."""
        level = _check_level(level, self.level_count)
        h, w = self._levels[level].shape[:2]
        return int(w), int(h)

    def downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level``."""
        return self._downsamples[_check_level(level, self.level_count)]

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a region as ``uint8`` ``(h, w, 3)`` (a view where possible).

        Raises:
            ValueError: if the level does not exist or the region leaves it.
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h)
        return np.asarray(self._levels[level][y : y + h, x : x + w])


def _resolution_mpp(page: Any) -> float | None:
    """Microns per pixel from a TIFF page's XResolution/ResolutionUnit tags."""
    try:
        num, den = page.tags["XResolution"].value
        unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    except (KeyError, TypeError, ValueError):
        return None
    if not num or not den:
        return None
    per_unit = num / den  # pixels per unit
    microns = {2: 25400.0, 3: 10000.0}.get(unit)  # inch, centimetre
    if microns is None or per_unit <= 1:
        return None
    return microns / per_unit


class TiffReader:
    """Region reader for tiled (pyramidal) or striped TIFF files, through tifffile.

    Only the TIFF tiles (or strips) that overlap the requested region are read
    and decoded, so a region costs ``O(region)`` no matter the size of the level.
    Pyramid levels are the ``levels`` of tifffile's first series (SubIFD pyramids,
    SVS, OME-TIFF, NDPI...); any compression tifffile can decode works (JPEG needs
    ``imagecodecs``). The file stays open until :meth:`close` (or the ``with``
    block ends); reads are serialised with a lock so threads may share a reader.

    Args:
        path: the TIFF file.
        series: which tifffile series holds the slide.
        mpp: microns per pixel at level 0; by default read from the
            ``XResolution``/``ResolutionUnit`` tags when present.

    Raises:
        ValueError: if the series does not hold ``(H, W, 3)`` ``uint8`` RGB levels
            with interleaved samples.

    Example:
        >>> import numpy as np, tifffile, tempfile, os
        >>> img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        >>> path = os.path.join(tempfile.mkdtemp(), "slide.tif")
        >>> tifffile.imwrite(path, img, tile=(32, 32), photometric="rgb")
        >>> with TiffReader(path, mpp=0.5) as reader:
        ...     region = reader.read(0, 40, 10, 50, 30)
        >>> bool((region == img[10:40, 40:90]).all())
        True
    """

    def __init__(
        self, path: str | os.PathLike[str], *, series: int = 0, mpp: float | None = None
    ) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(os.fspath(path))
        self._lock = threading.Lock()
        try:
            if not 0 <= series < len(self._tif.series):
                raise ValueError(
                    f"Expected `series` to be in [0, {len(self._tif.series) - 1}], "
                    f"but got {series}."
                )
            levels = self._tif.series[series].levels
            self._pages = [lvl.keyframe for lvl in levels]
            for i, page in enumerate(self._pages):
                if page.planarconfig != 1:
                    raise ValueError(
                        f"Expected TIFF level {i} to store RGB samples interleaved "
                        "(PlanarConfiguration 1), but they are stored as separate planes. "
                        "Hint: rewrite the file with tifffile.imwrite(..., planarconfig='contig')."
                    )
                shape = tuple(page.shape)
                if page.dtype != np.uint8 or len(shape) != 3 or shape[2] != 3:
                    raise ValueError(
                        f"Expected TIFF level {i} to be (H, W, 3) uint8 RGB, but got shape "
                        f"{shape} and dtype {page.dtype}."
                    )
            self._mpp = _check_mpp(mpp) if mpp is not None else _resolution_mpp(self._pages[0])
        except Exception:
            self._tif.close()
            raise

    def __enter__(self) -> TiffReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self._pages)

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0 (``None`` when unknown)."""
        return self._mpp

    def dimensions(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a level."""
        page = self._pages[_check_level(level, self.level_count)]
        return int(page.shape[1]), int(page.shape[0])

    def downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level``."""
        level = _check_level(level, self.level_count)
        return self._pages[0].shape[1] / self._pages[level].shape[1]

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a region as ``uint8`` ``(h, w, 3)``, decoding only the segments it touches.

        Raises:
            ValueError: if the level does not exist or the region leaves it.
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h)
        page = self._pages[level]
        height, width = int(page.shape[0]), int(page.shape[1])
        if page.is_tiled:
            seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
        else:
            seg_h, seg_w = int(min(page.rowsperstrip, height)), width
        per_row = -(-width // seg_w)
        out = np.empty((h, w, 3), np.uint8)
        fh = self._tif.filehandle
        for r in range(y // seg_h, (y + h - 1) // seg_h + 1):
            for c in range(x // seg_w, (x + w - 1) // seg_w + 1):
                index = r * per_row + c
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                with self._lock:
                    fh.seek(offset)
                    data = fh.read(count)
                decoded = page.decode(data, index, jpegtables=page.jpegtables)[0]
                if decoded is None:  # segment not written (sparse file): background
                    decoded = np.full((1, seg_h, seg_w, 3), 255, np.uint8)
                seg: np.ndarray = np.asarray(decoded).reshape(np.shape(decoded)[-3:])
                top, left = r * seg_h, c * seg_w
                y0, y1 = max(y, top), min(y + h, top + seg.shape[0])
                x0, x1 = max(x, left), min(x + w, left + seg.shape[1])
                out[y0 - y : y1 - y, x0 - x : x1 - x] = seg[
                    y0 - top : y1 - top, x0 - left : x1 - left
                ]
        return out


class OpenSlideReader:
    """Adapter for a user-supplied ``openslide.OpenSlide`` (or any look-alike) object.

    camseg does not depend on OpenSlide: open the slide yourself and wrap it.
    Duck typed on ``level_count``, ``level_dimensions``, ``level_downsamples``,
    ``properties`` and ``read_region(location, level, size)`` (level-0 location,
    RGBA PIL image out). Regions come back as RGB ``uint8`` ``(h, w, 3)``, with
    transparent pixels (outside the scanned area) composited onto white.

    Args:
        slide: the opened slide.
        mpp: microns per pixel at level 0; by default ``properties["openslide.mpp-x"]``.

    Raises:
        TypeError: if ``slide`` lacks the OpenSlide members.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> class FakeSlide:  # stands in for openslide.OpenSlide("slide.svs")
        ...     level_count = 1
        ...     level_dimensions = ((8, 4),)
        ...     level_downsamples = (1.0,)
        ...     properties = {"openslide.mpp-x": "0.25"}
        ...     def read_region(self, location, level, size):
        ...         return Image.new("RGBA", size, (200, 100, 50, 255))
        >>> reader = OpenSlideReader(FakeSlide())
        >>> reader.mpp, reader.read(0, 2, 1, 3, 2).shape, int(reader.read(0, 0, 0, 1, 1)[0, 0, 1])
        (0.25, (2, 3, 3), 100)
    """

    def __init__(self, slide: Any, *, mpp: float | None = None) -> None:
        needed = ("level_count", "level_dimensions", "level_downsamples", "read_region")
        missing = [m for m in needed if not hasattr(slide, m)]
        if missing:
            raise TypeError(
                "Expected `slide` to be an openslide.OpenSlide-like object, but it lacks "
                f"{', '.join(missing)}."
            )
        self._slide = slide
        if mpp is None:
            props = getattr(slide, "properties", {}) or {}
            raw = props.get("openslide.mpp-x")
            mpp = float(raw) if raw not in (None, "") else None
        self._mpp = _check_mpp(mpp)

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return int(self._slide.level_count)

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0 (``None`` when unknown)."""
        return self._mpp

    def dimensions(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a level."""
        w, h = self._slide.level_dimensions[_check_level(level, self.level_count)]
        return int(w), int(h)

    def downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of ``level``."""
        return float(self._slide.level_downsamples[_check_level(level, self.level_count)])

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a region as RGB ``uint8`` ``(h, w, 3)`` (alpha composited onto white).

        Raises:
            ValueError: if the level does not exist or the region leaves it.
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h)
        ds = self.downsample(level)
        rgba = np.asarray(self._slide.read_region((round(x * ds), round(y * ds)), level, (w, h)))
        if rgba.ndim != 3 or rgba.shape[:2] != (h, w) or rgba.shape[2] not in (3, 4):
            raise ValueError(
                f"Expected `slide.read_region` to return an image of size {(w, h)} with 3 or 4 "
                f"channels, but got an array of shape {rgba.shape}."
            )
        if rgba.shape[2] == 3:
            return rgba.astype(np.uint8, copy=False)
        alpha = rgba[..., 3:4].astype(np.uint16)
        rgb = (rgba[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
