"""Slide annotations in: ASAP XML (CAMELYON16/17) and GeoJSON (QuPath), and their masks.

Coordinates are level-0 pixels of the slide, ``x`` along the width and ``y``
along the height, with the origin at the top-left **corner** of the image (the
convention of ASAP, QuPath and OpenSlide): pixel ``(row, col)`` of level 0 is the
unit square ``[col, col + 1) x [row, row + 1)``. :func:`annotation_mask` calls
a mask pixel inside when its **centre** is inside a polygon, so polygons that
follow pixel edges (as :func:`~camseg.slide.write_geojson` writes them) give
back exactly the pixels they were traced from.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from camseg._checks import describe

__all__ = ["EXCLUDE_GROUPS", "Annotation", "annotation_mask", "read_annotations"]

#: ASAP groups that mark regions to cut out of the others (CAMELYON16's ``_2``:
#: normal tissue inside a tumour annotation).
EXCLUDE_GROUPS: tuple[str, ...] = ("_2",)

#: Default cap on the pixels of one mask (1 GiB of ``bool``).
MAX_MASK_PIXELS = 1 << 30

Ring = np.ndarray  # (N, 2) float64 (x, y), not closed (last point != first)
Polygon = tuple[Ring, ...]  # exterior ring, then holes


class Annotation(NamedTuple):
    """One annotated region of a slide.

    Attributes:
        name: the annotation's name (ASAP ``Name``, QuPath ``properties.name``), or ``""``.
        group: its class: ASAP ``PartOfGroup`` (``"Tumor"``, ``"_0"``, ``"_1"``,
            ``"_2"``...) or QuPath ``properties.classification.name``; ``None`` when
            unclassified.
        polygons: one or more polygons, each a tuple of rings: the exterior first,
            then its holes. A ring is a float64 array ``(N, 2)`` of ``(x, y)``
            level-0 pixel coordinates, ``N >= 3``, not repeating its first point.
    """

    name: str
    group: str | None
    polygons: tuple[Polygon, ...]

    @property
    def area(self) -> float:
        """Area in level-0 pixels: exteriors minus holes (shoelace formula)."""
        total = 0.0
        for poly in self.polygons:
            total += abs(_signed_area(poly[0])) - sum(abs(_signed_area(h)) for h in poly[1:])
        return total

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` in level-0 pixels."""
        pts = np.concatenate([poly[0] for poly in self.polygons])
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _ring(points: Any, where: str) -> Ring:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: expected a list of [x, y] points, but got {describe(points)}."
        ) from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(
            f"{where}: expected a list of [x, y] points, but got an array of shape {arr.shape}."
        )
    arr = arr[:, :2]
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: expected finite coordinates, but some are NaN or infinite.")
    if len(arr) > 1 and (arr[0] == arr[-1]).all():
        arr = arr[:-1]  # GeoJSON rings repeat their first point
    if len(arr) < 3:
        raise ValueError(f"{where}: expected a ring of at least 3 points, but got {len(arr)}.")
    return np.ascontiguousarray(arr)


def _number(text: str | None, where: str) -> float:
    if text is None:
        raise ValueError(f"{where}: missing coordinate.")
    t = text.strip()
    if "," in t and "." not in t:  # some ASAP files are written with a decimal comma
        t = t.replace(",", ".")
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"{where}: expected a number, but got {text!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, but got {text!r}.")
    return value


# ASAP types with an area; "Dot" and "PointSet" mark points and have none
_ASAP_AREA_TYPES = ("polygon", "rectangle", "spline")
_ASAP_POINT_TYPES = ("dot", "pointset", "measurement")


