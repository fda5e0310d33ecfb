"""read_annotations / annotation_mask on hand-made ASAP XML and GeoJSON files with known areas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from camseg.slide import EXCLUDE_GROUPS, Annotation, annotation_mask, read_annotations


def _asap(path, annotations: list[tuple[str, str, str, list[tuple[float, float]]]], **kw) -> None:
    """Write ASAP XML like the CAMELYON16 files: (name, type, group, points)."""
    rows = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for name, kind, group, pts in annotations:
        rows.append(
            f'\t\t<Annotation Name="{name}" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58">'
        )
        rows.append("\t\t\t<Coordinates>")
        order = kw.get("order", range(len(pts)))
        for i in order:
            x, y = pts[i]
            xs, ys = (str(x), str(y))
            if kw.get("comma"):
                xs, ys = xs.replace(".", ","), ys.replace(".", ",")
            rows.append(f'\t\t\t\t<Coordinate Order="{i}" X="{xs}" Y="{ys}" />')
        rows.append("\t\t\t</Coordinates>")
        rows.append("\t\t</Annotation>")
    rows += [
        "\t</Annotations>",
        "\t<AnnotationGroups>",
        '\t\t<Group Name="Tumor" PartOfGroup="None" Color="#00ff00"><Attributes /></Group>',
        "\t</AnnotationGroups>",
        "</ASAP_Annotations>",
    ]
    path.write_text("\n".join(rows))


def _rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


@pytest.fixture
def camelyon_xml(tmp_path):
    path = tmp_path / "tumor_001.xml"
    _asap(
        path,
        [
            ("Annotation 0", "Polygon", "Tumor", _rect(100, 50, 300, 250)),  # 200 x 200
            ("Annotation 1", "Polygon", "_0", _rect(400, 100, 450, 120)),  # 50 x 20
            ("Annotation 2", "Polygon", "_2", _rect(150, 100, 200, 200)),  # 50 x 100 cut out
            ("Annotation 3", "Dot", "Tumor", [(10.0, 10.0)]),  # no area: skipped
            ("Annotation 4", "Polygon", "_1", [(500, 300), (600, 300), (500, 400)]),  # triangle
        ],
    )
    return path


def test_asap_camelyon_groups_and_areas(camelyon_xml) -> None:
    anns = read_annotations(camelyon_xml)
    assert [(a.name, a.group) for a in anns] == [
        ("Annotation 0", "Tumor"),
        ("Annotation 1", "_0"),
        ("Annotation 2", "_2"),
        ("Annotation 4", "_1"),
    ]
    assert [a.area for a in anns] == [40000.0, 1000.0, 5000.0, 5000.0]
    assert anns[0].bounds == (100.0, 50.0, 300.0, 250.0)
    assert EXCLUDE_GROUPS == ("_2",)
    mask = annotation_mask(anns, size=(700, 450))
    assert mask.dtype == torch.bool and mask.shape == (450, 700)
    # tumour 40000 + 1000 minus the _2 hole 5000; the triangle's centres: 100 * 101 / 2 - ...
    rect_part = int(mask[:, :460].sum())
    assert rect_part == 40000 + 1000 - 5000
    assert not mask[100:200, 150:200].any() and mask[50:250, 100:150].all()
    tri = int(mask[:, 460:].sum())
    # centres (x + .5, y + .5) with x >= 500, y >= 300, (x - 500) + (y - 300) < 100 - 1
    assert tri == sum(100 - k - 1 for k in range(99)) + 0 == 4950
    # no exclusion: the _2 region is tumour again
    assert int(annotation_mask(anns, size=(700, 450), exclude=())[:, :460].sum()) == 41000
    # only the Tumor group
    assert int(annotation_mask(anns, size=(700, 450), groups=["Tumor"]).sum()) == 35000


def test_asap_mask_at_a_coarser_level_and_a_region(camelyon_xml) -> None:
    anns = read_annotations(camelyon_xml)
    full = annotation_mask(anns, size=(700, 450))
    coarse = annotation_mask(anns, size=(175, 112), downsample=4.0)
    # pixel-aligned rectangles: the coarse mask is the full mask sampled at block centres
    np.testing.assert_array_equal(coarse[:, :115].numpy(), full[2::4, 2::4][:, :115].numpy())
    # 50 x 50 tumour + 12 x 5 of the _0 strip - 13 x 25 of the _2 cut (block centres 4i + 2)
    assert int(coarse[:, :115].sum()) == 2500 + 60 - 325
    region = annotation_mask(anns, size=(60, 40), origin=(120.0, 80.0))
    np.testing.assert_array_equal(region.numpy(), full[80:120, 120:180].numpy())
    far = annotation_mask(anns, size=(10, 10), origin=(5000.0, 5000.0))
    assert not far.any()  # a region without annotations is empty, not an error


def test_asap_order_attribute_and_decimal_comma(tmp_path) -> None:
    path = tmp_path / "c.xml"
    _asap(path, [("a", "Polygon", "Tumor", _rect(0.5, 0.5, 10.5, 4.5))], order=[2, 0, 3, 1])
    (a,) = read_annotations(path)
    assert a.area == 40.0  # sorted by Order: a rectangle, not a bow tie
    path2 = tmp_path / "comma.xml"
    _asap(path2, [("a", "Polygon", "Tumor", _rect(0.5, 0.5, 10.5, 4.5))], comma=True)
    assert read_annotations(path2)[0].area == 40.0


def test_geojson_qupath_polygons_holes_and_classes(tmp_path) -> None:
    outer = [[0, 0], [100, 0], [100, 80], [0, 80], [0, 0]]
    hole = [[20, 20], [20, 40], [60, 40], [60, 20], [20, 20]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "0f1e",
                "geometry": {"type": "Polygon", "coordinates": [outer, hole]},
                "properties": {
                    "objectType": "annotation",
                    "name": "big",
                    "classification": {"name": "Tumor", "color": [200, 0, 0]},
                },
            },
            {
                "type": "Feature",
                "geometry": {
                    "type": "MultiPolygon",
                    "coordinates": [
                        [[[200, 0], [210, 0], [210, 10], [200, 10], [200, 0]]],
                        [[[220, 0], [240, 0], [240, 10], [220, 10], [220, 0]]],
                    ],
                },
                "properties": {"objectType": "annotation", "classification": {"name": "Stroma"}},
            },
            {  # points have no area and are left out
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [5, 5]},
                "properties": {"objectType": "annotation"},
            },
        ],
    }
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(doc))
    anns = read_annotations(path)
    assert [(a.name, a.group, len(a.polygons)) for a in anns] == [
        ("big", "Tumor", 1),
        ("", "Stroma", 2),
    ]
    assert anns[0].area == 8000 - 800 and anns[1].area == 300
    mask = annotation_mask(anns, size=(250, 100))
    assert int(mask.sum()) == 7200 + 300
    assert not mask[20:40, 20:60].any()
    assert int(annotation_mask(anns, size=(250, 100), groups=["Stroma"]).sum()) == 300
    # QuPath's other export shape: a bare list of features; and a single Feature
    path.write_text(json.dumps(doc["features"]))
    assert [a.group for a in read_annotations(path)] == ["Tumor", "Stroma"]
    path.write_text(json.dumps(doc["features"][0]))
    assert read_annotations(path)[0].area == 7200
    path.write_text(json.dumps(doc["features"][0]["geometry"]))
    assert read_annotations(path)[0].group is None


def test_slide_size_catches_foreign_annotations(camelyon_xml) -> None:
    read_annotations(camelyon_xml, slide_size=(700, 450))
    with pytest.raises(ValueError, match=r"tumor_001\.xml.*inside the slide.*annotation 3"):
        read_annotations(camelyon_xml, slide_size=(550, 450))


def test_missing_and_corrupt_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.xml"):
        read_annotations(tmp_path / "missing.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<ASAP_Annotations><Annotations><Annotation>")
    with pytest.raises(ValueError, match=r"broken\.xml.*ASAP XML"):
        read_annotations(broken)
    other = tmp_path / "other.xml"
    other.write_text("<Annotations/>")
    with pytest.raises(ValueError, match=r"root element <ASAP_Annotations>.*<Annotations>"):
        read_annotations(other)
    bad_x = tmp_path / "bad_x.xml"
    _asap(bad_x, [("a", "Polygon", "Tumor", [("abc", 1), (2, 2), (3, 1)])])
    with pytest.raises(ValueError, match=r"bad_x\.xml.*annotation 0 \('a'\), coordinate 0 X"):
        read_annotations(bad_x)
    short = tmp_path / "short.xml"
    _asap(short, [("a", "Polygon", "Tumor", [(1, 1), (2, 2)])])
    with pytest.raises(ValueError, match="at least 3 points"):
        read_annotations(short)
    js = tmp_path / "broken.geojson"
    js.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(ValueError, match=r"broken\.geojson.*GeoJSON"):
        read_annotations(js)
    js.write_text('{"type": "Topology"}')
    with pytest.raises(ValueError, match="FeatureCollection"):
        read_annotations(js)
    js.write_text(
        json.dumps(
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}}
        )
    )
    with pytest.raises(
        ValueError,
        match=r"broken\.geojson', feature 0, polygon 0 ring 0: expected a list of \[x, y\]",
    ):
        read_annotations(js)
    js.write_text(json.dumps([{"type": "Feature", "geometry": {"type": "Circle"}}]))
    with pytest.raises(ValueError, match="Polygon or MultiPolygon"):
        read_annotations(js)
    with pytest.raises(ValueError, match="`format`"):
        read_annotations(js, format="svg")


def test_annotation_mask_bad_input() -> None:
    a = Annotation("a", "Tumor", ((np.array(_rect(0, 0, 4, 4), float),),))
    with pytest.raises(ValueError, match="`size`"):
        annotation_mask([a], size=(0, 4))
    with pytest.raises(ValueError, match="`downsample`"):
        annotation_mask([a], size=(4, 4), downsample=float("nan"))
    with pytest.raises(ValueError, match="`origin`"):
        annotation_mask([a], size=(4, 4), origin=(0.0, float("inf")))
    with pytest.raises(TypeError, match=r"`annotations\[0\]` to be an Annotation"):
        annotation_mask([{"x": 1}], size=(4, 4))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="`max_pixels`"):
        annotation_mask([a], size=(100000, 100000))
    with pytest.raises(TypeError, match="not a str"):
        annotation_mask([a], size=(4, 4), exclude="_2")


@pytest.mark.parametrize("seed", range(5))
def test_random_polygon_area_matches_pixel_count(seed) -> None:
    # a random star polygon: the pixel count converges to the area at fine scale
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(200, 400, 40)
    pts = np.stack([500 + radii * np.cos(angles), 500 + radii * np.sin(angles)], 1)
    a = Annotation("s", "Tumor", ((pts,),))
    count = int(annotation_mask([a], size=(1000, 1000)).sum())
    assert count == pytest.approx(a.area, rel=2e-3)
