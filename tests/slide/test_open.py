"""open_slide on real files written here with tifffile: pyramids, SVS, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import camseg.slide._open as open_mod
from camseg.slide import (
    OpenSlideReader,
    RegionReader,
    TiffReader,
    open_slide,
    openslide_available,
)

needs_openslide = pytest.mark.skipif(not openslide_available(), reason="OpenSlide not installed")


@pytest.fixture
def levels() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    return [img, np.ascontiguousarray(img[::2, ::2]), np.ascontiguousarray(img[::4, ::4])]


def _chain(path, levels, mpp=0.5) -> None:
    """Generic pyramidal TIFF: levels in the main IFD chain (what OpenSlide reads)."""
    with tifffile.TiffWriter(path) as tw:
        for i, lvl in enumerate(levels):
            per_cm = 1e4 / (mpp * 2**i)
            tw.write(
                lvl,
                tile=(64, 64),
                photometric="rgb",
                compression="zlib",
                subfiletype=1 if i else 0,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                metadata=None,
            )


def _subifd(path, levels, mpp=0.25) -> None:
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            levels[0],
            tile=(64, 64),
            photometric="rgb",
            subifds=len(levels) - 1,
            resolution=(1e4 / mpp, 1e4 / mpp),
            resolutionunit="CENTIMETER",
            metadata=None,
        )
        for lvl in levels[1:]:
            tw.write(lvl, tile=(64, 64), photometric="rgb", subfiletype=1, metadata=None)


def _svs(path, levels, mpp=0.499) -> None:
    """Aperio layout: tiled level 0 (description 'Aperio Image Library ... |MPP = ...'),
    a striped thumbnail, then the tiled reduced levels."""
    h, w = levels[0].shape[:2]
    head = f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (64x64) RGB"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            levels[0],
            tile=(64, 64),
            photometric="rgb",
            compression="zlib",
            description=f"{head}|AppMag = 20|MPP = {mpp}",
            metadata=None,
        )
        thumb = np.ascontiguousarray(levels[0][::8, ::8])
        tw.write(thumb, photometric="rgb", description=head + " -> thumbnail", metadata=None)
        for lvl in levels[1:]:
            tw.write(
                lvl,
                tile=(64, 64),
                photometric="rgb",
                compression="zlib",
                description=head + f" -> {lvl.shape[1]}x{lvl.shape[0]}",
                metadata=None,
            )


def _check_pyramid(reader: RegionReader, levels: list[np.ndarray]) -> None:
    assert isinstance(reader, RegionReader)
    assert reader.level_count == len(levels)
    for k, lvl in enumerate(levels):
        assert reader.dimensions(k) == (lvl.shape[1], lvl.shape[0])
        assert reader.downsample(k) == pytest.approx(levels[0].shape[1] / lvl.shape[1], rel=1e-3)
    for k, (x, y, w, h) in [(0, (0, 0, 500, 300)), (0, (63, 63, 70, 3)), (1, (10, 20, 200, 100))]:
        np.testing.assert_array_equal(reader.read(k, x, y, w, h), levels[k][y : y + h, x : x + w])
    np.testing.assert_array_equal(reader.read(2, 0, 0, 125, 75), levels[2])
    with pytest.raises(ValueError, match="inside level 1"):
        reader.read(1, 200, 100, 51, 51)
    with pytest.raises(ValueError, match=r"`level` to be in \[0, 2\]"):
        reader.read(3, 0, 0, 1, 1)


def test_main_ifd_pyramid_opens_through_tifffile(tmp_path, levels) -> None:
    path = tmp_path / "chain.tif"
    _chain(path, levels)
    with open_slide(path) as reader:
        assert isinstance(reader, TiffReader)
        assert reader.mpp == pytest.approx(0.5)
        _check_pyramid(reader, levels)


@needs_openslide
def test_main_ifd_pyramid_same_through_openslide(tmp_path, levels) -> None:
    path = tmp_path / "chain.tif"
    _chain(path, levels)
    with open_slide(path, backend="openslide") as reader:
        assert isinstance(reader, OpenSlideReader)
        assert reader.mpp == pytest.approx(0.5)
        _check_pyramid(reader, levels)


def test_subifd_pyramid_has_all_levels(tmp_path, levels) -> None:
    path = tmp_path / "sub.tif"
    _subifd(path, levels)
    with open_slide(path) as reader:  # OpenSlide would see one level here
        assert isinstance(reader, TiffReader)
        assert reader.mpp == pytest.approx(0.25)
        _check_pyramid(reader, levels)


@needs_openslide
def test_svs_opens_through_openslide(tmp_path, levels) -> None:
    path = tmp_path / "node.svs"
    _svs(path, levels)
    with open_slide(path) as reader:
        assert isinstance(reader, OpenSlideReader)
        assert reader.mpp == pytest.approx(0.499)
        _check_pyramid(reader, levels)


def test_svs_without_openslide_opens_through_tifffile(tmp_path, levels, monkeypatch) -> None:
    path = tmp_path / "node.svs"
    _svs(path, levels)
    monkeypatch.setattr(open_mod, "_import_openslide", lambda: None)
    with open_slide(path) as reader:
        assert isinstance(reader, TiffReader)
        assert reader.mpp == pytest.approx(0.499)
        _check_pyramid(reader, levels)
    with pytest.raises(ImportError, match=r"node\.svs.*pip install 'camseg\[slide\]'"):
        open_slide(path, backend="openslide")


def test_mrxs_without_openslide_says_what_to_install(tmp_path, monkeypatch) -> None:
    path = tmp_path / "slide.mrxs"
    path.write_bytes(b"[GENERAL]\n")
    monkeypatch.setattr(open_mod, "_import_openslide", lambda: None)
    with pytest.raises(ImportError, match=r"slide\.mrxs.*\.mrxs files need it"):
        open_slide(path)


def test_open_slide_errors_name_the_file(tmp_path, levels) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.svs"):
        open_slide(tmp_path / "missing.svs")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(OSError, match=r"junk\.tif"):
        open_slide(junk)
    with pytest.raises(OSError, match=r"junk\.tif"):
        open_slide(junk, backend="tifffile")
    with pytest.raises(ValueError, match="`backend`"):
        open_slide(junk, backend="pil")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`path`"):
        open_slide(5)  # type: ignore[arg-type]
    with pytest.raises(IsADirectoryError, match="is a folder"):
        open_slide(tmp_path)


def test_corrupt_pyramid_tile_names_the_file(tmp_path, levels) -> None:
    path = tmp_path / "chain.tif"
    _chain(path, levels)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]  # level 1
        offset, count = int(page.dataoffsets[3]), int(page.databytecounts[3])
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    with open_slide(path) as reader:
        reader.read(0, 0, 0, 500, 300)  # level 0 intact
        with pytest.raises(OSError, match=r"tile 3 of level 1 of '.*chain\.tif'"):
            reader.read(1, 192, 0, 10, 10)
    if openslide_available():
        with (
            open_slide(path, backend="openslide") as reader,
            pytest.raises(OSError, match=r"chain\.tif"),
        ):
            reader.read(1, 192, 0, 10, 10)


def test_mpp_override_and_cap(tmp_path, levels) -> None:
    path = tmp_path / "chain.tif"
    _chain(path, levels)
    with open_slide(path, mpp=0.3, max_pixels=1000) as reader:
        assert reader.mpp == 0.3
        with pytest.raises(ValueError, match="`max_pixels`=1000"):
            reader.read(0, 0, 0, 100, 100)
