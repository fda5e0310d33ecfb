"""Heatmaps and masks out: GeoJSON polygons for QuPath, pyramidal TIFF overlays for ASAP/OpenSlide.

Both writers place their output in level-0 pixel coordinates of the slide (the
convention of QuPath, ASAP and OpenSlide: origin at the top-left corner of the
full-resolution image), from a map whose pixels are ``downsample`` level-0
pixels wide -- :class:`~camseg.slide.SlideMaps` carries that ``downsample``.
Files are written atomically: a temporary file in the target folder, then
``os.replace``; nothing partial is left behind on an error.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from camseg._checks import check_number, describe

__all__ = ["mask_polygons", "write_geojson", "write_tiff_overlay"]

#: Colours (RGB) given to classes without one, in order.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (200, 0, 0),
    (0, 120, 200),
    (0, 160, 60),
    (220, 140, 0),
    (140, 60, 180),
)


@contextlib.contextmanager
def _atomic_target(path: str | os.PathLike[str], suffix: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; move it into place if the block succeeds."""
    dest = Path(path)
    if dest.is_dir():
        raise IsADirectoryError(
            f"Expected `path` to be a file name, but {str(dest)!r} is a folder."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    try:
        yield tmp
        mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_numpy_2d(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu()
        if arr.dtype in (torch.bfloat16, torch.float16):
            arr = arr.float()
        out = arr.numpy()
    elif isinstance(value, np.ndarray):
        out = value
    else:
        raise TypeError(
            f"Expected `{name}` to be a torch.Tensor or numpy array, but got {describe(value)}."
        )
    if out.ndim != 2:
        raise ValueError(f"Expected `{name}` to have shape (H, W), but got shape {out.shape}.")
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ValueError(f"Expected `{name}` to hold at least one pixel, but got {out.shape}.")
    return out


def _check_geometry_args(downsample: Any, origin: Any) -> tuple[float, float, float]:
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
    return float(downsample), float(origin[0]), float(origin[1])


# directions of boundary edges: +x, +y, -x, -y (a right turn is d + 1: clockwise on screen)
_DX = np.array([1, 0, -1, 0])
_DY = np.array([0, 1, 0, -1])


def _boundary_edges(m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unit edges between foreground and background, foreground on the right of each.

    Returns ``(x0, y0, dir, row, col)``: start corner, direction, and the foreground
    pixel the edge belongs to.
    """
    p = np.pad(m, 1)
    core = p[1:-1, 1:-1]
    parts = []
    # (neighbour test, start corner offset (dx, dy) from the pixel's top-left, direction)
    for nb, (sx, sy), d in (
        (p[:-2, 1:-1], (0, 0), 0),  # top edge, heading +x
        (p[1:-1, 2:], (1, 0), 1),  # right edge, heading +y
        (p[2:, 1:-1], (1, 1), 2),  # bottom edge, heading -x
        (p[1:-1, :-2], (0, 1), 3),  # left edge, heading -y
    ):
        r, c = np.nonzero(core & ~nb)
        parts.append((c + sx, r + sy, np.full(len(r), d), r, c))
    return tuple(np.concatenate([q[i] for q in parts]) for i in range(5))


def _split_loops(vertices: list[int]) -> list[list[int]]:
    """Split a closed vertex walk at repeated vertices into simple loops."""
    loops: list[list[int]] = []
    stack: list[int] = []
    where: dict[int, int] = {}
    for v in vertices:
        if v in where:
            k = where[v]
            loop = stack[k:]
            for u in loop[1:]:
                del where[u]
            del stack[k + 1 :]
            loops.append(loop)
        else:
            where[v] = len(stack)
            stack.append(v)
    if stack:
        loops.append(stack)
    return loops


def _simplify(ring: np.ndarray) -> np.ndarray:
    """Drop vertices where the (axis-aligned) boundary goes straight on."""
    d_in = ring - np.roll(ring, 1, axis=0)
    d_out = np.roll(ring, -1, axis=0) - ring
    turn = (np.sign(d_in) != np.sign(d_out)).any(axis=1)
    return ring[turn]


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _inside(ring: np.ndarray, px: float, py: float) -> bool:
    x0, y0 = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    cross = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    return bool((cross & (px < xs)).sum() % 2)


def _trace(m: np.ndarray) -> tuple[np.ndarray, list[tuple[int, tuple[np.ndarray, ...]]]]:
    """4-connected labels of ``m`` and ``(label, polygon)`` for each region."""
    labels, n = ndimage.label(m)  # 4-connectivity
    if n == 0:
        return labels, []
    x0, y0, d, pr, pc = _boundary_edges(m)
    width1 = m.shape[1] + 1
    start = y0 * width1 + x0
    end = (y0 + _DY[d]) * width1 + (x0 + _DX[d])
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    lo = np.searchsorted(sorted_start, end, "left")
    hi = np.searchsorted(sorted_start, end, "right")
    nxt = order[lo]
    two = np.nonzero(hi - lo == 2)[0]
    if len(two):  # two ways on at a corner where regions touch diagonally: turn right
        alt = order[lo[two] + 1]
        take_alt = d[alt] == (d[two] + 1) % 4
        nxt[two[take_alt]] = alt[take_alt]
    seen = np.zeros(len(start), bool)
    exteriors: dict[int, list[np.ndarray]] = {}
    holes: dict[int, list[tuple[np.ndarray, int, int]]] = {}
    nxt_list = nxt.tolist()
    start_list = start.tolist()
    for e0 in range(len(start)):
        if seen[e0]:
            continue
        walk = []
        e = e0
        while not seen[e]:
            seen[e] = True
            walk.append(e)
            e = nxt_list[e]
        label = int(labels[pr[e0], pc[e0]])
        by_vertex = {start_list[i]: i for i in walk}
        for loop in _split_loops([start_list[i] for i in walk]):
            idx = np.array([by_vertex[v] for v in loop])
            ring = _simplify(np.stack([x0[idx], y0[idx]], axis=1).astype(np.int64))
            if _signed_area(ring) > 0:
                exteriors.setdefault(label, []).append(ring)
            else:
                first = by_vertex[loop[0]]
                holes.setdefault(label, []).append((ring, int(pr[first]), int(pc[first])))
    polygons: list[tuple[int, tuple[np.ndarray, ...]]] = []
    for label in range(1, n + 1):
        ext = exteriors.get(label, [])
        hs = holes.get(label, [])
        if len(ext) == 1:
            polygons.append((label, (ext[0], *(h for h, _, _ in hs))))
            continue
        for ring in ext:  # defensive: several exteriors for one region
            mine = [h for h, r, c in hs if _inside(ring, c + 0.5, r + 0.5)]
            polygons.append((label, (ring, *mine)))
    return labels, polygons


def mask_polygons(mask: torch.Tensor | np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Trace a bool mask into polygons along pixel edges, one per 4-connected region.

    Each polygon is a tuple of rings: the exterior, then its holes; a ring is an
    int64 array ``(N, 2)`` of ``(x, y)`` pixel corners (not repeating its first
    point), with only the corners where the boundary turns. Exteriors run
    counter-clockwise in the mathematical sense (positive shoelace area, as
    RFC 7946 asks of GeoJSON exteriors), holes the other way. Regions touching
    only at a corner are separate polygons; rings touch at most at single points.
    Filling the polygons by pixel centres (:func:`annotation_mask`) gives back
    exactly ``mask``.

    Args:
        mask: ``(H, W)`` bool tensor or array.

    Returns:
        One polygon per 4-connected region, in order of the regions' first pixel
        (row-major).

    Raises:
        TypeError: if ``mask`` is not a bool tensor or array.
        ValueError: if ``mask`` is not 2-D.

    Example:
        >>> import torch
        >>> m = torch.zeros(4, 5, dtype=torch.bool); m[1:4, 1:4] = True; m[2, 2] = False
        >>> [ring.tolist() for ring in mask_polygons(m)[0]]
        [[[1, 1], [4, 1], [4, 4], [1, 4]], [[2, 3], [3, 3], [3, 2], [2, 2]]]
    """
    m = _as_numpy_2d(mask, "mask")
    if m.dtype != np.bool_:
        raise TypeError(f"Expected `mask` to have a bool dtype, but got {m.dtype}.")
    return [poly for _, poly in _trace(m)[1]]


def _coord(v: float) -> float | int:
    r = round(v)
    return int(r) if abs(v - r) < 1e-9 else round(v, 6)


def _check_color(color: Any, name: str) -> list[int]:
    if (
        not isinstance(color, (tuple, list))
        or len(color) != 3
        or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in color)
    ):
        raise ValueError(
            f"Expected `{name}` to be three ints in [0, 255], but got {describe(color)}."
        )
    return [int(c) for c in color]


def write_geojson(
    path: str | os.PathLike[str],
    masks: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
    *,
    heatmap: torch.Tensor | np.ndarray | None = None,
    threshold: float = 0.5,
    downsample: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    mpp: float | None = None,
    classification: str = "Tumor",
    colors: Mapping[str, tuple[int, int, int]] | None = None,
    min_size: int = 0,
) -> Path:
    """Write mask regions as GeoJSON polygons that QuPath imports (with measurements).

    Each 4-connected region of a mask becomes one ``Feature`` whose geometry is a
    ``Polygon`` traced along pixel edges (:func:`mask_polygons`; holes as inner
    rings), scaled to level-0 pixels (``origin + corner * downsample``), with the
    properties QuPath reads: ``objectType: "annotation"``, a ``name``,
    ``classification: {"name", "color"}`` and ``measurements`` -- ``Area px^2``
    (level-0 pixels), ``Area µm^2`` when ``mpp`` is given, and ``Max probability`` /
    ``Mean probability`` of the region's pixels when there is a heatmap. The
    features form a ``FeatureCollection`` (QuPath: *File > Import objects from
    file*, or drag the file onto the viewer). :func:`read_annotations` followed by
    :func:`annotation_mask` at the same ``downsample``/``origin`` gives back the
    masks exactly.

    Args:
        path: the ``.geojson`` file to write.
        masks: a ``(H, W)`` bool mask; a floating ``(H, W)`` heatmap in [0, 1] (its
            mask is ``heatmap >= threshold``, and it is also the ``heatmap`` for
            measurements unless one is given); or ``{class name: mask}`` for several
            classes.
        heatmap: optional floating ``(H, W)`` probabilities for the measurements.
        threshold: the threshold of a floating ``masks``.
        downsample: level-0 pixels per mask pixel (``SlideMaps.downsample``).
        origin: level-0 ``(x, y)`` of the mask's top-left corner.
        mpp: microns per **mask** pixel (``SlideMaps.mpp``), for the area in µm².
        classification: the class name of a single mask.
        colors: RGB colour per class name (a fixed palette by default).
        min_size: leave out regions smaller than this many mask pixels.

    Returns:
        The path written.

    Raises:
        TypeError: if a mask or the heatmap has the wrong type, ``threshold`` is not
            a number, ``classification`` not a non-empty str or ``colors`` not a
            mapping.
        ValueError: on a shape mismatch, a heatmap outside [0, 1] or with NaN, a
            non-finite ``threshold`` (checked even for bool masks), or a bad
            ``downsample``/``origin``/``mpp``/colour.

    Example:
        >>> import json, os, tempfile, torch
        >>> mask = torch.zeros(6, 8, dtype=torch.bool); mask[1:4, 2:6] = True
        >>> path = write_geojson(os.path.join(tempfile.mkdtemp(), "tumor.geojson"), mask,
        ...                      downsample=4.0, mpp=2.0)
        >>> feature = json.loads(path.read_text())["features"][0]
        >>> feature["geometry"]["coordinates"]
        [[[8, 4], [24, 4], [24, 16], [8, 16], [8, 4]]]
        >>> feature["properties"]["measurements"]
        {'Area px^2': 192.0, 'Area µm^2': 48.0}
    """
    ds, ox, oy = _check_geometry_args(downsample, origin)
    if mpp is not None and (
        not isinstance(mpp, (int, float))
        or isinstance(mpp, bool)
        or not (mpp > 0 and math.isfinite(mpp))
    ):
        raise ValueError(
            f"Expected `mpp` to be a finite number > 0 or None, but got {describe(mpp)}."
        )
    if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 0:
        raise ValueError(f"Expected `min_size` to be an int >= 0, but got {describe(min_size)}.")
    threshold = check_number(threshold, "threshold")
    if colors is not None and not isinstance(colors, Mapping):
        raise TypeError(
            f"Expected `colors` to be a mapping from class name to RGB, or None, but got "
            f"{describe(colors)}."
        )
    heat = None if heatmap is None else _check_heatmap(heatmap, "heatmap")
    if isinstance(masks, Mapping):
        items = list(masks.items())
        if not items:
            raise ValueError("Expected `masks` to hold at least one class, but got none.")
    else:
        if not isinstance(classification, str) or not classification:
            raise TypeError(
                f"Expected `classification` to be a non-empty str, but got "
                f"{describe(classification)}."
            )
        items = [(classification, masks)]
    layers: list[tuple[str, np.ndarray]] = []
    for name, value in items:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"Expected the class names of `masks` to be non-empty str, but got "
                f"{describe(name)}."
            )
        arr = _as_numpy_2d(value, "masks" if len(items) == 1 else f"masks[{name!r}]")
        if arr.dtype != np.bool_:
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(
                    f"Expected `masks` to be bool masks or a floating heatmap, but got dtype "
                    f"{arr.dtype}."
                )
            arr_f = _check_heatmap(arr, "masks")
            if heat is None:
                heat = arr_f
            arr = arr_f >= threshold
        layers.append((name, arr))
    shape = layers[0][1].shape
    for name, arr in layers:
        if arr.shape != shape:
            raise ValueError(
                f"Expected every mask to have the same shape, but {name!r} has {arr.shape} "
                f"and {layers[0][0]!r} {shape}."
            )
    if heat is not None and heat.shape != shape:
        raise ValueError(
            f"Expected `heatmap` to have the masks' shape {shape}, but got {heat.shape}."
        )
    features = []
    for k, (name, arr) in enumerate(layers):
        color = _check_color(
            (colors or {}).get(name, PALETTE[k % len(PALETTE)]), f"colors[{name!r}]"
        )
        labels, traced = _trace(arr)
        for i, (label, poly) in enumerate(traced):
            # pixel area from the rings (exact for pixel-edge polygons)
            area_px = abs(_signed_area(poly[0])) - sum(abs(_signed_area(h)) for h in poly[1:])
            if area_px < min_size:
                continue
            rings = []
            for ring in poly:
                pts = [[_coord(ox + x * ds), _coord(oy + y * ds)] for x, y in ring.tolist()]
                pts.append(pts[0])
                rings.append(pts)
            measurements: dict[str, float] = {"Area px^2": float(area_px * ds * ds)}
            if mpp is not None:
                measurements["Area µm^2"] = float(area_px * mpp * mpp)
            if heat is not None:
                x_min, y_min = poly[0].min(axis=0)
                x_max, y_max = poly[0].max(axis=0)
                region = labels[y_min:y_max, x_min:x_max] == label
                vals = heat[y_min:y_max, x_min:x_max][region]
                measurements["Max probability"] = float(vals.max())
                measurements["Mean probability"] = float(vals.mean())
            fid = uuid.uuid5(uuid.NAMESPACE_URL, f"camseg:{name}:{k}:{i}:{rings[0][0]}")
            features.append(
                {
                    "type": "Feature",
                    "id": str(fid),
                    "geometry": {"type": "Polygon", "coordinates": rings},
                    "properties": {
                        "objectType": "annotation",
                        "name": f"{name} {i + 1}",
                        "classification": {"name": name, "color": color},
                        "isLocked": False,
                        "measurements": measurements,
                    },
                }
            )
    doc = {"type": "FeatureCollection", "features": features}
    with _atomic_target(path, ".tmp") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    return Path(path)


def _check_heatmap(value: Any, name: str) -> np.ndarray:
    arr = _as_numpy_2d(value, name)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"Expected `{name}` to be floating, but got dtype {arr.dtype}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"Expected `{name}` to be finite, but it holds NaN or infinite values.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"Expected `{name}` to lie in [0, 1], but its values span [{lo:.4g}, {hi:.4g}]. "
            "Hint: use SlideMaps.prob or a CAM stitched with cam_normalize='max'."
        )
    return arr


