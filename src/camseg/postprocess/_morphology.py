r"""Binary morphology on batches of masks ``(B, H, W)``.

Two kinds of operation, two implementations:

* Erosion, dilation, opening and closing are local maxima/minima over a
  footprint. They run in torch on the masks' device as max-pooling: a disk is a
  union of a few centred rectangles, and a dilation by a union is the maximum
  of the dilations by its parts, each one a separable pair of 1-D max-pools.
  Pixels outside the image are ignored (max-pooling pads with :math:`-\infty`),
  which is scikit-image's ``mode="ignore"``: outside counts as background for a
  dilation and as foreground for an erosion.
* Connected components need a global, sequential algorithm, so they cross a
  clear CPU boundary and come back as a tensor on the masks' device.
  :func:`remove_small_objects` works on horizontal runs of pixels, joined
  where they overlap in consecutive rows of the same image: in camseg's C
  kernel (``camseg._cpu``: rows packed into 64-bit words, a union-find over
  the runs, images split across threads), or, where the extension is not
  built, with a few NumPy passes over the bool stack and
  :func:`scipy.sparse.csgraph.connected_components` on the run graph, which
  has tens of times fewer nodes than the images have pixels.
  :func:`fill_holes` and :func:`keep_largest_component` label the whole batch
  with one :func:`scipy.ndimage.label` call, as a 3-D stack whose structuring
  element has no connectivity along the batch axis. A torch label propagation
  (iterated min-pooling of labels) needs as many passes as the longest path
  inside a component: 227 passes on 1,024 Otsu masks of 96×96, thousands of
  times slower on the CPU (see the post-processing page of the documentation).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from camseg import _native
from camseg._checks import check_masks, check_one_of, check_positive_int

__all__ = [
    "binary_closing",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "fill_holes",
    "keep_largest_component",
    "remove_small_objects",
]

Footprint = Literal["disk", "square"]
Connectivity = Literal[1, 2]


# --------------------------------------------------------------------------- footprints


def footprint_rectangles(radius: int, footprint: str) -> list[tuple[int, int]]:
    """Half-sizes ``(h, w)`` of centred rectangles whose union is the footprint.

    ``"square"`` is one ``(2r+1) × (2r+1)`` square. ``"disk"`` is
    ``{(y, x): y² + x² <= r²}`` (``skimage.morphology.disk(r)``): row ``y`` spans
    ``|x| <= isqrt(r² - y²)``, and one rectangle per distinct row width covers it.
    """
    if footprint == "square":
        return [(radius, radius)]
    widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    rects: dict[int, int] = {}
    for dy, w in enumerate(widths):
        rects[w] = dy  # widths do not increase with dy: the last dy per width is its height
    return [(h, w) for w, h in rects.items()]


def _dilate(x: torch.Tensor, rects: list[tuple[int, int]]) -> torch.Tensor:
    """Dilation of a ``(B, 1, H, W)`` uint8 0/1 tensor by a union of rectangles."""
    parts = []
    for h, w in rects:
        y = x
        if h:
            y = F.max_pool2d(y, (2 * h + 1, 1), stride=1, padding=(h, 0))
        if w:
            y = F.max_pool2d(y, (1, 2 * w + 1), stride=1, padding=(0, w))
        parts.append(y)
    out = parts[0]
    for y in parts[1:]:
        out = torch.maximum(out, y)
    return out


def _check_morph_args(masks: object, radius: object, footprint: object) -> torch.Tensor:
    m = check_masks(masks)
    check_positive_int(radius, "radius", minimum=0)
    check_one_of(footprint, "footprint", ("disk", "square"))
    return m


def _morph(masks: torch.Tensor, radius: int, footprint: str, ops: str) -> torch.Tensor:
    """Apply a sequence of ``"d"`` (dilate) / ``"e"`` (erode) steps."""
    if radius == 0 or masks.numel() == 0:
        return masks.clone()
    rects = footprint_rectangles(radius, footprint)
    x = masks.to(torch.uint8).unsqueeze(1)
    for op in ops:
        x = _dilate(x, rects) if op == "d" else 1 - _dilate(1 - x, rects)
    return x.squeeze(1).bool()


def binary_dilation(
    masks: torch.Tensor, *, radius: int = 1, footprint: Footprint = "disk"
) -> torch.Tensor:
    r"""Binary dilation by a disk or square, by max-pooling on the masks' device.

    .. math::

        (M \oplus S)(p) = \max_{s \in S} M(p + s),

    with pixels outside the image counting as background. Equal to
    ``skimage.morphology.binary_dilation(m, footprint)`` on every mask.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        radius: footprint radius in pixels (``0`` returns a copy).
        footprint: ``"disk"`` (``skimage.morphology.disk(radius)``) or
            ``"square"`` (side ``2 * radius + 1``).

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor or ``radius`` not an int.
        ValueError: if ``masks`` is not ``(B, H, W)``, ``radius < 0`` or
            ``footprint`` is unknown.

    Example:
        >>> m = torch.zeros(1, 5, 5, dtype=torch.bool)
        >>> m[0, 2, 2] = True
        >>> binary_dilation(m, radius=1)[0].int()
        tensor([[0, 0, 0, 0, 0],
                [0, 0, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0]], dtype=torch.int32)
    """
    m = _check_morph_args(masks, radius, footprint)
    return _morph(m, radius, footprint, "d")


def binary_erosion(
    masks: torch.Tensor, *, radius: int = 1, footprint: Footprint = "disk"
) -> torch.Tensor:
    r"""Binary erosion by a disk or square, by max-pooling on the masks' device.

    .. math::

        (M \ominus S)(p) = \min_{s \in S} M(p + s) = \lnot\bigl((\lnot M) \oplus S\bigr)(p),

    with pixels outside the image ignored (they count as foreground), so a mask
    touching the border is not eaten from the border. Equal to
    ``skimage.morphology.binary_erosion(m, footprint)`` (``mode="ignore"``).

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        radius: footprint radius in pixels (``0`` returns a copy).
        footprint: ``"disk"`` or ``"square"``.

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor or ``radius`` not an int.
        ValueError: if ``masks`` is not ``(B, H, W)``, ``radius < 0`` or
            ``footprint`` is unknown.

    Example:
        >>> m = torch.ones(1, 4, 4, dtype=torch.bool)
        >>> m[0, 1, 1] = False
        >>> binary_erosion(m, radius=1, footprint="square")[0].int()
        tensor([[0, 0, 0, 1],
                [0, 0, 0, 1],
                [0, 0, 0, 1],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    m = _check_morph_args(masks, radius, footprint)
    return _morph(m, radius, footprint, "e")


def binary_opening(
    masks: torch.Tensor, *, radius: int = 1, footprint: Footprint = "disk"
) -> torch.Tensor:
    r"""Binary opening (erosion, then dilation): removes specks and thin spurs.

    .. math::

        M \circ S = (M \ominus S) \oplus S.

    Equal to ``skimage.morphology.binary_opening(m, footprint)``.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        radius: footprint radius in pixels (``0`` returns a copy).
        footprint: ``"disk"`` or ``"square"``.

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor or ``radius`` not an int.
        ValueError: if ``masks`` is not ``(B, H, W)``, ``radius < 0`` or
            ``footprint`` is unknown.

    Example:
        >>> m = torch.zeros(1, 6, 6, dtype=torch.bool)
        >>> m[0, 1:4, 1:4] = True
        >>> m[0, 5, 5] = True
        >>> binary_opening(m, radius=1, footprint="square")[0].int().sum().item()
        9
    """
    m = _check_morph_args(masks, radius, footprint)
    return _morph(m, radius, footprint, "ed")


def binary_closing(
    masks: torch.Tensor, *, radius: int = 1, footprint: Footprint = "disk"
) -> torch.Tensor:
    r"""Binary closing (dilation, then erosion): fills small gaps and notches.

    .. math::

        M \bullet S = (M \oplus S) \ominus S.

    Equal to ``skimage.morphology.binary_closing(m, footprint)``.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        radius: footprint radius in pixels (``0`` returns a copy).
        footprint: ``"disk"`` or ``"square"``.

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor or ``radius`` not an int.
        ValueError: if ``masks`` is not ``(B, H, W)``, ``radius < 0`` or
            ``footprint`` is unknown.

    Example:
        >>> m = torch.zeros(1, 5, 9, dtype=torch.bool)
        >>> m[0, 1:4, 2:4] = True
        >>> m[0, 1:4, 5:7] = True  # a one-pixel gap at column 4
        >>> binary_closing(m, radius=1, footprint="square")[0, 2].int()
        tensor([0, 0, 1, 1, 1, 1, 1, 0, 0], dtype=torch.int32)
    """
    m = _check_morph_args(masks, radius, footprint)
    return _morph(m, radius, footprint, "de")


# --------------------------------------------------------------------------- components


def _structure(connectivity: int) -> np.ndarray:
    """3-D structuring element: 2-D connectivity in each image, none across images."""
    st = np.zeros((3, 3, 3), dtype=bool)
    st[1] = ndi.generate_binary_structure(2, connectivity)
    return st


def label_stack(masks: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Label the components of every image of a ``(B, H, W)`` bool array in one call.

    Labels are unique across the whole stack (``1 .. n``); 0 is background.
    """
    labels, n = ndi.label(masks, structure=_structure(connectivity))
    return labels, int(n)


def to_numpy(masks: torch.Tensor) -> np.ndarray:
    """The CPU boundary: a bool tensor as a NumPy array (no copy on the CPU)."""
    return masks.detach().cpu().numpy()


def from_numpy(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Back across the boundary: a NumPy bool array as a tensor on ``like``'s device."""
    return torch.from_numpy(np.ascontiguousarray(arr)).to(like.device)


# pixels per block of the run search in _run_components
_RUN_BLOCK = 1 << 18


def _run_components(
    masks: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected components of a ``(B, H, W)`` bool stack, computed on horizontal runs.

    Every row is cut into runs of foreground pixels (NumPy, a few passes over
    the bool array). Runs in consecutive rows of the same image are joined
    where they overlap (columns widened by one for 8-connectivity); the
    components of that run graph come from
    :func:`scipy.sparse.csgraph.connected_components`. The graph has one node
    per run, tens of times fewer than pixels, so this is faster than labelling
    every pixel.

    Returns:
        ``(starts, lengths, component)``: flat index of each run's first pixel,
        its length, and its component id, in row-major order of the runs.
    """
    _, h, w = masks.shape
    flat = np.ascontiguousarray(masks).reshape(-1)
    # for bools, a > b is a & ~b: one contiguous pass each for run starts and ends,
    # then the first and last column of every row are set apart; blocks of whole
    # rows reuse two cache-sized buffers (fresh stack-sized arrays cost page faults)
    block = max(1, _RUN_BLOCK // w) * w
    first = np.empty(min(block, flat.size), dtype=bool)
    last = np.empty_like(first)
    found_starts, found_ends = [], []
    for a in range(0, flat.size, block):
        seg = flat[a : a + block]
        f = first[: seg.size]
        g = last[: seg.size]
        np.greater(seg[1:], seg[:-1], out=f[1:])
        f[::w] = seg[::w]
        np.greater(seg[:-1], seg[1:], out=g[:-1])
        g[w - 1 :: w] = seg[w - 1 :: w]
        found_starts.append(np.flatnonzero(f) + a)
        found_ends.append(np.flatnonzero(g) + a)
    starts = np.concatenate(found_starts)
    ends = np.concatenate(found_ends)
    n = starts.size
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    row = starts // w
    lengths = ends - starts + 1
    col0 = starts - row * w
    col1 = ends - row * w
    src = np.flatnonzero(row % h != h - 1)  # runs with a next row in the same image
    lo = col0[src]
    hi = col1[src]
    if connectivity == 2:
        lo = np.maximum(lo - 1, 0)
        hi = np.minimum(hi + 1, w - 1)
    below = (row[src] + 1) * w
    # runs of the next row that overlap [lo, hi] form a contiguous range of runs
    begin = np.searchsorted(ends, below + lo, side="left")
    stop = np.searchsorted(starts, below + hi, side="right")
    count = np.maximum(stop - begin, 0)
    total = int(count.sum())
    # CSR rows straight from the ranges: run src[k] links to runs begin[k] .. stop[k] - 1
    neighbours = np.arange(total) + np.repeat(begin - (np.cumsum(count) - count), count)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[src + 1] = count
    np.cumsum(indptr, out=indptr)
    graph = csr_array((np.ones(total, dtype=np.int8), neighbours, indptr), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return starts, lengths, component


def _run_pixels(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of all pixels of the given runs."""
    offsets = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) + np.repeat(starts - offsets, lengths)


def small_objects_removed(
    masks: torch.Tensor, min_size: int, connectivity: int, *, inplace: bool = False
) -> torch.Tensor:
    """Core of :func:`remove_small_objects` on validated bool masks ``(B, H, W)``.

    Components are found on the CPU (camseg's C kernel where :mod:`camseg._native`
    applies, else :func:`_small_objects_runs`) and the result returns to the masks'
    device: a new tensor, or ``masks`` themselves with ``inplace=True``.
    """
    work = masks.detach().cpu()
    # a copy of CPU masks unless they may be overwritten; the kernels need C order
    if not work.is_contiguous() or (work.data_ptr() == masks.data_ptr() and not inplace):
        work = work.clone(memory_format=torch.contiguous_format)
    found = _native.remove_small_objects(work, min_size, connectivity)
    if found is None and work.numel() and min_size > 1:
        _small_objects_runs(work.numpy(), min_size, connectivity)
    if not inplace:
        return work.to(masks.device)
    if work.data_ptr() != masks.data_ptr():
        masks.copy_(work)
    return masks


def _small_objects_runs(masks: np.ndarray, min_size: int, connectivity: int) -> np.ndarray:
    """NumPy/SciPy small-component removal on the run graph, in place on ``masks``."""
    starts, lengths, component = _run_components(masks, connectivity)
    if starts.size == 0:
        return masks
    sizes = np.bincount(component, weights=lengths)
    small = sizes[component] < min_size
    if small.any():
        masks.reshape(-1)[_run_pixels(starts[small], lengths[small])] = False
    return masks


def _check_connectivity(connectivity: object) -> int:
    check_one_of(connectivity, "connectivity", (1, 2))
    return 1 if connectivity == 1 else 2


def remove_small_objects(
    masks: torch.Tensor, min_size: int, *, connectivity: Connectivity = 1
) -> torch.Tensor:
    """Remove connected components smaller than ``min_size`` pixels from every mask.

    A component of exactly ``min_size`` pixels is kept. This is the classic
    ``skimage.morphology.remove_small_objects(m, min_size=min_size)``; since
    scikit-image 0.26 that reads ``max_size=min_size - 1``. Components are
    found on the CPU for all images at once, on horizontal runs of pixels
    joined row to row (in C, or with
    :func:`scipy.sparse.csgraph.connected_components` where the extension is
    not built; see the module notes), and the result returns to the masks'
    device.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        min_size: smallest component size to keep, in pixels (``<= 1`` keeps all).
        connectivity: ``1`` (4-neighbourhood) or ``2`` (8-neighbourhood).

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor or ``min_size`` not an int.
        ValueError: if ``masks`` is not ``(B, H, W)``, ``min_size < 0`` or
            ``connectivity`` is not 1 or 2.

    Example:
        >>> m = torch.zeros(1, 4, 6, dtype=torch.bool)
        >>> m[0, :2, :2] = True  # 4 pixels
        >>> m[0, 3, 5] = True  # 1 pixel
        >>> remove_small_objects(m, 2)[0].int().sum().item()
        4
    """
    m = check_masks(masks)
    check_positive_int(min_size, "min_size", minimum=0)
    c = _check_connectivity(connectivity)
    if min_size <= 1 or m.numel() == 0:
        return m.clone()
    return small_objects_removed(m, min_size, c)


def fill_holes(masks: torch.Tensor, *, connectivity: Connectivity = 1) -> torch.Tensor:
    """Fill the holes of every mask: background regions not connected to the image border.

    Equal to ``scipy.ndimage.binary_fill_holes(m, structure)`` with the
    structuring element of ``connectivity`` (which defines how *background*
    pixels connect; 1, the cross, is scipy's default). The background of all
    images is labelled in one :func:`scipy.ndimage.label` call on the CPU.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        connectivity: background connectivity, ``1`` (4-neighbourhood) or ``2``
            (8-neighbourhood).

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device.

    Raises:
        TypeError: if ``masks`` is not a bool tensor.
        ValueError: if ``masks`` is not ``(B, H, W)`` or ``connectivity`` is not 1 or 2.

    Example:
        >>> m = torch.ones(1, 5, 5, dtype=torch.bool)
        >>> m[0, 2, 2] = False  # a hole
        >>> m[0, 0, 0] = False  # a notch at the border: not a hole
        >>> fill_holes(m)[0].int().sum().item()
        24
    """
    m = check_masks(masks)
    c = _check_connectivity(connectivity)
    if m.numel() == 0:
        return m.clone()
    arr = to_numpy(m)
    labels, n = label_stack(~arr, c)
    border = np.zeros(n + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        border[edge] = True
    border[0] = True
    return from_numpy(arr | ~border[labels], m)


def keep_largest_component(masks: torch.Tensor, *, connectivity: Connectivity = 1) -> torch.Tensor:
    """Keep only the largest connected component of every mask.

    Where two components tie for the largest, the one whose first pixel comes
    first in row-major order is kept. Empty masks stay empty. Labelled on the
    CPU, all images in one :func:`scipy.ndimage.label` call.

    Args:
        masks: ``torch.bool`` masks, shape ``(B, H, W)``.
        connectivity: ``1`` (4-neighbourhood) or ``2`` (8-neighbourhood).

    Returns:
        ``torch.bool`` masks ``(B, H, W)`` on the same device, each with at
        most one component.

    Raises:
        TypeError: if ``masks`` is not a bool tensor.
        ValueError: if ``masks`` is not ``(B, H, W)`` or ``connectivity`` is not 1 or 2.

    Example:
        >>> m = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> m[0, 0, :3] = True  # 3 pixels
        >>> m[0, 3, :2] = True  # 2 pixels
        >>> keep_largest_component(m).sum(dim=(1, 2))
        tensor([3, 0])
    """
    m = check_masks(masks)
    c = _check_connectivity(connectivity)
    if m.numel() == 0:
        return m.clone()
    arr = to_numpy(m)
    labels, n = label_stack(arr, c)
    if n == 0:
        return m.clone()
    b = arr.shape[0]
    flat = labels.reshape(b, -1)
    sizes = np.bincount(flat.ravel(), minlength=n + 1)
    image_of = np.zeros(n + 1, dtype=np.int64)
    image_of[flat] = np.arange(b)[:, None]
    ids = np.arange(1, n + 1)
    # sort by image, then size descending, then label (labels follow row-major order)
    order = np.lexsort((ids, -sizes[1:], image_of[1:]))
    _, first = np.unique(image_of[1:][order], return_index=True)
    keep = np.zeros(n + 1, dtype=bool)
    keep[ids[order][first]] = True
    return from_numpy(keep[labels], m)
