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

Every adapter refuses a region of more than ``max_pixels`` pixels
(:data:`MAX_REGION_PIXELS` by default, 384 MiB of RGB) with an error that says
so, rather than trying to allocate gigabytes for one read.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from struct import error as struct_error  # tifffile raises it on garbage
from typing import Any, Protocol, runtime_checkable

import numpy as np

from camseg._checks import check_path, describe

__all__ = [
    "MAX_REGION_PIXELS",
    "ArrayReader",
    "OpenSlideReader",
    "RegionReader",
    "TiffReader",
    "check_reader",
    "check_region",
]

#: Default cap on the pixels of one region read: 2**27 (an 11585 x 11585 region,
#: 384 MiB as RGB ``uint8``). Readers take ``max_pixels=`` to change it.
MAX_REGION_PIXELS = 1 << 27


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


_READER_MEMBERS = ("level_count", "mpp", "dimensions", "downsample", "read")


def check_reader(reader: Any, *, name: str = "reader") -> RegionReader:
    """Raise ``TypeError`` unless ``reader`` has the :class:`RegionReader` members.

    :func:`~camseg.slide.sliding_window` and :func:`~camseg.slide.read_tiles` call it
    first, so a wrong object fails before any work with a message that says what is
    missing, not deep inside the tiling loop.

    Args:
        reader: the object to check.
        name: the argument's name in the message.

    Returns:
        ``reader``, unchanged.

    Raises:
        TypeError: naming the missing members (or the members that are not
            callable), with a hint to :func:`open_slide`.

    Example:
        >>> import numpy as np
        >>> _ = check_reader(ArrayReader(np.zeros((4, 4, 3), np.uint8)))
        >>> check_reader(5)
        Traceback (most recent call last):
        ...
        TypeError: Expected `reader` to be a RegionReader (with level_count, mpp, ...
    """
    missing = [m for m in _READER_MEMBERS if not hasattr(reader, m)]
    if missing:
        raise TypeError(
            f"Expected `{name}` to be a RegionReader (with {', '.join(_READER_MEMBERS)}), but "
            f"got {describe(reader)}, which lacks {', '.join(missing)}. Hint: "
            "camseg.slide.open_slide(path) opens a slide file; ArrayReader wraps an array."
        )
    not_callable = [
        m for m in ("dimensions", "downsample", "read") if not callable(getattr(reader, m))
    ]
    if not_callable:
        raise TypeError(
            f"Expected `{name}` to be a RegionReader, whose {', '.join(not_callable)} are "
            f"methods, but got {describe(reader)}, where they are not callable. Hint: "
            "camseg.slide.open_slide(path) opens a slide file; ArrayReader wraps an array."
        )
    return reader


def _check_level(level: Any, level_count: int) -> int:
    if not isinstance(level, (int, np.integer)) or isinstance(level, bool):
        raise TypeError(f"Expected `level` to be an int, but got {describe(level)}.")
    if not 0 <= int(level) < level_count:
        raise ValueError(
            f"Expected `level` to be in [0, {level_count - 1}] (the slide has {level_count} "
            f"level(s)), but got {int(level)}."
        )
    return int(level)


def _check_max_pixels(max_pixels: Any) -> int:
    if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool):
        raise TypeError(f"Expected `max_pixels` to be an int, but got {describe(max_pixels)}.")
    if max_pixels < 1:
        raise ValueError(f"Expected `max_pixels` to be an int >= 1, but got {max_pixels}.")
    return int(max_pixels)