#: Rows x columns converted at a time by :func:`write_tiff_overlay` (bounded temporaries).
_BAND_ELEMENTS = 1 << 22


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """``uint8`` copy of a float map in [0, 1] (``round(255 p)``), bool (0/255) or uint8 map.

    Converted in bands of rows, so a memory-mapped map is never held as float64
    (the temporaries are ``O(band)``, the result one byte per pixel).
    """
    if arr.dtype == np.uint8:
        return arr
    out = np.empty(arr.shape, np.uint8)
    rows = max(1, _BAND_ELEMENTS // arr.shape[1])
    lo, hi = math.inf, -math.inf
    for y in range(0, arr.shape[0], rows):
        band = np.asarray(arr[y : y + rows])
        if band.dtype == np.bool_:
            out[y : y + rows] = band.astype(np.uint8) * np.uint8(255)
            continue
        if not np.isfinite(band).all():
            raise ValueError("Expected `maps` to be finite, but it holds NaN or infinite values.")
        lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"Expected `maps` to lie in [0, 1], but its values reach [{lo:.4g}, {hi:.4g}]. "
                "Hint: use SlideMaps.prob or a CAM stitched with cam_normalize='max'."
            )
        out[y : y + rows] = np.round(band.astype(np.float64) * 255.0)
    return out


