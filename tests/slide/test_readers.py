from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from camseg.slide import (
    MAX_REGION_PIXELS,
    ArrayReader,
    OpenSlideReader,
    RegionReader,
    TiffReader,
    check_reader,
    check_region,
)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (150, 230, 3), dtype=np.uint8)


def _pyramid(img: np.ndarray) -> list[np.ndarray]:
    return [img, np.ascontiguousarray(img[::2, ::2]), np.ascontiguousarray(img[::4, ::4])]


# ----------------------------------------------------------------------------- ArrayReader


def test_array_reader_regions_and_levels(image: np.ndarray) -> None:
    levels = _pyramid(image)
    reader = ArrayReader(levels, mpp=0.25)
    assert isinstance(reader, RegionReader)
    assert reader.level_count == 3
    assert reader.dimensions(0) == (230, 150)
    assert reader.dimensions(2) == (58, 38)
    assert reader.downsample(1) == pytest.approx(230 / 115)
    assert reader.mpp == 0.25
    np.testing.assert_array_equal(reader.read(0, 17, 5, 40, 21), image[5:26, 17:57])
    np.testing.assert_array_equal(reader.read(1, 0, 0, 115, 75), levels[1])


def test_array_reader_memmap(image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "slide.npy"
    np.save(path, image)
    mm = np.load(path, mmap_mode="r")
    reader = ArrayReader(mm)
    np.testing.assert_array_equal(reader.read(0, 100, 100, 30, 50), image[100:150, 100:130])


def test_array_reader_explicit_downsamples(image: np.ndarray) -> None:
    reader = ArrayReader(_pyramid(image), downsamples=[1, 2, 4])
    assert reader.downsample(2) == 4.0


@pytest.mark.parametrize(
    ("levels", "kwargs", "error", "match"),
    [
        ([], {}, ValueError, "at least one array"),
        ([np.zeros((4, 4, 3), np.float32)], {}, TypeError, "dtype uint8"),
        ([np.zeros((4, 4), np.uint8)], {}, ValueError, r"shape \(H, W, 3\)"),
        ([[1, 2, 3]], {}, TypeError, "numpy array"),
        (
            [np.zeros((4, 4, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)],
            {},
            ValueError,
            "shrink",
        ),
        ([np.zeros((4, 4, 3), np.uint8)], {"mpp": -1.0}, ValueError, "microns per pixel"),
        ([np.zeros((4, 4, 3), np.uint8)], {"mpp": "0.5"}, TypeError, "`mpp`"),
        ([np.zeros((4, 4, 3), np.uint8)], {"downsamples": [1, 2]}, ValueError, "downsamples"),
    ],
)
def test_array_reader_bad_input(levels, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        ArrayReader(levels, **kwargs)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((3, 0, 0, 4, 4), ValueError, r"`level` to be in \[0, 2\]"),
        ((-1, 0, 0, 4, 4), ValueError, "`level`"),
        (("0", 0, 0, 4, 4), TypeError, "`level` to be an int"),
        ((0, 228, 0, 4, 4), ValueError, "inside level 0"),
        ((0, -1, 0, 4, 4), ValueError, "inside level 0"),
        ((2, 0, 36, 4, 4), ValueError, r"inside level 2 of size \(width=58, height=38\)"),
        ((0, 0, 0, 0, 4), ValueError, ">= 1"),
        ((0, 1.5, 0, 4, 4), TypeError, "`x` to be an int"),
    ],
)
def test_unreadable_regions(image: np.ndarray, args, error, match) -> None:
    reader = ArrayReader(_pyramid(image))
    with pytest.raises(error, match=match):
        reader.read(*args)
    with pytest.raises(error, match=match):
        check_region(reader, *args)


# ----------------------------------------------------------------------------- TiffReader


def _write_pyramid(path, img: np.ndarray, **kw) -> None:
    levels = _pyramid(img)
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            levels[0],
            subifds=len(levels) - 1,
            resolution=(1e4 / 0.5, 1e4 / 0.5),
            resolutionunit="CENTIMETER",
            photometric="rgb",
            **kw,
        )
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, photometric="rgb", **kw)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_reader_tiled_pyramid(image: np.ndarray, tmp_path, compression) -> None:
    path = tmp_path / "pyr.tif"
    _write_pyramid(path, image, tile=(32, 48), compression=compression)
    levels = _pyramid(image)
    with TiffReader(path) as reader:
        assert isinstance(reader, RegionReader)
        assert reader.level_count == 3
        assert reader.mpp == pytest.approx(0.5)
        assert reader.dimensions(1) == (115, 75)
        assert reader.downsample(2) == pytest.approx(230 / 58)
        # regions that start, end and straddle tile borders, and whole levels
        for level, (x, y, w, h) in [
            (0, (0, 0, 1, 1)),
            (0, (47, 31, 2, 2)),
            (0, (13, 20, 200, 117)),
            (0, (0, 0, 230, 150)),
            (1, (100, 60, 15, 15)),
            (2, (0, 0, 58, 38)),
        ]:
            np.testing.assert_array_equal(
                reader.read(level, x, y, w, h), levels[level][y : y + h, x : x + w]
            )
        with pytest.raises(ValueError, match="inside level 1"):
            reader.read(1, 100, 60, 16, 16)