def check_region(
    reader: RegionReader,
    level: int,
    x: int,
    y: int,
    w: int,
    h: int,
    *,
    max_pixels: int | None = None,
) -> tuple[int, int, int, int, int]:
    """Validate a region request against a reader's level sizes.

    Args:
        reader: the region reader.
        level: pyramid level.
        x: left column of the region, in pixels of ``level``.
        y: top row of the region, in pixels of ``level``.
        w: width of the region in pixels (``>= 1``).
        h: height of the region in pixels (``>= 1``).
        max_pixels: refuse regions of more than ``w * h`` pixels; ``None``: no cap.

    Returns:
        ``(level, x, y, w, h)`` as Python ints.

    Raises:
        TypeError: if ``reader`` is not a region reader, or a coordinate, the
            level or ``max_pixels`` is not an int.
        ValueError: if the level does not exist, the region leaves the level (the
            message names the coordinate or size to blame), ``max_pixels < 1``, or
            the region has more than ``max_pixels`` pixels.

    Example:
        >>> import numpy as np
        >>> check_region(ArrayReader(np.zeros((4, 6, 3), np.uint8)), 0, 2, 0, 4, 4)
        (0, 2, 0, 4, 4)
    """
    check_reader(reader)
    level = _check_level(level, reader.level_count)
    vals = []
    for name, v in (("x", x), ("y", y), ("w", w), ("h", h)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"Expected `{name}` to be an int, but got {describe(v)}.")
        vals.append(int(v))
    x, y, w, h = vals
    if w < 1 or h < 1:
        raise ValueError(f"Expected region size `w`, `h` to be >= 1, but got w={w}, h={h}.")
    if max_pixels is not None:
        max_pixels = _check_max_pixels(max_pixels)
    width, height = reader.dimensions(level)
    if x < 0 or y < 0 or x + w > width or y + h > height:
        # the argument to blame: a corner outside the level, else the size that overruns it
        if x < 0 or x >= width:
            bad = "`x`"
        elif y < 0 or y >= height:
            bad = "`y`"
        elif x + w > width:
            bad = "`w`"
        else:
            bad = "`h`"
        raise ValueError(
            f"Expected the region (x={x}, y={y}, w={w}, h={h}) to lie inside level {level} "
            f"of size (width={width}, height={height}), but {bad} takes it outside. "
            "Hint: regions are given in pixels of the requested level."
        )
    if max_pixels is not None and w * h > max_pixels:
        raise ValueError(
            f"Expected a region of at most `max_pixels`={max_pixels} pixels, but got "
            f"w={w}, h={h} ({w * h} pixels, {w * h * 3 / 2**30:.2f} GiB as RGB). Hint: read it "
            "in tiles, or from a coarser level; or open the reader with a larger `max_pixels`."
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
        max_pixels: the largest region :meth:`read` hands out.

    Raises:
        TypeError: if a level is not a ``uint8`` NumPy array.
        ValueError: if a level is not ``(H, W, 3)`` with at least one pixel, levels
            grow, or ``downsamples`` does not match.

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
        max_pixels: int = MAX_REGION_PIXELS,
    ) -> None:
        if isinstance(levels, np.ndarray):
            arrays = [levels]
        elif isinstance(levels, Sequence) and not isinstance(levels, (str, bytes)):
            arrays = list(levels)
        else:
            raise TypeError(
                "Expected `levels` to be a numpy array or a sequence of arrays, but got "
                f"{describe(levels)}."
            )
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
            if a.shape[0] == 0 or a.shape[1] == 0:
                raise ValueError(
                    f"Expected `levels[{i}]` to hold at least one pixel, but got shape {a.shape}."
                )
            if i and (a.shape[0] > arrays[i - 1].shape[0] or a.shape[1] > arrays[i - 1].shape[1]):
                raise ValueError(
                    f"Expected `levels` to shrink from level 0 on, but level {i} has shape "
                    f"{a.shape} after {arrays[i - 1].shape}."
                )
        self._levels = arrays
        self._mpp = _check_mpp(mpp)
        self.max_pixels = _check_max_pixels(max_pixels)
        if downsamples is None:
            w0 = arrays[0].shape[1]
            self._downsamples = [w0 / a.shape[1] for a in arrays]
        else:
            try:
                ds = [float(d) for d in downsamples]
            except (TypeError, ValueError):
                raise TypeError(
                    f"Expected `downsamples` to be a sequence of numbers, but got "
                    f"{describe(downsamples)}."
                ) from None
            if len(ds) != len(arrays) or any(not (d > 0 and np.isfinite(d)) for d in ds):
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
            ValueError: if the level does not exist, the region leaves it, or it has
                more than ``max_pixels`` pixels.
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h, max_pixels=self.max_pixels)
        return np.asarray(self._levels[level][y : y + h, x : x + w])


