"""write_geojson / write_tiff_overlay: export -> import round trips, and failure modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

import camseg.slide._export as export_mod
from camseg.slide import (
    annotation_mask,
    mask_polygons,
    open_slide,
    openslide_available,
    read_annotations,
    write_geojson,
    write_tiff_overlay,
)


def _shapes() -> torch.Tensor:
    """A mask with a hole, a hole inside the hole's island, diagonal touches and a U."""
    m = torch.zeros(40, 60, dtype=torch.bool)
    m[2:20, 2:20] = True
    m[6:16, 6:16] = False  # hole
    m[9:13, 9:13] = True  # island in the hole
    m[25, 25] = m[26, 26] = m[27, 25] = True  # touching only at corners
    m[30:38, 40:48] = True
    m[31:37, 41:47] = False
    m[31, 41] = True  # the U-ish ring touching its hole diagonally
    m[0, 59] = m[39, 0] = True  # borders
    return m


def _random_masks():
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        yield torch.rand(31, 47, generator=g) < (0.2 + 0.05 * seed)


@pytest.mark.parametrize("mask", [_shapes(), *_random_masks()])
def test_polygons_give_back_the_mask(mask) -> None:
    polys = mask_polygons(mask)
    for poly in polys:
        assert export_mod._signed_area(poly[0]) > 0  # exteriors counter-clockwise (RFC 7946)
        assert all(export_mod._signed_area(h) < 0 for h in poly[1:])
        for ring in poly:  # rings are simple: no repeated vertex
            assert len({tuple(p) for p in ring.tolist()}) == len(ring)
    from scipy import ndimage

    assert len(polys) == ndimage.label(mask.numpy())[1]  # one polygon per 4-connected region
    area = sum(
        export_mod._signed_area(p[0]) + sum(export_mod._signed_area(h) for h in p[1:])
        for p in polys
    )
    assert area == int(mask.sum())