def test_tiff_reader_reads_only_needed_tiles(image: np.ndarray, tmp_path, monkeypatch) -> None:
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, image, tile=(32, 32), photometric="rgb")
    with TiffReader(path) as reader:
        page = reader._pages[0]
        calls: list[int] = []
        original = page.decode

        def counting(data, index, **kw):
            calls.append(index)
            return original(data, index, **kw)

        monkeypatch.setattr(page, "decode", counting)
        reader.read(0, 40, 40, 20, 20)  # inside tile (row 1, col 1) only
        assert calls == [1 * 8 + 1]


def test_tiff_reader_strips(image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, image, rowsperstrip=16, compression="zlib", photometric="rgb")
    with TiffReader(path, mpp=0.25) as reader:
        assert reader.mpp == 0.25 and reader.level_count == 1
        np.testing.assert_array_equal(reader.read(0, 5, 10, 100, 130), image[10:140, 5:105])


def test_tiff_reader_grey_reads_as_rgb(tmp_path) -> None:
    grey = tmp_path / "grey.tif"
    img = np.arange(32 * 48, dtype=np.uint16).reshape(32, 48).astype(np.uint8)
    tifffile.imwrite(grey, img, tile=(16, 16))
    with TiffReader(grey) as reader:
        region = reader.read(0, 5, 3, 30, 20)
    np.testing.assert_array_equal(region, np.repeat(img[3:23, 5:35, None], 3, axis=2))


def test_tiff_reader_bad_files(tmp_path) -> None:
    grey16 = tmp_path / "grey16.tif"
    tifffile.imwrite(grey16, np.zeros((32, 32), np.uint16))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        TiffReader(grey16)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(
        planar, np.zeros((3, 32, 32), np.uint8), photometric="rgb", planarconfig="separate"
    )
    with pytest.raises(ValueError, match="interleaved"):
        TiffReader(planar)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match="`series`"):
        TiffReader(rgb, series=3)


# ----------------------------------------------------------------------------- OpenSlideReader


class FakeOpenSlide:
    """Mimics openslide.OpenSlide: level-0 coordinates, RGBA PIL images."""

    def __init__(self, img: np.ndarray) -> None:
        self.levels = _pyramid(img)
        self.level_count = len(self.levels)
        self.level_dimensions = tuple((a.shape[1], a.shape[0]) for a in self.levels)
        self.level_downsamples = (1.0, 2.0, 4.0)
        self.properties = {"openslide.mpp-x": "0.243"}

    def read_region(self, location, level, size):
        ds = self.level_downsamples[level]
        x, y = int(location[0] / ds), int(location[1] / ds)
        w, h = size
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., :3] = self.levels[level][y : y + h, x : x + w]
        rgba[..., 3] = 255
        rgba[0, 0, 3] = 0  # one transparent pixel: outside the scanned area
        return Image.fromarray(rgba, "RGBA")


def test_openslide_reader(image: np.ndarray) -> None:
    reader = OpenSlideReader(FakeOpenSlide(image))
    assert isinstance(reader, RegionReader)
    assert reader.mpp == pytest.approx(0.243)
    assert reader.dimensions(2) == (58, 38)
    region = reader.read(1, 10, 20, 30, 40)
    expected = _pyramid(image)[1][20:60, 10:40].copy()
    expected[0, 0] = 255  # transparent -> white
    np.testing.assert_array_equal(region, expected)
    with pytest.raises(ValueError, match="inside level 1"):
        reader.read(1, 100, 0, 30, 5)


def test_openslide_reader_bad_object() -> None:
    with pytest.raises(TypeError, match="lacks read_region"):
        OpenSlideReader(
            type("X", (), {"level_count": 1, "level_dimensions": (), "level_downsamples": ()})()
        )


# ----------------------------------------------------------------------------- caps and bad input