_UNIT_MICRONS = {2: 25400.0, 3: 10000.0}  # TIFF ResolutionUnit: inch, centimetre


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
    microns = _UNIT_MICRONS.get(unit)
    if microns is None or per_unit <= 1:
        return None
    return microns / per_unit


_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")
_OME_SIZE = re.compile(r'PhysicalSizeX="([0-9.eE+-]+)"')
_OME_UNIT = re.compile(r'PhysicalSizeXUnit="([^"]*)"')


def _description_mpp(description: str) -> float | None:
    """Microns per pixel from an Aperio (``|MPP = 0.25|``) or OME-XML description."""
    m = _SVS_MPP.search(description)
    if m is None and "PhysicalSizeX=" in description:
        m = _OME_SIZE.search(description)
        unit = _OME_UNIT.search(description)
        scale = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3}.get(
            unit.group(1) if unit else "µm"
        )
        if m is None or scale is None:
            return None
        try:
            value = float(m.group(1)) * scale
        except ValueError:
            return None
        return value if value > 0 and np.isfinite(value) else None
    if m is None:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    return value if value > 0 and np.isfinite(value) else None


def _file_mpp(tif: Any, page: Any) -> float | None:
    """Microns per pixel of a TIFF: resolution tags, else the image description."""
    mpp = _resolution_mpp(page)
    if mpp is not None:
        return mpp
    for p in (page, tif.pages[0]):
        desc = getattr(p, "description", "") or ""
        found = _description_mpp(desc)
        if found is not None:
            return found
    return None