def _read_asap(path: str) -> list[Annotation]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"Cannot read {path!r} as ASAP XML: {err}.") from None
    if root.tag != "ASAP_Annotations":
        raise ValueError(
            f"Expected {path!r} to be ASAP XML with root element <ASAP_Annotations>, but its "
            f"root is <{root.tag}>."
        )
    out: list[Annotation] = []
    for k, ann in enumerate(root.iterfind("./Annotations/Annotation")):
        name = ann.get("Name", "") or ""
        where = f"{path!r}, annotation {k} ({name!r})"
        kind = (ann.get("Type") or "Polygon").strip().lower()
        if kind in _ASAP_POINT_TYPES:
            continue
        if kind not in _ASAP_AREA_TYPES:
            raise ValueError(
                f"{where}: expected Type to be one of Polygon, Rectangle, Spline, Dot, PointSet, "
                f"but got {ann.get('Type')!r}."
            )
        coords = []
        for j, c in enumerate(ann.iterfind("./Coordinates/Coordinate")):
            order = c.get("Order")
            key = _number(order, f"{where}, coordinate {j} Order") if order is not None else j
            coords.append(
                (
                    key,
                    _number(c.get("X"), f"{where}, coordinate {j} X"),
                    _number(c.get("Y"), f"{where}, coordinate {j} Y"),
                )
            )
        coords.sort(key=lambda t: t[0])
        ring = _ring([(x, y) for _, x, y in coords], where)
        group = ann.get("PartOfGroup")
        out.append(Annotation(name, None if group in (None, "", "None") else group, ((ring,),)))
    return out


def _geometry_polygons(geom: Any, where: str) -> list[Polygon]:
    if not isinstance(geom, dict) or "type" not in geom:
        raise ValueError(f"{where}: expected a GeoJSON geometry object, but got {describe(geom)}.")
    kind = geom["type"]
    if kind == "GeometryCollection":
        polys: list[Polygon] = []
        for i, g in enumerate(geom.get("geometries") or []):
            polys.extend(_geometry_polygons(g, f"{where}, geometry {i}"))
        return polys
    if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        return []  # no area
    coords = geom.get("coordinates")
    if kind == "Polygon":
        parts = [coords]
    elif kind == "MultiPolygon":
        parts = list(coords or [])
    else:
        raise ValueError(f"{where}: expected a Polygon or MultiPolygon, but got type {kind!r}.")
    polys = []
    for i, rings in enumerate(parts):
        if not isinstance(rings, list) or not rings:
            raise ValueError(f"{where}: polygon {i} has no rings.")
        polys.append(tuple(_ring(r, f"{where}, polygon {i} ring {j}") for j, r in enumerate(rings)))
    return polys


def _classification(props: dict[str, Any]) -> str | None:
    c = props.get("classification")
    if isinstance(c, dict):
        name = c.get("name")
        if name is None and isinstance(c.get("names"), list):  # QuPath derived classes
            name = ": ".join(str(n) for n in c["names"])
        return None if name is None else str(name)
    if isinstance(c, str):
        return c
    return None


def _read_geojson(path: str) -> list[Annotation]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"Cannot read {path!r} as GeoJSON: {err}.") from None
    if isinstance(data, list):  # QuPath's export without FEATURE_COLLECTION: a bare array
        features = data
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features") or []
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and (
        "coordinates" in data or data.get("type") == "GeometryCollection"
    ):
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        got = describe(data.get("type") if isinstance(data, dict) else data)
        raise ValueError(
            f"Expected {path!r} to hold a GeoJSON FeatureCollection, Feature, geometry or a list "
            f"of Features, but got {got}."
        )
    out: list[Annotation] = []
    for k, feat in enumerate(features):
        where = f"{path!r}, feature {k}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise ValueError(f"{where}: expected a GeoJSON Feature, but got {describe(feat)}.")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise ValueError(f"{where}: expected `properties` to be an object.")
        polys = _geometry_polygons(feat.get("geometry"), where)
        if polys:
            out.append(
                Annotation(str(props.get("name") or ""), _classification(props), tuple(polys))
            )
    return out