def test_array_reader_empty_level() -> None:
    with pytest.raises(ValueError, match=r"`levels\[0\]` to hold at least one pixel"):
        ArrayReader(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        ArrayReader([np.zeros((4, 4, 3), np.uint8), np.zeros((0, 2, 3), np.uint8)])
    with pytest.raises(TypeError, match="`levels` to be a numpy array or a sequence"):
        ArrayReader(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [5, None, "slide.svs", object()])
def test_not_a_reader_is_a_type_error(bad) -> None:
    with pytest.raises(TypeError, match="Expected `reader` to be a RegionReader"):
        check_reader(bad)
    with pytest.raises(TypeError, match="Expected `reader` to be a RegionReader.*open_slide"):
        check_region(bad, 0, 0, 0, 1, 1)


def test_region_cap(tmp_path) -> None:
    # a 40000 x 40000 read is refused before anything is allocated
    big = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (40000, 40000, 3), (0, 0, 1))
    reader = ArrayReader(big)
    assert reader.max_pixels == MAX_REGION_PIXELS
    with pytest.raises(ValueError, match=r"at most `max_pixels`=134217728 pixels.*4\.47 GiB"):
        reader.read(0, 0, 0, 40000, 40000)
    assert reader.read(0, 0, 0, 100, 100).shape == (100, 100, 3)
    small = ArrayReader(np.zeros((64, 64, 3), np.uint8), max_pixels=100)
    with pytest.raises(ValueError, match="`max_pixels`=100"):
        small.read(0, 0, 0, 11, 10)
    assert small.read(0, 0, 0, 10, 10).shape == (10, 10, 3)
    with pytest.raises(ValueError, match="`max_pixels` to be an int >= 1"):
        ArrayReader(np.zeros((4, 4, 3), np.uint8), max_pixels=0)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), tile=(16, 16), photometric="rgb")
    with TiffReader(path, max_pixels=256) as tr, pytest.raises(ValueError, match="max_pixels"):
        tr.read(0, 0, 0, 17, 16)


def _tile_span(path, index: int) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return int(page.dataoffsets[index]), int(page.databytecounts[index])


def test_tiff_reader_corrupt_tile_names_the_file(image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "corrupt.tif"
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib", photometric="rgb")
    offset, count = _tile_span(path, 9)
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\x00" * count
    path.write_bytes(bytes(data))
    with TiffReader(path) as reader:
        np.testing.assert_array_equal(reader.read(0, 0, 0, 32, 32), image[:32, :32])
        with pytest.raises(OSError, match=r"Cannot decode tile 9 of level 0 of '.*corrupt\.tif'"):
            reader.read(0, 32, 32, 8, 8)  # tile (row 1, col 1) of an 8-tile-wide grid


def test_tiff_reader_truncated_file_names_the_file(image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "full.tif"
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib", photometric="rgb")
    offset, _ = _tile_span(path, 20)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[: offset + 5])
    with TiffReader(cut) as reader:
        np.testing.assert_array_equal(reader.read(0, 0, 0, 16, 16), image[:16, :16])
        with pytest.raises(OSError, match=r"tile 2\d of level 0 of '.*cut\.tif'.*truncated"):
            reader.read(0, 0, 0, 230, 150)


def test_tiff_reader_missing_and_garbage_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"No such slide file: '.*nope\.tif'"):
        TiffReader(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"definitely not a tiff" * 10)
    with pytest.raises(OSError, match=r"Cannot open '.*junk\.tif' as a TIFF file"):
        TiffReader(junk)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(OSError, match="empty.tif"):
        TiffReader(empty)


def test_tiff_reader_mpp_from_aperio_description(image: np.ndarray, tmp_path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(
        path,
        image,
        tile=(32, 32),
        photometric="rgb",
        description="Aperio Image Library v12.0.15 \r\n230x150 |AppMag = 20|MPP = 0.4990",
        metadata=None,
    )
    with TiffReader(path) as reader:
        assert reader.mpp == pytest.approx(0.499)


class _ClosingSlide(FakeOpenSlide):
    closed = False

    def close(self) -> None:
        self.closed = True


class _BrokenSlide(FakeOpenSlide):
    def read_region(self, location, level, size):
        raise RuntimeError("tile decode failed")


def test_openslide_reader_close_and_errors(image: np.ndarray) -> None:
    slide = _ClosingSlide(image)
    with OpenSlideReader(slide) as reader:
        assert reader.read(0, 0, 0, 2, 2).shape == (2, 2, 3)
    assert slide.closed
    broken = OpenSlideReader(_BrokenSlide(image), path="node.svs")
    with pytest.raises(OSError, match=r"of 'node\.svs': RuntimeError: tile decode failed"):
        broken.read(0, 0, 0, 4, 4)
    with pytest.raises(ValueError, match="max_pixels"):
        OpenSlideReader(FakeOpenSlide(image), max_pixels=10).read(0, 0, 0, 4, 4)
    bad_mpp = FakeOpenSlide(image)
    bad_mpp.properties = {"openslide.mpp-x": "n/a"}
    assert OpenSlideReader(bad_mpp).mpp is None