class TiffReader:
    """Region reader for tiled (pyramidal) or striped TIFF files, through tifffile.

    Only the TIFF tiles (or strips) that overlap the requested region are read
    and decoded, so a region costs ``O(region)`` no matter the size of the level.
    Pyramid levels are the ``levels`` of tifffile's first series: SubIFD pyramids,
    pyramids chained in the main IFDs, SVS, OME-TIFF, NDPI. Any compression
    tifffile can decode works (JPEG needs ``imagecodecs``; :func:`open_slide`
    falls back to OpenSlide for such files). Greyscale levels are read as RGB
    (the value repeated), so heatmaps written by :func:`write_tiff_overlay` open
    too. Microns per pixel come from the ``XResolution``/``ResolutionUnit`` tags,
    else from an Aperio (``|MPP = 0.25|``) or OME-XML description.

    The file stays open until :meth:`close` (or the ``with`` block ends); reads
    are serialised with a lock so threads may share a reader. Errors name the
    file: a file that is not a TIFF, a tile past the end of a truncated file, or
    a tile that does not decode (corrupt data) raise :class:`OSError`.

    Args:
        path: the TIFF file.
        series: which tifffile series holds the slide.
        mpp: microns per pixel at level 0; by default read from the file.
        max_pixels: the largest region :meth:`read` hands out.

    Raises:
        TypeError: if ``path`` is not a str or os.PathLike.
        FileNotFoundError: if the file does not exist.
        OSError: if it is not a readable TIFF, or its first tile does not decode.
        ValueError: if the series does not hold ``(H, W, 3)`` or ``(H, W)``
            ``uint8`` levels with interleaved samples.

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
        self,
        path: str | os.PathLike[str],
        *,
        series: int = 0,
        mpp: float | None = None,
        max_pixels: int = MAX_REGION_PIXELS,
    ) -> None:
        import tifffile

        check_path(path)
        self.path = os.fspath(path)
        self.max_pixels = _check_max_pixels(max_pixels)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"No such slide file: {self.path!r}.")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (OSError, ValueError, KeyError, IndexError, struct_error) as err:
            raise OSError(f"Cannot open {self.path!r} as a TIFF file: {err}") from err
        self._lock = threading.Lock()
        try:
            n_series = len(self._tif.series)
            if not isinstance(series, int) or isinstance(series, bool):
                raise TypeError(f"Expected `series` to be an int, but got {describe(series)}.")
            if not 0 <= series < n_series:
                raise ValueError(
                    f"Expected `series` to be in [0, {n_series - 1}] for {self.path!r}, "
                    f"but got {series}."
                )
            levels = self._tif.series[series].levels
            self._pages = [lvl.keyframe for lvl in levels]
            self._grey: list[bool] = []
            for i, page in enumerate(self._pages):
                shape = tuple(page.shape)
                grey = len(shape) == 2
                if not grey and page.planarconfig != 1:
                    raise ValueError(
                        f"Expected TIFF level {i} of {self.path!r} to store RGB samples "
                        "interleaved (PlanarConfiguration 1), but they are stored as separate "
                        "planes. Hint: rewrite the file with "
                        "tifffile.imwrite(..., planarconfig='contig')."
                    )
                if page.dtype != np.uint8 or not (grey or (len(shape) == 3 and shape[2] == 3)):
                    raise ValueError(
                        f"Expected TIFF level {i} of {self.path!r} to be (H, W, 3) uint8 RGB "
                        f"or (H, W) uint8 grey, but got shape {shape} and dtype {page.dtype}."
                    )
                if shape[0] == 0 or shape[1] == 0:
                    raise ValueError(
                        f"Expected TIFF level {i} of {self.path!r} to hold pixels, but its "
                        f"shape is {shape}."
                    )
                self._grey.append(grey)
            self._mpp = _check_mpp(mpp) if mpp is not None else _file_mpp(self._tif, self._pages[0])
            self._probe()
        except BaseException:
            self._tif.close()
            raise

    def _probe(self) -> None:
        """Decode one segment of level 0, so a missing codec fails at open, not mid-slide."""
        page = self._pages[0]
        for index, count in enumerate(page.databytecounts):
            if count:
                self._segment(0, index)
                return

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
        return float(self._pages[0].shape[1] / self._pages[level].shape[1])

    def _segment_shape(self, page: Any) -> tuple[int, int]:
        height, width = int(page.shape[0]), int(page.shape[1])
        if page.is_tiled:
            return int(page.tilelength), int(page.tilewidth)
        return int(min(page.rowsperstrip, height)), width

    def _segment(self, level: int, index: int) -> np.ndarray:
        """Decoded segment ``index`` of ``level`` as ``(seg_h, seg_w, C)`` (C = 1 or 3)."""
        page = self._pages[level]
        seg_h, seg_w = self._segment_shape(page)
        channels = 1 if self._grey[level] else 3
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count == 0:  # segment not written (sparse file): background
            return np.full((seg_h, seg_w, channels), 255, np.uint8)
        with self._lock:
            fh = self._tif.filehandle
            fh.seek(offset)
            data = fh.read(count)
        if len(data) < count:
            raise OSError(
                f"Cannot read tile {index} of level {level} of {self.path!r}: it needs {count} "
                f"bytes at offset {offset}, but the file ends after {len(data)} of them (a "
                "truncated file?)."
            )
        try:
            decoded = page.decode(data, index, jpegtables=page.jpegtables)[0]
        except Exception as err:  # zlib.error, codec errors, missing imagecodecs...
            hint = ""
            if "imagecodecs" in str(err):
                hint = (
                    " Hint: `pip install imagecodecs`, or open the slide through OpenSlide "
                    "(`pip install camseg[slide]`, then camseg.slide.open_slide)."
                )
            raise OSError(
                f"Cannot decode tile {index} of level {level} of {self.path!r} "
                f"({type(err).__name__}: {err}); the file may be corrupt.{hint}"
            ) from err
        if decoded is None:
            return np.full((seg_h, seg_w, channels), 255, np.uint8)
        arr = np.asarray(decoded)
        try:
            return arr.reshape(arr.shape[-3], arr.shape[-2], channels)
        except (ValueError, IndexError) as err:
            raise OSError(
                f"Cannot decode tile {index} of level {level} of {self.path!r}: got shape "
                f"{arr.shape}; the file may be corrupt."
            ) from err

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Read a region as ``uint8`` ``(h, w, 3)``, decoding only the segments it touches.

        Raises:
            ValueError: if the level does not exist, the region leaves it, or it has
                more than ``max_pixels`` pixels.
            OSError: if a tile the region needs is truncated or corrupt.
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h, max_pixels=self.max_pixels)
        page = self._pages[level]
        width = int(page.shape[1])
        seg_h, seg_w = self._segment_shape(page)
        per_row = -(-width // seg_w)
        out = np.empty((h, w, 3), np.uint8)
        for r in range(y // seg_h, (y + h - 1) // seg_h + 1):
            for c in range(x // seg_w, (x + w - 1) // seg_w + 1):
                seg = self._segment(level, r * per_row + c)
                top, left = r * seg_h, c * seg_w
                y0, y1 = max(y, top), min(y + h, top + seg.shape[0])
                x0, x1 = max(x, left), min(x + w, left + seg.shape[1])
                out[y0 - y : y1 - y, x0 - x : x1 - x] = seg[
                    y0 - top : y1 - top, x0 - left : x1 - left
                ]
        return out


class OpenSlideReader:
    """Adapter for an ``openslide.OpenSlide`` (or any look-alike) object.

    :func:`open_slide` opens files through OpenSlide when it is installed
    (``pip install camseg[slide]``) and the format needs it; this class wraps an
    object you opened yourself. Duck typed on ``level_count``,
    ``level_dimensions``, ``level_downsamples``, ``properties`` and
    ``read_region(location, level, size)`` (level-0 location, RGBA PIL image
    out). Regions come back as RGB ``uint8`` ``(h, w, 3)``, with transparent
    pixels (outside the scanned area) composited onto white.

    Args:
        slide: the opened slide.
        mpp: microns per pixel at level 0; by default ``properties["openslide.mpp-x"]``.
        max_pixels: the largest region :meth:`read` hands out.
        path: the slide's file, named in error messages.

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

    def __init__(
        self,
        slide: Any,
        *,
        mpp: float | None = None,
        max_pixels: int = MAX_REGION_PIXELS,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        needed = ("level_count", "level_dimensions", "level_downsamples", "read_region")
        missing = [m for m in needed if not hasattr(slide, m)]
        if missing:
            raise TypeError(
                "Expected `slide` to be an openslide.OpenSlide-like object, but it lacks "
                f"{', '.join(missing)}."
            )
        self._slide = slide
        self.path = None if path is None else os.fspath(path)
        self.max_pixels = _check_max_pixels(max_pixels)
        if mpp is None:
            props = getattr(slide, "properties", {}) or {}
            raw = props.get("openslide.mpp-x")
            try:
                mpp = float(raw) if raw not in (None, "") else None
            except (TypeError, ValueError):
                mpp = None
            if mpp is not None and not (mpp > 0 and np.isfinite(mpp)):
                mpp = None  # a broken property is "unknown", not an error at open
        self._mpp = _check_mpp(mpp)

    def __enter__(self) -> OpenSlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the wrapped slide (if it has a ``close`` method)."""
        close = getattr(self._slide, "close", None)
        if callable(close):
            close()

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
            ValueError: if the level does not exist, the region leaves it, or it has
                more than ``max_pixels`` pixels.
            OSError: if OpenSlide fails to read the region (naming the file).
        """
        level, x, y, w, h = check_region(self, level, x, y, w, h, max_pixels=self.max_pixels)
        ds = self.downsample(level)
        try:
            image = self._slide.read_region((round(x * ds), round(y * ds)), level, (w, h))
        except Exception as err:
            if self.path is None:
                raise
            raise OSError(
                f"Cannot read region (x={x}, y={y}, w={w}, h={h}) of level {level} of "
                f"{self.path!r}: {type(err).__name__}: {err}"
            ) from err
        rgba = np.asarray(image)
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