def _halve(level: np.ndarray) -> np.ndarray:
    """The next pyramid level: 2 x 2 means (rounded) of a ``uint8`` level, in row bands."""
    h, w = level.shape[0] // 2, level.shape[1] // 2
    out = np.empty((h, w), np.uint8)
    rows = max(1, _BAND_ELEMENTS // max(1, 4 * w))
    for y in range(0, h, rows):
        n = min(rows, h - y)
        band = level[2 * y : 2 * (y + n), : 2 * w].astype(np.float32)
        out[y : y + n] = np.round(band.reshape(n, 2, w, 2).mean(axis=(1, 3)))
    return out


def write_tiff_overlay(
    path: str | os.PathLike[str],
    maps: torch.Tensor | np.ndarray,
    *,
    mpp: float | None,
    tile: int = 256,
    compression: str | None = "zlib",
) -> Path:
    """Write a heatmap or mask as a tiled, pyramidal, greyscale TIFF (OpenSlide and tifffile).

    Values are stored as ``uint8``: a floating map in [0, 1] as ``round(255 p)``, a
    bool mask as 0/255, a ``uint8`` map as is. Level 0 is the map itself; each
    further level halves it (2 x 2 means) until it fits in one tile. Levels are
    chained in the main IFDs, marked as reduced-resolution images, and carry their
    resolution (``XResolution``/``YResolution`` in pixels per centimetre), so
    OpenSlide's generic-TIFF reader, tifffile and :func:`open_slide` see the
    pyramid and its microns per pixel. Open it in ASAP as an image overlay, or in
    QuPath as an image of its own.

    Args:
        path: the ``.tif`` file to write.
        maps: ``(H, W)`` heatmap (floating, in [0, 1]), bool mask or ``uint8`` map.
        mpp: microns per pixel of ``maps`` (``SlideMaps.mpp``), or ``None`` when unknown.
        tile: tile side (a multiple of 16).
        compression: ``"zlib"`` (lossless, default) or ``None``.

    Returns:
        The path written.

    Raises:
        TypeError: if ``maps`` has an unsupported dtype.
        ValueError: if ``maps`` is not 2-D, leaves [0, 1] or holds NaN, ``tile`` is not
            a positive multiple of 16, or ``mpp`` is not positive.

    Example:
        >>> import os, tempfile, torch
        >>> from camseg.slide import open_slide
        >>> heat = torch.linspace(0, 1, 600).expand(400, 600)
        >>> path = write_tiff_overlay(os.path.join(tempfile.mkdtemp(), "heat.tif"), heat,
        ...                           mpp=8.0)
        >>> with open_slide(path) as r:
        ...     r.level_count, r.dimensions(1), r.mpp, int(r.read(0, 599, 0, 1, 1)[0, 0, 0])
        (3, (300, 200), 8.0, 255)
    """
    import tifffile

    arr = _as_numpy_2d(maps, "maps")
    if not (arr.dtype in (np.bool_, np.uint8) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(
            f"Expected `maps` to be floating (in [0, 1]), bool or uint8, but got dtype {arr.dtype}."
        )
    data = _to_uint8(arr)
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 16 or tile % 16:
        raise ValueError(
            f"Expected `tile` to be a positive multiple of 16, but got {describe(tile)}."
        )
    if mpp is not None and (
        not isinstance(mpp, (int, float))
        or isinstance(mpp, bool)
        or not (mpp > 0 and math.isfinite(mpp))
    ):
        raise ValueError(
            f"Expected `mpp` to be a finite number > 0 or None, but got {describe(mpp)}."
        )
    if compression not in ("zlib", None):
        raise ValueError(
            f"Expected `compression` to be 'zlib' or None, but got {describe(compression)}."
        )
    levels = [np.ascontiguousarray(data)]
    while max(levels[-1].shape) > tile and min(levels[-1].shape) >= 2:
        levels.append(_halve(levels[-1]))
    w0 = levels[0].shape[1]
    with (
        _atomic_target(path, ".tif.tmp") as tmp,
        tifffile.TiffWriter(tmp, bigtiff=data.size > 2**31) as tw,
    ):
        for k, level in enumerate(levels):
            kw: dict[str, Any] = {}
            if mpp is not None:
                per_cm = 1e4 / (mpp * w0 / level.shape[1])
                kw = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            tw.write(
                level,
                tile=(tile, tile),
                photometric="minisblack",
                compression=compression,
                subfiletype=1 if k else 0,
                metadata=None,
                **kw,
            )
    return Path(path)