def read_annotations(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    slide_size: tuple[int, int] | None = None,
) -> list[Annotation]:
    """Read slide annotations from ASAP XML (CAMELYON16/17) or GeoJSON (QuPath).

    **ASAP XML** -- ``<ASAP_Annotations><Annotations><Annotation Name=... Type="Polygon"
    PartOfGroup="Tumor"><Coordinates><Coordinate Order="0" X=... Y=.../>`` --
    the format of the CAMELYON16 and CAMELYON17 lesion annotations. Coordinates
    are sorted by ``Order``; ``Polygon``, ``Rectangle`` and ``Spline`` (read as
    the polygon of its points) have an area; ``Dot`` and ``PointSet`` have none
    and are left out. The group is ``PartOfGroup``: CAMELYON16 uses ``Tumor``,
    ``_0`` and ``_1`` for tumour and ``_2`` for normal tissue inside them
    (:data:`EXCLUDE_GROUPS`, subtracted by :func:`annotation_mask`).

    **GeoJSON** -- a ``FeatureCollection``, a single ``Feature``, a bare geometry,
    or a JSON list of Features (QuPath's two export shapes). ``Polygon`` and
    ``MultiPolygon`` geometries (with holes) become annotations; point and line
    geometries have no area and are left out. The group is
    ``properties.classification.name`` (QuPath's class), the name
    ``properties.name``.

    Args:
        path: the file.
        format: ``"asap"`` or ``"geojson"``; by default from the extension
            (``.xml``: ASAP; ``.json``/``.geojson``: GeoJSON), else from the content.
        slide_size: level-0 ``(width, height)`` of the slide; when given, an
            annotation reaching outside it raises (the file belongs to another
            slide, or its coordinates are not level-0 pixels).

    Returns:
        The annotations in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file is not valid ASAP XML or GeoJSON (the message names
            the file and the annotation), an annotation leaves ``slide_size``, or
            ``format`` is unknown.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "tumor_001.xml")
        >>> with open(path, "w") as fh:
        ...     _ = fh.write('''<?xml version="1.0"?><ASAP_Annotations><Annotations>
        ...   <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="Tumor">
        ...     <Coordinates><Coordinate Order="0" X="10" Y="10"/>
        ...       <Coordinate Order="1" X="30" Y="10"/><Coordinate Order="2" X="30" Y="20"/>
        ...       <Coordinate Order="3" X="10" Y="20"/></Coordinates></Annotation>
        ... </Annotations></ASAP_Annotations>''')
        >>> [(a.group, a.area) for a in read_annotations(path)]
        [('Tumor', 200.0)]
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Expected `path` to be a str or os.PathLike, but got {describe(path)}.")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"No such annotation file: {p!r}.")
    if format is None:
        ext = os.path.splitext(p)[1].lower()
        if ext == ".xml":
            format = "asap"
        elif ext in (".json", ".geojson"):
            format = "geojson"
        else:
            with open(p, "rb") as fh:
                head = fh.read(256).lstrip()
            format = "asap" if head.startswith(b"<") else "geojson"
    if slide_size is not None and (
        not isinstance(slide_size, (tuple, list))
        or len(slide_size) != 2
        or not all(isinstance(v, (int, np.integer)) and v > 0 for v in slide_size)
    ):
        raise ValueError(
            "Expected `slide_size` to be level-0 (width, height), two ints > 0, but got "
            f"{describe(slide_size)}."
        )
    if format == "asap":
        anns = _read_asap(p)
    elif format == "geojson":
        anns = _read_geojson(p)
    else:
        raise ValueError(f"Expected `format` to be 'asap', 'geojson' or None, but got {format!r}.")
    if slide_size is not None:
        width, height = int(slide_size[0]), int(slide_size[1])
        for k, a in enumerate(anns):
            x0, y0, x1, y1 = a.bounds
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise ValueError(
                    f"Expected the annotations of {p!r} to lie inside the slide (width={width}, "
                    f"height={height}), but annotation {k} ({a.name!r}) spans x {x0:g}..{x1:g}, "
                    f"y {y0:g}..{y1:g}. Hint: is this the annotation file of another slide?"
                )
    return anns


def _fill_polygon(
    rings: Sequence[np.ndarray], ox: float, oy: float, ds: float, height: int, width: int
) -> tuple[int, int, np.ndarray] | None:
    """Even-odd fill of one polygon's rings by pixel centres (scanlines), in its bounding box.

    Ring vertices are level-0 coordinates; output pixel ``(i, j)`` has its centre at
    level-0 ``(ox + (j + 0.5) ds, oy + (i + 0.5) ds)``. Works in output-pixel units:
    ``u = (x - ox) / ds - 0.5`` puts the centres on the integers. Returns
    ``(row0, col0, mask)`` of the box inside the ``(height, width)`` output, or
    ``None`` when the polygon covers no pixel centre.
    """
    us, vs = [], []
    for ring in rings:
        us.append((ring[:, 0] - ox) / ds - 0.5)
        vs.append((ring[:, 1] - oy) / ds - 0.5)
    u0, v0 = np.concatenate(us), np.concatenate(vs)
    u1 = np.concatenate([np.roll(u, -1) for u in us])
    v1 = np.concatenate([np.roll(v, -1) for v in vs])
    r0 = int(np.ceil(v0.min()).clip(0, height))
    r1 = int(np.ceil(v0.max()).clip(0, height))
    c0 = int(np.ceil(u0.min()).clip(0, width))
    c1 = int(np.ceil(u0.max()).clip(0, width))
    if r1 <= r0 or c1 <= c0:
        return None
    # each edge crosses the rows i with min(v0, v1) <= i < max(v0, v1) (half-open: a
    # vertex exactly on a row is counted once)
    lo = np.ceil(np.minimum(v0, v1)).clip(r0, r1)
    hi = np.ceil(np.maximum(v0, v1)).clip(r0, r1)
    n = (hi - lo).astype(np.int64)
    keep = n > 0
    if not keep.any():
        return None
    u0, v0, u1, v1, lo, n = u0[keep], v0[keep], u1[keep], v1[keep], lo[keep], n[keep]
    edge = np.repeat(np.arange(len(n)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    rows = lo[edge].astype(np.int64) + (np.arange(len(edge)) - start)
    t = (rows - v0[edge]) / (v1[edge] - v0[edge])
    xs = u0[edge] + t * (u1[edge] - u0[edge])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # crossings come in pairs per row (closed rings): fill [x_a, x_b) by centres
    ra, xa, xb = rows[0::2], xs[0::2], xs[1::2]
    j0 = np.ceil(xa).clip(c0, c1).astype(np.int64)
    j1 = np.ceil(xb).clip(c0, c1).astype(np.int64)
    span = j1 > j0
    ra, j0, j1 = ra[span] - r0, j0[span] - c0, j1[span] - c0
    if len(ra) == 0:
        return None
    diff = np.zeros((r1 - r0, c1 - c0 + 1), np.int32)
    np.add.at(diff, (ra, j0), 1)
    np.add.at(diff, (ra, j1), -1)
    return r0, c0, np.cumsum(diff[:, :-1], axis=1) > 0


def annotation_mask(
    annotations: Iterable[Annotation],
    *,
    size: tuple[int, int],
    downsample: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    groups: Sequence[str | None] | None = None,
    exclude: Sequence[str] = EXCLUDE_GROUPS,
    max_pixels: int = MAX_MASK_PIXELS,
) -> torch.Tensor:
    """Rasterise annotations to a bool mask of any level or region of the slide.

    Output pixel ``(i, j)`` covers the level-0 square of side ``downsample`` at
    ``origin + (j, i) * downsample`` and is ``True`` when its centre lies inside the
    union of the kept annotations and outside the union of the excluded ones.
    Each polygon is filled with the even-odd rule over its rings, so holes are
    holes. For level ``L`` of a reader use ``size=reader.dimensions(L)`` and
    ``downsample=reader.downsample(L)``; for a region ``(x, y, w, h)`` of that level
    add ``origin=(x * downsample, y * downsample)`` and ``size=(w, h)``; for
    :class:`~camseg.slide.SlideMaps` use ``size=(W_o, H_o)`` and
    ``downsample=maps.downsample``.

    Args:
        annotations: from :func:`read_annotations`.
        size: ``(width, height)`` of the mask.
        downsample: level-0 pixels per mask pixel (> 0).
        origin: level-0 ``(x, y)`` of the mask's top-left corner.
        groups: keep only annotations of these groups (``None`` matches
            unclassified ones); all groups by default.
        exclude: groups subtracted from the kept ones (CAMELYON16's ``"_2"`` by
            default; ``()`` to subtract nothing). They are never kept.
        max_pixels: refuse masks larger than this (1 GiB by default).

    Returns:
        ``torch.bool`` ``(height, width)`` on the CPU.

    Raises:
        TypeError: if ``annotations`` is not an iterable of :class:`Annotation`, or
            ``max_pixels`` is not an int.
        ValueError: if ``size``, ``downsample`` or ``origin`` is invalid,
            ``max_pixels < 1``, or the mask would exceed ``max_pixels``.

    Example:
        >>> import numpy as np
        >>> square = np.array([[0, 0], [8, 0], [8, 8], [0, 8]], float)
        >>> hole = np.array([[2, 2], [6, 2], [6, 6], [2, 6]], float)
        >>> ann = Annotation("a", "Tumor", ((square, hole),))
        >>> annotation_mask([ann], size=(4, 4), downsample=2.0).int()
        tensor([[1, 1, 1, 1],
                [1, 0, 0, 1],
                [1, 0, 0, 1],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    if isinstance(annotations, (str, bytes, Annotation)) or not isinstance(annotations, Iterable):
        raise TypeError(
            f"Expected `annotations` to be an iterable of Annotation, but got "
            f"{describe(annotations)}. Hint: read files with camseg.slide.read_annotations(path)."
        )
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
        or min(size) < 1
    ):
        raise ValueError(
            f"Expected `size` to be (width, height), two ints >= 1, but got {describe(size)}."
        )
    if (
        not isinstance(downsample, (int, float))
        or isinstance(downsample, bool)
        or not (downsample > 0 and math.isfinite(downsample))
    ):
        raise ValueError(
            f"Expected `downsample` to be a finite number > 0, but got {describe(downsample)}."
        )
    if (
        not isinstance(origin, (tuple, list))
        or len(origin) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in origin
        )
    ):
        raise ValueError(
            f"Expected `origin` to be level-0 (x, y), two finite numbers, but got "
            f"{describe(origin)}."
        )
    if not isinstance(max_pixels, (int, np.integer)) or isinstance(max_pixels, bool):
        raise TypeError(f"Expected `max_pixels` to be an int, but got {describe(max_pixels)}.")
    if max_pixels < 1:
        raise ValueError(f"Expected `max_pixels` to be an int >= 1, but got {max_pixels}.")
    width, height = int(size[0]), int(size[1])
    if width * height > max_pixels:
        raise ValueError(
            f"Expected a mask of at most `max_pixels`={max_pixels} pixels, but `size` "
            f"{(width, height)} has {width * height}. Hint: rasterise a coarser level "
            "(a larger `downsample`) or a region (`origin`, `size`)."
        )
    if isinstance(exclude, str) or (groups is not None and isinstance(groups, str)):
        raise TypeError("Expected `groups` and `exclude` to be sequences of names, not a str.")
    anns = list(annotations)
    for i, a in enumerate(anns):
        if not isinstance(a, Annotation):
            raise TypeError(
                f"Expected `annotations[{i}]` to be an Annotation, but got {describe(a)}. "
                "Hint: read files with camseg.slide.read_annotations(path)."
            )
    excluded = set(exclude)
    ox, oy, ds = float(origin[0]), float(origin[1]), float(downsample)
    keep = np.zeros((height, width), bool)
    cut = np.zeros((height, width), bool)
    for a in anns:
        if a.group in excluded:
            target = cut
        elif groups is None or a.group in groups:
            target = keep
        else:
            continue
        for poly in a.polygons:
            filled = _fill_polygon(poly, ox, oy, ds, height, width)
            if filled is not None:
                r0, c0, sub = filled
                target[r0 : r0 + sub.shape[0], c0 : c0 + sub.shape[1]] |= sub
    return torch.from_numpy(keep & ~cut)