@pytest.mark.parametrize("mask", [_shapes(), *list(_random_masks())[:4]])
@pytest.mark.parametrize(("downsample", "origin"), [(1.0, (0.0, 0.0)), (16.0, (320.0, 48.0))])
def test_geojson_round_trip(tmp_path, mask, downsample, origin) -> None:
    path = write_geojson(
        tmp_path / "out" / "slide.geojson", mask, downsample=downsample, origin=origin, mpp=2.0
    )
    anns = read_annotations(path)
    back = annotation_mask(
        anns,
        size=(60, 40) if mask.shape[1] == 60 else (47, 31),
        downsample=downsample,
        origin=origin,
    )
    assert torch.equal(back, mask)
    assert int((back & mask).sum()) == int((back | mask).sum())  # IoU 1
    assert sum(a.area for a in anns) == pytest.approx(int(mask.sum()) * downsample**2)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    for f in doc["features"]:
        props = f["properties"]
        assert props["objectType"] == "annotation"
        assert props["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]  # closed rings, as GeoJSON wants
        assert props["measurements"]["Area µm^2"] == pytest.approx(
            props["measurements"]["Area px^2"] / downsample**2 * 4.0
        )
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_geojson_classes_and_probability_measurements(tmp_path) -> None:
    heat = torch.zeros(20, 30)
    heat[2:6, 2:8] = torch.linspace(0.5, 0.9, 6)
    heat[10:15, 20:25] = 0.7
    tumour = heat >= 0.5
    other = torch.zeros(20, 30, dtype=torch.bool)
    other[16:19, 0:4] = True
    path = write_geojson(
        tmp_path / "c.geojson",
        {"Tumor": tumour, "Other": other},
        heatmap=heat,
        colors={"Other": (0, 0, 255)},
    )
    feats = json.loads(path.read_text())["features"]
    assert [f["properties"]["classification"]["name"] for f in feats] == [
        "Tumor",
        "Tumor",
        "Other",
    ]
    assert feats[2]["properties"]["classification"]["color"] == [0, 0, 255]
    m0, m1 = (f["properties"]["measurements"] for f in feats[:2])
    assert m0["Max probability"] == pytest.approx(0.9)
    assert m0["Mean probability"] == pytest.approx(0.7)
    assert m1 == {
        "Area px^2": 25.0,
        "Max probability": pytest.approx(0.7),
        "Mean probability": pytest.approx(0.7),
    }
    anns = read_annotations(path)
    assert torch.equal(annotation_mask(anns, size=(30, 20), groups=["Other"]), other)
    # a floating map is thresholded, and measured with itself
    path2 = write_geojson(tmp_path / "h.geojson", heat, threshold=0.6, min_size=10)
    feats2 = json.loads(path2.read_text())["features"]
    assert len(feats2) == 2  # the 2 x 2 ... regions above 0.6: strip of 4 x 4 and the block
    assert torch.equal(annotation_mask(read_annotations(path2), size=(30, 20)), heat >= 0.6)


def test_geojson_bad_input_and_atomicity(tmp_path, monkeypatch) -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match="bool masks or a floating heatmap"):
        write_geojson(tmp_path / "a.geojson", torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"`masks` to have shape \(H, W\)"):
        write_geojson(tmp_path / "a.geojson", torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`masks` to lie in \[0, 1\]"):
        write_geojson(tmp_path / "a.geojson", torch.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="`heatmap` to be finite"):
        write_geojson(tmp_path / "a.geojson", mask, heatmap=torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="`heatmap` to have the masks' shape"):
        write_geojson(tmp_path / "a.geojson", mask, heatmap=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="`downsample`"):
        write_geojson(tmp_path / "a.geojson", mask, downsample=0)
    with pytest.raises(ValueError, match="`mpp`"):
        write_geojson(tmp_path / "a.geojson", mask, mpp=-1.0)
    with pytest.raises(ValueError, match="colors"):
        write_geojson(tmp_path / "a.geojson", mask, colors={"Tumor": (300, 0, 0)})
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_geojson(tmp_path, mask)
    assert not list(tmp_path.iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod.json, "dump", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_geojson(tmp_path / "a.geojson", mask)
    assert not list(tmp_path.iterdir())  # nothing partial left


def test_geojson_region_outside_the_slide(tmp_path) -> None:
    mask = torch.ones(4, 4, dtype=torch.bool)
    path = write_geojson(tmp_path / "a.geojson", mask, downsample=8.0, origin=(100.0, 0.0))
    read_annotations(path, slide_size=(132, 32))
    with pytest.raises(ValueError, match=r"a\.geojson.*inside the slide"):
        read_annotations(path, slide_size=(120, 32))


@pytest.mark.parametrize("kind", ["heatmap", "mask"])
def test_tiff_overlay_round_trip(tmp_path, kind) -> None:
    g = torch.Generator().manual_seed(0)
    heat = torch.rand(300, 520, generator=g)
    data = heat if kind == "heatmap" else heat > 0.7
    expected = (
        np.round(heat.double().numpy() * 255).astype(np.uint8)
        if kind == "heatmap"
        else data.numpy().astype(np.uint8) * 255
    )
    path = write_tiff_overlay(tmp_path / "o.tif", data, mpp=7.76, tile=128)
    with open_slide(path) as reader:
        assert reader.level_count == 4  # halved until it fits one 128-pixel tile
        assert [reader.dimensions(k) for k in range(4)] == [
            (520, 300),
            (260, 150),
            (130, 75),
            (65, 37),
        ]
        assert reader.mpp == pytest.approx(7.76)
        region = reader.read(0, 0, 0, 520, 300)
        np.testing.assert_array_equal(region[..., 0], expected)
        np.testing.assert_array_equal(region[..., 2], expected)
        if kind == "mask":
            assert torch.equal(torch.from_numpy(region[..., 0] > 127), data)
        with pytest.raises(ValueError, match="inside level 2"):
            reader.read(2, 100, 0, 31, 1)
        # level 1 is the 2 x 2 mean of level 0
        ref = expected[:300, :520].reshape(150, 2, 260, 2).astype(float).mean(axis=(1, 3))
        np.testing.assert_array_equal(reader.read(1, 0, 0, 260, 150)[..., 0], np.round(ref))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].is_tiled and len(tif.pages) == 4
        assert [p.subfiletype for p in tif.pages] == [0, 1, 1, 1]
        assert tif.series[0].levels[1].shape == (150, 260)
    if openslide_available():
        import openslide

        slide = openslide.OpenSlide(str(path))
        try:
            assert slide.level_count == 4
            assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(7.76)
            rgba = np.asarray(slide.read_region((256, 128), 0, (40, 30)))
            np.testing.assert_array_equal(rgba[..., 0], expected[128:158, 256:296])
        finally:
            slide.close()


def test_tiff_overlay_failure_modes(tmp_path) -> None:
    heat = torch.rand(64, 64)
    with pytest.raises(ValueError, match=r"`maps` to lie in \[0, 1\]"):
        write_tiff_overlay(tmp_path / "a.tif", heat * 3, mpp=1.0)
    with pytest.raises(ValueError, match="`maps` to be finite"):
        write_tiff_overlay(tmp_path / "a.tif", heat.masked_fill(heat > 0.5, float("nan")), mpp=1.0)
    with pytest.raises(TypeError, match="floating .*bool or uint8"):
        write_tiff_overlay(tmp_path / "a.tif", torch.zeros(4, 4, dtype=torch.int32), mpp=1.0)
    with pytest.raises(ValueError, match="`tile`"):
        write_tiff_overlay(tmp_path / "a.tif", heat, mpp=1.0, tile=100)
    with pytest.raises(ValueError, match="`mpp`"):
        write_tiff_overlay(tmp_path / "a.tif", heat, mpp=0.0)
    assert not list(tmp_path.iterdir())
    # no mpp: written without resolution, read back as unknown
    path = write_tiff_overlay(tmp_path / "sub" / "a.tif", heat, mpp=None, tile=32)
    with open_slide(path) as reader:
        assert reader.mpp is None and reader.level_count == 2
    # a truncated overlay: the reader names the file
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(OSError, match=r"cut\.tif"), open_slide(cut) as reader:
        for k in range(reader.level_count):
            w, h = reader.dimensions(k)
            reader.read(k, 0, 0, w, h)
    with pytest.raises(FileNotFoundError, match=r"nothere\.tif"):
        open_slide(tmp_path / "nothere.tif")
