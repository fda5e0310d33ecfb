"""Open a slide file as a :class:`~camseg.slide.RegionReader`: OpenSlide or tifffile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from camseg._checks import check_one_of, describe
from camseg.slide._readers import MAX_REGION_PIXELS, OpenSlideReader, TiffReader

__all__ = ["open_slide", "openslide_available"]

Backend = Literal["auto", "openslide", "tifffile"]

#: File extensions only OpenSlide reads (not TIFF inside).
OPENSLIDE_ONLY = (".mrxs", ".vms", ".vmu", ".scn", ".svslide", ".bif", ".dcm")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _import_openslide() -> Any | None:
    try:
        import openslide
    except (ImportError, OSError):  # not installed, or its shared library is missing
        return None
    return openslide


def openslide_available() -> bool:
    """Whether OpenSlide (``openslide-python`` with its library) can be imported.

    Returns:
        ``True`` when ``import openslide`` works.

    Example:
        >>> isinstance(openslide_available(), bool)
        True
    """
    return _import_openslide() is not None


def _is_tiff(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def _open_openslide(openslide: Any, path: str, mpp: float | None, max_pixels: int) -> Any:
    try:
        slide = openslide.OpenSlide(path)
    except Exception as err:  # OpenSlideUnsupportedFormatError, OpenSlideError
        raise OSError(f"Cannot open {path!r} with OpenSlide: {type(err).__name__}: {err}") from err
    try:
        return OpenSlideReader(slide, mpp=mpp, max_pixels=max_pixels, path=path)
    except BaseException:
        slide.close()
        raise


def open_slide(
    path: str | os.PathLike[str],
    *,
    backend: Backend = "auto",
    mpp: float | None = None,
    max_pixels: int = MAX_REGION_PIXELS,
) -> TiffReader | OpenSlideReader:
    """Open a whole-slide image file as a :class:`~camseg.slide.RegionReader`.

    With ``backend="auto"`` the file's content decides:

    - a vendor format OpenSlide recognises (Aperio ``.svs``, Hamamatsu ``.ndpi``,
      MIRAX ``.mrxs``, Leica, Philips, Ventana, ...) opens through OpenSlide when it is
      installed (``pip install camseg[slide]`` brings ``openslide-python`` and the
      ``openslide-bin`` library, no system package needed);
    - any other TIFF (tiled or striped, pyramids in the main IFD chain or in
      SubIFDs, OME-TIFF) opens through tifffile (:class:`TiffReader`), which also
      sees SubIFD pyramids that OpenSlide reads as one level; a TIFF whose tiles
      tifffile cannot decode (JPEG without ``imagecodecs``) falls back to
      OpenSlide when it can read the file;
    - without OpenSlide, TIFF-based vendor files (``.svs``, ``.ndpi``) open through
      tifffile, and the others raise an error that says what to install.

    Microns per pixel come from the file (OpenSlide's ``openslide.mpp-x``; for
    tifffile the resolution tags, or the Aperio/OME description) unless ``mpp``
    is given. Close the reader (or use it in a ``with`` block) to release the file.

    Args:
        path: the slide file.
        backend: ``"auto"``, ``"openslide"`` or ``"tifffile"``.
        mpp: microns per pixel at level 0, overriding the file's metadata.
        max_pixels: the largest region one ``read`` hands out.

    Returns:
        A :class:`TiffReader` or :class:`OpenSlideReader`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ImportError: if ``backend="openslide"`` (or the format needs OpenSlide) and
            it is not installed.
        OSError: if the file cannot be opened as a slide (the message names it).
        ValueError: if ``backend`` is unknown or the file's levels are not 8-bit
            RGB or grey.

    Example:
        >>> import numpy as np, tifffile, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "slide.tif")
        >>> img = np.zeros((64, 96, 3), np.uint8)
        >>> tifffile.imwrite(path, img, tile=(32, 32), photometric="rgb",
        ...                  resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
        >>> with open_slide(path) as reader:
        ...     reader.dimensions(0), reader.mpp
        ((96, 64), 0.5)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected `path` to be a str or os.PathLike, but got {describe(path)}.")
    check_one_of(backend, "backend", ("auto", "openslide", "tifffile"))
    p = os.fspath(path)
    if os.path.isdir(p) and not p.lower().endswith(OPENSLIDE_ONLY):
        raise IsADirectoryError(f"Expected `path` to be a slide file, but {p!r} is a folder.")
    if not os.path.exists(p):
        raise FileNotFoundError(f"No such slide file: {p!r}.")
    if backend == "tifffile":
        return TiffReader(p, mpp=mpp, max_pixels=max_pixels)
    openslide = _import_openslide()
    if backend == "openslide":
        if openslide is None:
            raise ImportError(
                f"Expected OpenSlide to open {p!r} (`backend='openslide'`), but it is not "
                "installed. Hint: pip install 'camseg[slide]' (openslide-python, openslide-bin)."
            )
        return _open_openslide(openslide, p, mpp, max_pixels)
    # auto
    vendor = None
    if openslide is not None:
        try:
            vendor = openslide.OpenSlide.detect_format(p)
        except Exception:  # unreadable file: let the readers below name the problem
            vendor = None
    if vendor is not None and vendor != "generic-tiff":
        return _open_openslide(openslide, p, mpp, max_pixels)
    if os.path.isfile(p) and _is_tiff(p):
        try:
            return TiffReader(p, mpp=mpp, max_pixels=max_pixels)
        except OSError as err:
            if vendor is None or "Cannot decode" not in str(err):
                raise
            return _open_openslide(openslide, p, mpp, max_pixels)  # e.g. JPEG tiles
    suffix = Path(p).suffix.lower()
    if suffix in OPENSLIDE_ONLY and openslide is None:
        raise ImportError(
            f"Expected OpenSlide to open {p!r} ({suffix} files need it), but it is not "
            "installed. Hint: pip install 'camseg[slide]' (openslide-python, openslide-bin)."
        )
    raise OSError(
        f"Cannot open {p!r} as a slide: it is not a TIFF file"
        + (" and OpenSlide does not recognise it." if openslide is not None else ".")
        + " Hint: camseg reads TIFF-based slides with tifffile and the formats of OpenSlide "
        "(https://openslide.org/formats/) with `pip install 'camseg[slide]'`."
    )
