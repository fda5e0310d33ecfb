"""Bounded memory on any slide: lazy grids, banded tissue masks, banded stitching to disk."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import camseg.slide._sliding as sliding_mod
import camseg.slide._tissue as tissue_mod
from camseg.postprocess import tissue_mask
from camseg.slide import (
    ArrayReader,
    blend_window,
    check_reader,
    open_slide,
    openslide_available,
    read_tiles,
    shard_indices,
    slide_tissue_mask,
    sliding_window,
    tile_grid,
    write_tiff_overlay,
)


def _slide(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def identity(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tiles.mean(dim=(1, 2, 3)), tiles[:, 0]


class LazyReader:
    """A huge one-level slide made up on the fly: grey glass, one pink square of tissue."""

    def __init__(self, width: int, height: int, tissue: tuple[int, int, int, int]) -> None:
        self.size = (width, height)
        self.tissue = tissue  # x, y, w, h in level-0 pixels
        self.reads = 0
        self.read_threads: set[str] = set()

    level_count = 1
    mpp = 0.5

    def dimensions(self, level: int) -> tuple[int, int]:
        return self.size

    def downsample(self, level: int) -> float:
        return 1.0

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        self.reads += 1
        self.read_threads.add(threading.current_thread().name)
        out = np.full((h, w, 3), 240, np.uint8)
        tx, ty, tw, th = self.tissue
        x0, x1 = max(x, tx), min(x + w, tx + tw)
        y0, y1 = max(y, ty), min(y + h, ty + th)
        if x0 < x1 and y0 < y1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = (170, 60, 150)
        return out


def _reference_fractions(mask: torch.Tensor, coords: torch.Tensor, tile: int, size) -> torch.Tensor:
    """Tissue fraction of each tile footprint, with a whole-mask integral image."""
    width, height = size
    mh, mw = mask.shape
    integral = F.pad(mask.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    x0 = (coords[:, 0].double() * mw / width).floor().long().clamp(0, mw - 1)
    y0 = (coords[:, 1].double() * mh / height).floor().long().clamp(0, mh - 1)
    x1 = torch.minimum(
        torch.maximum(((coords[:, 0] + tile).double() * mw / width).ceil().long(), x0 + 1),
        torch.tensor(mw),
    )
    y1 = torch.minimum(
        torch.maximum(((coords[:, 1] + tile).double() * mh / height).ceil().long(), y0 + 1),
        torch.tensor(mh),
    )
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (total / ((y1 - y0) * (x1 - x0)).double()).float()


def _naive(img: np.ndarray, tile: int, coords: torch.Tensor, blend: str = "gaussian"):
    """Whole-canvas stitch of the identity model, tile by tile."""
    h, w = img.shape[:2]
    window = blend_window(tile, blend=blend)
    acc = torch.zeros(2, h, w)
    wsum = torch.zeros(h, w)
    tiles = read_tiles(ArrayReader(img), 0, coords, tile).float() / 255
    for (x, y), t in zip(coords.tolist(), tiles, strict=True):
        hh, ww = min(tile, h - y), min(tile, w - x)
        acc[0, y : y + hh, x : x + ww] += (window * t.mean())[:hh, :ww]
        acc[1, y : y + hh, x : x + ww] += (window * t[0])[:hh, :ww]
        wsum[y : y + hh, x : x + ww] += window[:hh, :ww]
    out = torch.where(wsum > 0, acc / wsum.clamp_min(1e-30), 0.0)
    return out[0], out[1], wsum


# ----------------------------------------------------------------------------- lazy grid


@pytest.mark.parametrize("edge", ["shift", "pad"])
@pytest.mark.parametrize(("tile", "stride"), [(8, 4), (8, 3), (8, 8), (6, 5)])
def test_lazy_grid_runs_the_tiles_of_tile_grid(edge, tile, stride) -> None:
    img = _slide(37, 29)
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=tile,
        stride=stride,
        edge=edge,
        gate=False,
        progress=False,
        batch_size=5,
    )
    expected = tile_grid((29, 37), tile=tile, stride=stride, edge=edge)
    assert torch.equal(out.coords, expected)


def test_tissue_mask_selection_matches_the_whole_grid_rule() -> None:
    g = torch.Generator().manual_seed(3)
    img = _slide(60, 84)
    mask = torch.rand(15, 21, generator=g) > 0.6
    for min_tissue in (0.0, 0.3, 0.5, 1.0):
        out = sliding_window(
            ArrayReader(img),
            identity,
            tile=12,
            stride=6,
            tissue=mask,
            min_tissue=min_tissue,
            progress=False,
        )
        grid = tile_grid((84, 60), tile=12, stride=6)
        keep = _reference_fractions(mask, grid, 12, (84, 60)) >= min_tissue
        assert torch.equal(out.coords, grid[keep]), min_tissue


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_count_across_rows(world) -> None:
    g = torch.Generator().manual_seed(1)
    img = _slide(48, 40)
    mask = torch.rand(12, 10, generator=g) > 0.5
    full = sliding_window(
        ArrayReader(img),
        identity,
        tile=8,
        stride=4,
        tissue=mask,
        min_tissue=0.25,
        progress=False,
    )
    for rank in range(world):
        part = sliding_window(
            ArrayReader(img),
            identity,
            tile=8,
            stride=4,
            tissue=mask,
            min_tissue=0.25,
            shard=(rank, world),
            progress=False,
        )
        idx = shard_indices(len(full.coords), rank=rank, world_size=world)
        assert torch.equal(part.coords, full.coords[idx])
    with pytest.raises(ValueError, match="`rank`"):
        sliding_window(ArrayReader(img), identity, tile=8, shard=(2, 2), progress=False)


# ----------------------------------------------------------------------------- banded stitching


@pytest.mark.parametrize(("tile", "stride", "blend"), [(8, 3, "gaussian"), (6, 6, "uniform")])
def test_band_stitching_equals_a_whole_canvas(tile, stride, blend) -> None:
    img = _slide(131, 23, seed=2)  # tall: the band of 2 tiles is flushed many times
    out = sliding_window(
        ArrayReader(img),
        identity,
        tile=tile,
        stride=stride,
        blend=blend,
        gate=False,
        batch_size=7,
        progress=False,
    )
    prob, cam, weight = _naive(img, tile, out.coords, blend)
    torch.testing.assert_close(out.prob, prob)
    torch.testing.assert_close(out.cam, cam)
    torch.testing.assert_close(out.weight, weight)


def test_rows_without_tiles_stay_zero_between_bands() -> None:
    img = _slide(200, 16)
    mask = torch.zeros(50, 4, dtype=torch.bool)
    mask[:3] = True
    mask[40:] = True  # tissue at the top and the bottom, nothing in between
    out = sliding_window(ArrayReader(img), identity, tile=8, tissue=mask, progress=False)
    rows = (out.weight > 0).any(dim=1)
    assert bool(rows[:8].all()) and not bool(rows[16:160].any()) and bool(rows[160:].all())


@pytest.mark.parametrize("on_disk", [False, True])
def test_sparse_tissue_stitch_equals_a_brute_force_sum(tmp_path, on_disk) -> None:
    # islands of tissue scattered over a wide slide: the stitcher's band only ever
    # touches some columns; the result must still be sum(w m) / sum(w) everywhere
    img = _slide(120, 400, seed=3)
    mask = torch.zeros(30, 100, dtype=torch.bool)
    for y, x in ((0, 5), (2, 60), (12, 30), (13, 90), (25, 0), (27, 97)):
        mask[y : y + 3, x : x + 3] = True
    kw = {"tile": 16, "stride": 8, "output_downsample": 2, "min_tissue": 0.05}
    out = sliding_window(
        ArrayReader(img), identity, tissue=mask, progress=False,
        out=tmp_path / "maps" if on_disk else None, **kw,
    )  # fmt: skip
    assert len(out.coords) > 6
    t = 8  # tile at output resolution
    win = blend_window(t, blend="gaussian", sigma=0.125).double()
    acc = torch.zeros(2, 60, 200, dtype=torch.float64)
    wsum = torch.zeros(60, 200, dtype=torch.float64)
    x = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    for cx, cy in out.coords.tolist():
        tile = x[:, cy : cy + 16, cx : cx + 16]
        prob, cam = tile.mean(), F.avg_pool2d(tile[None, :1] * tile.mean(), 2)[0, 0]
        oy, ox = cy // 2, cx // 2
        acc[0, oy : oy + t, ox : ox + t] += win * prob
        acc[1, oy : oy + t, ox : ox + t] += win * cam
        wsum[oy : oy + t, ox : ox + t] += win
    ref = torch.where(wsum > 0, acc / wsum.clamp_min(1e-30), 0.0)
    torch.testing.assert_close(out.weight.double(), wsum, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.prob.double(), ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.cam.double(), ref[1], atol=1e-5, rtol=1e-5)


def test_out_directory_gives_the_same_maps_from_disk(tmp_path) -> None:
    img = _slide(90, 70)
    kw = {"tile": 10, "stride": 5, "output_downsample": 5, "progress": False}
    ref = sliding_window(ArrayReader(img), identity, **kw)
    out = sliding_window(ArrayReader(img), identity, out=tmp_path / "maps", **kw)
    for name in ("prob", "cam", "weight"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name))
        on_disk = np.load(tmp_path / "maps" / f"{name}.npy")
        np.testing.assert_array_equal(on_disk, getattr(ref, name).numpy())
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "cam.npy",
        "prob.npy",
        "weight.npy",
    ]
    assert torch.equal(out.coords, ref.coords)
    out.cam[0, 0] = 5.0  # copy-on-write: the file keeps its values
    assert np.load(tmp_path / "maps" / "cam.npy")[0, 0] == ref.cam[0, 0].item()
    # float64 canvases on disk
    out64 = sliding_window(
        ArrayReader(img), identity, out=tmp_path / "m64", dtype=torch.float64, **kw
    )
    assert out64.cam.dtype == torch.float64
    assert np.load(tmp_path / "m64" / "cam.npy").dtype == np.float64


def test_out_bad_input_and_no_partial_files(tmp_path) -> None:
    img = _slide(40, 40)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="`out` to be a directory"):
        sliding_window(ArrayReader(img), identity, tile=8, out=tmp_path / "file")
    with pytest.raises(TypeError, match="`out` to be a directory path or None"):
        sliding_window(ArrayReader(img), identity, tile=8, out=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float16, float32 or float64 with `out=`"):
        sliding_window(ArrayReader(img), identity, tile=8, out=tmp_path / "b", dtype=torch.bfloat16)
    calls = []

    def boom(tiles):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("model failed")
        return identity(tiles)

    with pytest.raises(RuntimeError, match="model failed"):
        sliding_window(
            ArrayReader(img), boom, tile=8, batch_size=2, out=tmp_path / "half", progress=False
        )
    assert list((tmp_path / "half").iterdir()) == []


def test_reader_errors_surface_from_the_reading_thread(tmp_path) -> None:
    class Failing(ArrayReader):
        def read(self, level, x, y, w, h):
            if y >= 16:
                raise OSError("tile 7 of 'slide.tif' is corrupt")
            return super().read(level, x, y, w, h)

    before = threading.active_count()
    with pytest.raises(OSError, match="corrupt"):
        sliding_window(
            Failing(_slide(40, 40)),
            identity,
            tile=8,
            batch_size=3,
            out=tmp_path / "o",
            progress=False,
        )
    assert threading.active_count() == before  # the reading thread was joined
    assert list((tmp_path / "o").iterdir()) == []


def test_reading_runs_in_one_background_thread() -> None:
    reader = LazyReader(64, 64, (0, 0, 64, 64))
    sliding_window(reader, identity, tile=8, batch_size=4, progress=False)
    assert reader.read_threads == {"camseg-tile-reader"} and reader.reads == 64


def test_a_100k_slide_with_one_tissue_tile_streams(tmp_path) -> None:
    reader = LazyReader(100_000, 100_000, (51_200, 25_600, 256, 256))
    mask = torch.zeros(1000, 1000, dtype=torch.bool)
    mask[256:259, 512:515] = True  # the tissue square at 1/100 scale
    out = sliding_window(
        reader,
        identity,
        tile=256,
        tissue=mask,
        min_tissue=0.5,
        output_downsample=64,
        out=tmp_path / "big",
        progress=False,
    )
    assert out.coords.tolist() == [[51_200, 25_600]]
    assert reader.reads == 1 and out.cam.shape == (1562, 1562)
    covered = (out.weight > 0).nonzero()
    assert covered.min(0).values.tolist() == [400, 800]
    assert covered.max(0).values.tolist() == [403, 803]


# ----------------------------------------------------------------------------- tissue masks


@pytest.mark.parametrize(
    "kwargs",
    [{"method": "brightness"}, {"method": "saturation"}, {"method": "saturation", "sigma": 2.5}],
)
def test_banded_tissue_mask_equals_one_read(monkeypatch, kwargs) -> None:
    rng = np.random.default_rng(0)
    img = np.full((97, 53, 3), 235, np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, 90), rng.integers(0, 46)
        img[y : y + 7, x : x + 7] = rng.integers(60, 200, 3)
    img = np.clip(img.astype(int) + rng.integers(-15, 15, img.shape), 0, 255).astype(np.uint8)
    whole = tissue_mask(torch.from_numpy(img).permute(2, 0, 1)[None], **kwargs)[0]
    reads = []

    class Counting(ArrayReader):
        def read(self, level, x, y, w, h):
            reads.append(h)
            return super().read(level, x, y, w, h)

    monkeypatch.setattr(tissue_mod, "_BAND_PIXELS", 53 * 30)  # ~30 rows a band
    mask = slide_tissue_mask(Counting(img), **kwargs)
    assert torch.equal(mask, whole)
    assert len(reads) > 3 and max(reads) < 97


def test_tissue_mask_refuses_a_huge_level_before_reading() -> None:
    reader = LazyReader(100_000, 100_000, (0, 0, 10, 10))
    with pytest.raises(ValueError, match=r"at most `max_pixels`=134217728 pixels.*coarser"):
        slide_tissue_mask(reader)
    assert reader.reads == 0
    small = LazyReader(300, 200, (100, 50, 100, 100))
    mask = slide_tissue_mask(small, max_pixels=60_000)
    assert abs(int(mask.sum()) - 100 * 100) < 900  # the square, give or take the blurred edge
    with pytest.raises(ValueError, match="`max_pixels`"):
        slide_tissue_mask(small, max_pixels=0)


# ----------------------------------------------------------------------------- check_reader


def test_check_reader_is_called_first() -> None:
    class NoRead:
        level_count = 1
        mpp = None

        def dimensions(self, level):
            return (8, 8)

        def downsample(self, level):
            return 1.0

    with pytest.raises(TypeError, match="`reader` to be a RegionReader.*lacks read"):
        sliding_window(NoRead(), identity, tile=0)  # the reader is checked before `tile`
    with pytest.raises(TypeError, match="lacks read"):
        read_tiles(NoRead(), 0, torch.zeros(1, 2, dtype=torch.long), 4)
    with pytest.raises(TypeError, match="lacks read"):
        slide_tissue_mask(NoRead())

    class NotCallable(NoRead):
        read = 5

    with pytest.raises(TypeError, match="read are methods.*not callable"):
        check_reader(NotCallable())
    with pytest.raises(TypeError, match="`slide` to be a RegionReader"):
        check_reader(5, name="slide")
    with pytest.raises(TypeError):
        check_reader(5, "slide")  # type: ignore[misc]  # `name` is keyword-only


def test_read_tiles_bad_coords() -> None:
    with pytest.raises(ValueError, match="`coords` to be an \\(N, 2\\) tensor"):
        read_tiles(ArrayReader(_slide(8, 8)), 0, torch.zeros(3, dtype=torch.long), 4)


# ----------------------------------------------------------------------------- real formats


def test_streamed_heatmap_overlay_reads_back_in_tifffile_and_openslide(tmp_path) -> None:
    img = _slide(400, 560, seed=4)
    reader = ArrayReader(img, mpp=0.5)
    kw = {"tile": 16, "stride": 8, "output_downsample": 2, "progress": False}
    ref = sliding_window(reader, identity, **kw)
    maps = sliding_window(reader, identity, out=tmp_path / "maps", **kw)
    expected = np.round(ref.cam.double().numpy() * 255).astype(np.uint8)
    path = write_tiff_overlay(tmp_path / "heat.tif", maps.cam, mpp=maps.mpp, tile=64)
    backends = ["tifffile"] + (["openslide"] if openslide_available() else [])
    for backend in backends:
        with open_slide(path, backend=backend) as r:
            assert r.level_count == 4, backend
            assert r.dimensions(0) == (280, 200) and r.mpp == pytest.approx(1.0)
            np.testing.assert_array_equal(r.read(0, 0, 0, 280, 200)[..., 0], expected)
            ref1 = expected.reshape(100, 2, 140, 2).astype(np.float32).mean(axis=(1, 3))
            np.testing.assert_array_equal(r.read(1, 0, 0, 140, 100)[..., 1], np.round(ref1))
    # the overlay is a slide too: tissue and tiles run on it as on any other
    with open_slide(path) as r:
        again = sliding_window(r, identity, tile=16, progress=False)
        assert again.cam.shape == (200, 280)


def test_band_helpers_match_one_shot(monkeypatch) -> None:
    import camseg.slide._export as export_mod

    g = torch.Generator().manual_seed(0)
    heat = torch.rand(123, 77, generator=g)
    monkeypatch.setattr(export_mod, "_BAND_ELEMENTS", 77 * 10)
    got = export_mod._to_uint8(heat.numpy())
    np.testing.assert_array_equal(got, np.round(heat.double().numpy() * 255).astype(np.uint8))
    half = export_mod._halve(got)
    ref = got[:122, :76].reshape(61, 2, 38, 2).astype(np.float32).mean(axis=(1, 3))
    np.testing.assert_array_equal(half, np.round(ref))
    bad = heat.numpy().copy()
    bad[100, 3] = 1.5
    with pytest.raises(ValueError, match=r"`maps` to lie in \[0, 1\]"):
        export_mod._to_uint8(bad)


def test_module_keeps_no_grid_table(monkeypatch) -> None:
    # sliding_window never calls tile_grid (which would build the N x 2 table)
    def refuse(*args, **kwargs):
        raise AssertionError("tile_grid called")

    monkeypatch.setattr(sliding_mod, "tile_grid", refuse)
    out = sliding_window(ArrayReader(_slide(32, 32)), identity, tile=8, progress=False)
    assert len(out.coords) == 16
