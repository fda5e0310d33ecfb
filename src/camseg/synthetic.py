r"""Synthetic PCam-like H&E patches with exact tumour masks.

PatchCamelyon ships pixel masks for its training split only, and tests must not
download anything, so camseg generates its own lymph-node-like patches, in the
spirit of scikit-learn's ``make_*`` functions. The patches are rendered in
optical density with the haematoxylin and eosin stain vectors of Ruifrok and
Johnston (2001) and converted to RGB with the Beer-Lambert law:

.. math::

    I_c = 255 \exp\bigl(-(c_H\, h_c + c_E\, e_c)\bigr),

where :math:`c_H, c_E` are per-pixel stain concentrations and :math:`h, e` the
(per-patch jittered) stain vectors. Normal tissue holds small, round, dark
lymphocyte nuclei at a density that varies from patch to patch, a few large pale
nuclei, and fibrous eosin-pink stroma; tumour holds large, crowded, irregular
nuclei with a coarse chromatin texture. Both nucleus kinds draw their stain from
overlapping ranges, so no single pixel colour tells tumour from normal tissue:
the difference is morphology (size, crowding, shape). Optional fat/background
holes and per-patch stain variation make the task less trivial.

Labels follow the PatchCamelyon rule: a patch is positive when any tumour pixel
lies in the centred ``label_region`` square (32×32 of 96×96 by default). Some
negatives hold tumour outside that square only, as real PCam negatives do, and
about half of the positives hold tumour that extends beyond it.

The generator is vectorised in torch and built for speed (thousands of patches
per second on one CPU core; ``benchmarks/bench_synthetic.py``): the smooth fields,
the nuclei and the colours are made at half resolution, with interpolation and
blurring as small batched matmuls; the exact masks are one batched matmul at full
resolution; the image reaches full resolution through one bilinear upsampling of
uint8 images, after which a few integer passes sharpen the nuclear outlines and
add the grain. It is deterministic for a seed: patches are made in fixed chunks
of 64 whose random streams depend only on ``seed`` and the chunk index, so
``make_patches(n, seed=s)[:k]`` equals ``make_patches(k, seed=s)``.

References:
    Veeling et al., "Rotation Equivariant CNNs for Digital Pathology", MICCAI 2018
    (PatchCamelyon). Ruifrok and Johnston, "Quantification of histochemical staining
    by color deconvolution", Anal. Quant. Cytol. Histol. 2001 (stain vectors).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from camseg._checks import (
    check_nonnegative,
    check_positive_int,
    check_probability,
    check_tensor,
    describe,
)

__all__ = ["SyntheticPatches", "label_region_mask", "make_patches", "to_tensor_images"]

_CHUNK = 64
# Optical-density stain vectors (R, G, B) of haematoxylin and eosin (Ruifrok & Johnston 2001).
_H_VEC = (0.650, 0.704, 0.286)
_E_VEC = (0.072, 0.990, 0.105)


class SyntheticPatches(NamedTuple):
    """Output of :func:`make_patches`: images, labels and masks.

    Attributes:
        images: ``torch.uint8`` RGB patches of shape ``(N, H, W, 3)`` (channels last,
            as in the PatchCamelyon files). Convert with :func:`to_tensor_images`.
        labels: ``torch.int64`` labels of shape ``(N,)``: 1 when any tumour pixel lies
            in the centre label region, else 0.
        masks: ``torch.bool`` tumour masks of shape ``(N, H, W)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def label_region_mask(*, size: int = 96, label_region: int = 32) -> torch.Tensor:
    """Boolean mask of the centred label region of a square patch.

    Args:
        size: side of the patch in pixels.
        label_region: side of the centred square in pixels; ``size - label_region``
            must be even so that the square is exactly centred.

    Returns:
        A ``torch.bool`` tensor of shape ``(size, size)``, True inside the square.

    Raises:
        TypeError: if an argument is not an int.
        ValueError: if ``label_region`` exceeds ``size`` or cannot be centred.

    Example:
        >>> m = label_region_mask(size=6, label_region=2)
        >>> m.nonzero().tolist()
        [[2, 2], [2, 3], [3, 2], [3, 3]]
    """
    check_positive_int(size, "size")
    _check_label_region(label_region, size)
    start = (size - label_region) // 2
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[start : start + label_region, start : start + label_region] = True
    return mask


def to_tensor_images(images: torch.Tensor) -> torch.Tensor:
    """Convert ``uint8`` channels-last patches to float ``(N, 3, H, W)`` in ``[0, 1]``.

    Args:
        images: ``torch.uint8`` tensor of shape ``(N, H, W, 3)``, e.g. the ``images``
            of :func:`make_patches` or a PatchCamelyon ``x`` array.

    Returns:
        A contiguous ``float32`` tensor of shape ``(N, 3, H, W)`` with values in
        ``[0, 1]``, on the input's device.

    Raises:
        TypeError: if ``images`` is not a uint8 tensor.
        ValueError: if ``images`` is not of shape ``(N, H, W, 3)``.

    Example:
        >>> x = torch.full((2, 4, 5, 3), 255, dtype=torch.uint8)
        >>> t = to_tensor_images(x)
        >>> tuple(t.shape), t.dtype, float(t.max())
        ((2, 3, 4, 5), torch.float32, 1.0)
    """
    check_tensor(images, "images")
    if images.dtype != torch.uint8:
        raise TypeError(f"Expected `images` to be a torch.uint8 tensor, but got {images.dtype}.")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "Expected `images` to be a tensor of shape (N, H, W, 3), "
            f"but got shape {tuple(images.shape)}."
        )
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def make_patches(
    n: int,
    *,
    size: int = 96,
    seed: int = 0,
    label_region: int = 32,
    tumor_fraction: float = 0.5,
    peripheral_fraction: float = 0.3,
    stain_jitter: float = 0.1,
    background: float = 0.25,
    nuclear_contrast: float = 1.0,
) -> SyntheticPatches:
    """Generate H&E-like lymph-node patches with exact tumour masks.

    Each patch is one of three kinds: a positive (a tumour blob that covers at
    least one pixel of the centre label region; its radius is drawn so that about
    half of the blobs extend beyond that region), a negative with tumour outside
    the label region only (``peripheral_fraction`` of the negatives), or a clean
    negative. Tumour blobs are irregular ellipses; their nuclei are large,
    crowded and irregular. Labels are computed from the masks by the PCam rule, so
    they are exact by construction.

    Args:
        n: number of patches.
        size: side of each square patch in pixels.
        seed: seed of the random streams; equal seeds give equal patches.
        label_region: side of the centred square that decides the label (pixels);
            ``size - label_region`` must be even.
        tumor_fraction: expected fraction of positive patches.
        peripheral_fraction: expected fraction of the negatives that hold tumour
            outside the label region.
        stain_jitter: strength of the per-patch stain variation (standard
            deviation of the log stain intensities; 0 disables it).
        background: probability that a patch holds fat/background holes (white
            areas in normal tissue).
        nuclear_contrast: how far tumor nuclei differ from normal ones (size,
            crowding, outline irregularity and chromatin texture): 1 is the
            default appearance, smaller values make tumor harder to tell from
            normal tissue (0: tumor nuclei as large, sparse and regular as normal
            nuclei, with only the cytoplasm and the stain left to tell), larger
            values exaggerate the difference (at most 2).

    Returns:
        :class:`SyntheticPatches` ``(images, labels, masks)``: ``torch.uint8`` images
        ``(n, size, size, 3)``, ``torch.int64`` labels ``(n,)`` and ``torch.bool``
        masks ``(n, size, size)``, on the CPU.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if ``n < 0``, ``size < 16``, the label region does not fit or
            cannot be centred, or a fraction lies outside ``[0, 1]``.

    Example:
        >>> images, labels, masks = make_patches(4, seed=0)
        >>> tuple(images.shape), images.dtype, tuple(masks.shape), labels.dtype
        ((4, 96, 96, 3), torch.uint8, (4, 96, 96), torch.int64)
        >>> centre = label_region_mask(size=96, label_region=32)
        >>> bool((labels == (masks & centre).flatten(1).any(1)).all())
        True

    References:
        Veeling et al., "Rotation Equivariant CNNs for Digital Pathology", MICCAI 2018.
    """
    check_positive_int(n, "n", minimum=0)
    check_positive_int(size, "size", minimum=16)
    check_positive_int(seed, "seed", minimum=0)
    _check_label_region(label_region, size)
    check_probability(tumor_fraction, "tumor_fraction")
    check_probability(peripheral_fraction, "peripheral_fraction")
    check_nonnegative(stain_jitter, "stain_jitter")
    check_probability(background, "background")
    check_nonnegative(nuclear_contrast, "nuclear_contrast")
    if not nuclear_contrast <= 2.0:
        raise ValueError(
            f"Expected `nuclear_contrast` to lie in [0, 2], but got {nuclear_contrast!r}."
        )

    images = torch.empty(n, size, size, 3, dtype=torch.uint8)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    scratch = _Scratch()
    for chunk in range((n + _CHUNK - 1) // _CHUNK):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + chunk) % (2**63))
        part = slice(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK))
        _render_chunk(
            gen,
            size=size,
            label_region=label_region,
            tumor_fraction=tumor_fraction,
            peripheral_fraction=peripheral_fraction,
            stain_jitter=stain_jitter,
            background=background,
            nuclear_contrast=float(nuclear_contrast),
            images_out=images[part],
            masks_out=masks[part],
            scratch=scratch,
        )
    centre = label_region_mask(size=size, label_region=label_region)
    labels = (masks & centre).flatten(1).any(1).long()
    return SyntheticPatches(images, labels, masks)


# --------------------------------------------------------------------------- internals


def _check_label_region(label_region: int, size: int) -> None:
    check_positive_int(label_region, "label_region")
    if label_region > size or (size - label_region) % 2:
        raise ValueError(
            f"Expected `label_region` to be at most `size` ({size}) and to differ from it "
            f"by an even number so that it can be centred, but got {describe(label_region)}."
        )


class _Grids(NamedTuple):
    """Constant matrices of one patch size (cached): interpolation and blur as matmuls."""

    low: int  # side of the half-resolution grid of the smooth fields and nuclei
    coords: torch.Tensor  # (size,) full-resolution pixel coordinates
    coords_low: torch.Tensor  # (low,) centres of the half-resolution pixels, full-res units
    edge: torch.Tensor  # (size, K) hat functions of the blob-boundary lattices
    edge_low: torch.Tensor  # (low, K) the same at the half-resolution pixel centres
    coarse: torch.Tensor  # (5, low) hat functions of the coarse noise lattice, transposed
    fine: torch.Tensor  # (cells, low) hat functions of the fine noise lattice, transposed
    blur: torch.Tensor  # (3, low, low) Gaussian blur matrices (peak one), one per nucleus kind


_EDGE_CELLS = 5  # coarse lattice of the blob boundary; the fine one has max(6, size // 5)


def _hat(coords: torch.Tensor, cells: int, extent: int) -> torch.Tensor:
    """Linear-interpolation weights (len(coords), cells) of a lattice spanning [0, extent - 1].

    ``W @ grid @ W.T`` is the bilinear (``align_corners=True``) upsampling of a
    ``cells``-square lattice, evaluated at ``coords`` on both axes.
    """
    p = (coords * ((cells - 1) / (extent - 1))).clamp(0, cells - 1)
    return torch.relu(1 - (p[:, None] - torch.arange(cells, dtype=torch.float32)).abs())


@functools.lru_cache(maxsize=8)
def _grids(size: int) -> _Grids:
    low = (size + 1) // 2
    scale = size / 96.0
    coords = torch.arange(size, dtype=torch.float32)
    coords_low = (torch.arange(low, dtype=torch.float32) + 0.5) * (size / low) - 0.5
    cells = (_EDGE_CELLS, max(6, size // 5))
    edge = torch.cat([_hat(coords, c, size) for c in cells], 1)
    edge_low = torch.cat([_hat(coords_low, c, size) for c in cells], 1)
    grid = torch.arange(low, dtype=torch.float32)
    d2 = (grid[:, None] - grid[None, :]) ** 2
    blur = torch.stack([torch.exp(-d2 / (2 * (s * scale) ** 2)) for s in (0.8, 1.4, 1.6)])
    coarse = _hat(grid, 5, low).T.contiguous()
    fine = _hat(grid, max(6, size // 4), low).T.contiguous()
    return _Grids(low, coords, coords_low, edge, edge_low, coarse, fine, blur)


class _Scratch:
    """Scratch tensors reused by the chunks of one call.

    Fresh multi-megabyte tensors per chunk would be new memory mappings, and the
    page faults of their first touch cost about as much as the arithmetic.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def __call__(
        self,
        name: str,
        *shape: int,
        dtype: torch.dtype = torch.float32,
        init: Callable[[torch.Tensor], object] | None = None,
    ) -> torch.Tensor:
        """The tensor called ``name``; ``init`` fills the parts that stay constant."""
        t = self._tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype:
            t = self._tensors[name] = torch.empty(shape, dtype=dtype)
            if init is not None:
                init(t)
        return t


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=gen) * (high - low) + low


def _random_words(gen: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """Fill the int64 tensor ``out`` with random bits and return it.

    Viewed as int16 or int8, one 64-bit draw of the generator feeds 4 or 8
    uniform integers: several times cheaper than :func:`torch.rand` for noise
    that needs no more resolution. (The bytes are read in the machine's byte order.)
    """
    return out.random_(-(2**63), None, generator=gen)


def _lattice_noise(
    gen: torch.Generator, count: int, hat_t: torch.Tensor, scratch: _Scratch, name: str
) -> torch.Tensor:
    """``count`` fields of smooth value noise in [-1, 1], shape (count, L, L).

    Bilinear upsampling of a random lattice G as two matmuls, ``(G W^T)^T W^T``
    (that is the transpose of ``W G W^T``, which is noise just as good).
    """
    cells, low = hat_t.shape
    size = count * cells * cells
    words = _random_words(gen, scratch(name + "/words", -(-size // 4), dtype=torch.int64))
    grid = scratch(name + "/grid", count * cells, cells)
    grid.view(-1).copy_(words.view(torch.int16)[:size]).mul_(1 / 32768)  # uniform in [-1, 1)
    half = torch.mm(grid, hat_t).view(count, cells, low).transpose(1, 2)  # (count, L, cells)
    half = scratch(name + "/half", count, low, cells).copy_(half)
    out = scratch(name, count, low, low)
    torch.mm(half.view(count * low, cells), hat_t, out=out.view(count * low, low))
    return out


def _render_chunk(
    gen: torch.Generator,
    *,
    size: int,
    label_region: int,
    tumor_fraction: float,
    peripheral_fraction: float,
    stain_jitter: float,
    background: float,
    nuclear_contrast: float,
    images_out: torch.Tensor,
    masks_out: torch.Tensor,
    scratch: _Scratch,
) -> None:
    """Render one chunk of ``_CHUNK`` patches; the first ``len(images_out)`` are written out.

    Everything but the masks and the final image is made at half resolution, with
    interpolation and blurring as small matmuls: the tissue colour, the nuclei's
    colour and the nuclear height field. Full resolution sees a batched matmul and
    a comparison for the masks, one bilinear upsampling of channels-last uint8
    images, and a few int16 passes that sharpen the nuclear outlines, blend the
    nuclei over the tissue and add the grain. Buffers come from ``scratch`` and
    are reused between chunks.
    """
    n = _CHUNK
    grids = _grids(size)
    low = grids.low
    s = float(size)
    scale = s / 96.0  # geometry is designed at 96 px and scaled to other sizes
    amp = 0.3  # boundary irregularity of the tumour blobs
    start = (size - label_region) // 2
    stop = start + label_region - 1  # last pixel index inside the label region

    # --- tumour blobs: positives, peripheral negatives, clean negatives
    positive = torch.rand(n, generator=gen) < tumor_fraction
    peripheral = (~positive) & (torch.rand(n, generator=gen) < peripheral_fraction)
    aniso = _uniform(gen, (n,), 0.75, 1.33)
    theta = _uniform(gen, (n,), 0.0, math.pi)
    # bound of extent / radius (the boundary term scales the radius by < 1 + amp)
    stretch = torch.maximum(aniso, 1 / aniso) * (1 + amp)

    # positives: centred on a pixel of the label region. Half are large and extend
    # beyond it; the small ones are centred so that they stay inside it if they can.
    big = torch.rand(n, generator=gen) < 0.5
    r_pos = scale * torch.where(
        big, _uniform(gen, (n,), 18.0, 60.0), _uniform(gen, (n,), 9.0, 13.0)
    )
    margin = torch.where(big, 0.0, torch.clamp(torch.ceil(r_pos * stretch), max=label_region // 2))
    lo_c = start + margin
    span = (stop - margin) - lo_c + 1
    pc = (lo_c[:, None] + torch.floor(torch.rand((n, 2), generator=gen) * span[:, None])).clamp(
        start, stop
    )
    # peripheral negatives: centred anywhere in and around the patch, with a radius
    # bounded so that the blob cannot reach the label region
    qc = _uniform(gen, (n, 2), -0.15 * s, 1.15 * s)
    gap = torch.clamp(torch.stack([start - qc, qc - stop], -1), min=0).amax(-1)  # (n, 2)
    r_max = (gap.norm(dim=-1) - 0.5) / stretch
    r_per = torch.minimum(scale * _uniform(gen, (n,), 7.0, 30.0), r_max)
    peripheral = peripheral & (r_per >= 3.0 * scale)
    centre = torch.where(positive[:, None], pc, qc)
    radius = torch.where(positive, r_pos, r_per)
    has_tumour = positive | peripheral

    # blob = irregular ellipse: q(y, x) + 2 amp b(y, x) < 1, where q is the squared
    # rotated, scaled offset from the centre and b in [-1, 1] smooth boundary noise
    # (0.6 coarse + 0.4 fine lattice). Both are sums of outer products of per-row
    # and per-column vectors, so the level-set function is one batched matmul,
    # evaluated at full resolution for the exact masks and at the half-resolution
    # pixel centres for the rendering. A last term pushes it above 1 in patches
    # without tumour.
    cos, sin = torch.cos(theta), torch.sin(theta)
    ia2 = (radius * aniso) ** -2
    ib2 = (aniso / radius) ** 2
    quad = torch.stack(
        [sin**2 * ia2 + cos**2 * ib2, cos**2 * ia2 + sin**2 * ib2, 2 * cos * sin * (ia2 - ib2)], 1
    )  # (n, 3): coefficients of dy^2, dx^2, dx dy
    cells = _EDGE_CELLS
    fine_cells = grids.edge.shape[1] - cells
    coarse_lat = _uniform(gen, (n, cells, cells), -1.2 * amp, 1.2 * amp)  # 2 amp * 0.6
    fine_lat = _uniform(gen, (n, fine_cells, fine_cells), -0.8 * amp, 0.8 * amp)  # 2 amp * 0.4
    absent = (~has_tumour).float().mul_(1e6)[:, None]
    k = 4 + grids.edge.shape[1]

    def level_set(coords: torch.Tensor, edge: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        def init_rows(t: torch.Tensor) -> None:
            t[..., 1] = 1

        def init_cols(t: torch.Tensor) -> None:
            t[..., 0] = 1
            t[..., 3] = 1
            t[..., 4:] = edge

        p = len(coords)
        rows = scratch(f"rows{p}", n, p, k, init=init_rows)
        cols = scratch(f"cols{p}", n, p, k, init=init_cols)
        dy = coords - centre[:, :1]  # (n, p)
        dx = coords - centre[:, 1:]
        torch.mul(dy.square(), quad[:, :1], out=rows[..., 0])
        torch.mul(dy, quad[:, 2:], out=rows[..., 2])
        rows[..., 3] = absent
        rows[..., 4 : 4 + cells] = torch.matmul(edge[:, :cells], coarse_lat)
        rows[..., 4 + cells :] = torch.matmul(edge[:, cells:], fine_lat)
        torch.mul(dx.square(), quad[:, 1:2], out=cols[..., 1])
        cols[..., 2] = dx
        return torch.bmm(rows, cols.transpose(1, 2), out=out)

    level = level_set(grids.coords, grids.edge, scratch("level", n, size, size))
    torch.lt(level[: masks_out.shape[0]], 1, out=masks_out)
    level_low = level_set(grids.coords_low, grids.edge_low, scratch("level_low", n, low, low))
    tum_b = torch.lt(level_low, 1, out=scratch("tum_b", n, 1, low, low, dtype=torch.bool)[:, 0])
    tum = scratch("tum", n, 1, low, low).copy_(tum_b[:, None])  # (n, 1, L, L) in {0, 1}

    # smooth noise at half resolution: 0 fibre warp, 1 fibre phase, 2 fat holes,
    # 3 background haematoxylin; 0 stroma/cytoplasm texture, 1 nuclear shape, 2 chromatin
    coarse = _lattice_noise(gen, n * 4, grids.coarse, scratch, "coarse").view(n, 4, low, low)
    fine = _lattice_noise(gen, n * 3, grids.fine, scratch, "fine").view(n, 3, low, low)

    # --- nuclei: impulses blurred into bumps. Channels: lymphocytes, large pale
    # nuclei, tumour nuclei. Each is a height field whose 0.5 level set is the outline.
    # One uniform draw u per pixel: outside tumour, u in [0, d0) places a lymphocyte
    # and u in [d0, d0 + d1) a pale nucleus; inside, u in [0, d2) a tumour nucleus;
    # where u falls in its interval gives the impulse's height.
    density = (
        torch.stack(
            [
                _uniform(gen, (n,), 0.01, 0.1),
                torch.full((n,), 0.005),
                _uniform(gen, (n,), 0.025, 0.04),
            ],
            1,
        )
        / scale**2
    )  # (n, 3)
    c = nuclear_contrast
    if c != 1.0:  # tumor nuclei crowd towards (c > 1) or away from (c < 1) the default
        density[:, 2] *= 0.5 + 0.5 * c
    offset = torch.zeros_like(density)
    offset[:, 1] = density[:, 0]
    # u = (w + 2^15) / 2^16 for a random int16 w; v = (u - offset) / density, and
    # the tumour term moves v out of [0, 1) for kinds outside their region
    words = _random_words(gen, scratch("words16", -(-n * low * low // 4), dtype=torch.int64))
    w = scratch("w", n, 1, low, low).copy_(words.view(torch.int16)[: n * low * low].view_as(tum))
    v_scale = (1 / (65536 * density)).view(n, 3, 1, 1)
    v_bias = ((0.5 - offset) / density + torch.tensor([0.0, 0.0, 2.0])).view(n, 3, 1, 1)
    v = torch.addcmul(v_bias, w, v_scale, out=scratch("v", n, 3, low, low))
    v.addcmul_(tum, torch.tensor([2.0, 2.0, -2.0]).view(1, 3, 1, 1))
    hit = torch.lt(
        torch.sub(v, 0.5, out=scratch("v_c", n, 3, low, low)).abs_(),
        0.5,
        out=scratch("hit", n, 3, low, low, dtype=torch.bool),
    )
    lo = torch.tensor([1.0, 0.9, 1.0]).view(1, 3, 1, 1)
    hi = torch.tensor([2.0, 1.6, 1.9 if c == 1.0 else 1.3 + 0.6 * c]).view(1, 3, 1, 1)
    imp = torch.addcmul(lo, v, hi - lo, out=v).mul_(hit)
    # every positive gets a tumour nucleus at its blob's centre: no invisible positives
    cy, cx = (centre / (s / low)).long().clamp(0, low - 1).unbind(1)
    idx_n = torch.arange(n)
    imp[idx_n, 2, cy, cx] = torch.where(positive, 1.6, imp[idx_n, 2, cy, cx])
    half = torch.matmul(grids.blur, imp, out=scratch("blur", n, 3, low, low))
    field = torch.matmul(half, grids.blur, out=scratch("field", n, 3, low, low))  # separable
    irregular = torch.tensor([0.08, 0.1, 0.35 if c == 1.0 else 0.08 + 0.27 * c]).view(1, 3, 1, 1)
    field.mul_(torch.addcmul(torch.ones(()), irregular, fine[:, 1:2], out=half))
    h_nuc = torch.stack(
        [
            _uniform(gen, (n,), 0.85, 1.45),
            _uniform(gen, (n,), 0.55, 1.0),
            _uniform(gen, (n,), 0.8, 1.4),
        ],
        1,
    )  # (n, 3)
    # the channel with the highest field colours the pixel; tumour nuclei get a
    # coarse chromatin texture
    # (max with indices over a dim of 3 is slow; amax and comparisons are not)
    top = torch.amax(field, 1, keepdim=True, out=scratch("top", n, 1, low, low))
    tumour_top = torch.eq(field[:, 2:3], top, out=scratch("is2", n, 1, low, low, dtype=torch.bool))
    pale_top = torch.eq(field[:, 1:2], top, out=scratch("is1", n, 1, low, low, dtype=torch.bool))
    h_nuc = h_nuc.view(n, 3, 1, 1)
    stain = torch.where(pale_top, h_nuc[:, 1:2], h_nuc[:, 0:1])
    stain = torch.where(tumour_top, h_nuc[:, 2:3], stain)
    stain.addcmul_(stain, fine[:, 2:3].mul(0.3 * c).mul_(tumour_top))

    # --- stroma and cytoplasm: eosin with fibrous texture, faint haematoxylin
    freq = _uniform(gen, (n, 1, 1, 1), 2.0, 5.0)
    e_amp = _uniform(gen, (n, 1, 1, 1), 0.25, 0.55)
    fibre = torch.addcmul(3 * coarse[:, 1:2], coarse[:, 0:1], freq * math.pi).sin_()
    # e_stroma = e_amp (0.7 + 0.3 (0.5 + 0.5 fibre) + 0.1 texture)
    e_stroma = torch.addcmul(0.85 * e_amp, fibre, 0.15 * e_amp).addcmul_(fine[:, 0:1], 0.1 * e_amp)
    c_amp = _uniform(gen, (n, 1, 1, 1), 0.25, 0.5)
    e_cyto = torch.addcmul(c_amp, fine[:, 0:1], 0.2 * c_amp)
    h_amp = _uniform(gen, (n, 1, 1, 1), 0.04, 0.16)
    h_tissue = torch.addcmul(h_amp, coarse[:, 3:4], 0.5 * h_amp)
    h_tissue.addcmul_(tum, _uniform(gen, (n, 1, 1, 1), 0.0, 0.05))
    e_tissue = torch.lerp(e_stroma, e_cyto, tum)

    # --- fat / background holes in normal tissue: keep = 1 - 0.93 hole
    holes = torch.rand((n, 1, 1, 1), generator=gen) < background
    hole_thr = _uniform(gen, (n, 1, 1, 1), 0.25, 0.6)
    keep = torch.sigmoid_((coarse[:, 2:3] - hole_thr).mul_(25))
    keep.mul_(1 - tum).mul_(holes * -0.93).add_(1)

    # --- colours at half resolution: the tissue alone and the nuclei alone
    # (patch, (haematoxylin, eosin, 1), (tissue, nuclei), L, L)
    conc = scratch("conc", n, 3, 2, low, low, init=lambda t: t[:, 2].fill_(1))
    torch.mul(h_tissue, keep, out=conc[:, 0, 0:1])
    conc[:, 0, 1:2] = stain
    torch.mul(e_tissue, keep, out=conc[:, 1, 0:1])
    torch.mul(conc[:, 1, 0:1], 0.5, out=conc[:, 1, 1:2])

    # --- stain variation and Beer-Lambert rendering
    h_vec = torch.tensor(_H_VEC) + stain_jitter * 0.3 * torch.randn((n, 3), generator=gen)
    e_vec = torch.tensor(_E_VEC) + stain_jitter * 0.3 * torch.randn((n, 3), generator=gen)
    gains = torch.exp(stain_jitter * torch.randn((n, 2), generator=gen))
    h_vec = h_vec.clamp_min(0.02)
    e_vec = e_vec.clamp_min(0.02)
    h_vec = h_vec / h_vec.norm(dim=1, keepdim=True) * gains[:, :1]
    e_vec = e_vec / e_vec.norm(dim=1, keepdim=True) * gains[:, 1:]
    # w exp(-od) = exp(log(w) - od): one batched matmul, one exp. The white w is
    # 255 - 3.5: the grain added below is 0-7 grey levels.
    mix = torch.stack([-h_vec, -e_vec, torch.full((n, 3), math.log(255.0 - 3.5))], 2)
    rgb = torch.bmm(mix, conc.view(n, 3, -1), out=scratch("rgb", n, 3, 2 * low * low)).exp_()
    # channels-last images: tissue, nuclei, and the nuclear field quantised (96 per
    # unit height: 48 at the outline) in three equal channels; to uint8 through
    # int16, the fast conversions
    small32 = scratch("small32", 3, n, low, low, 3)
    small32[:2].permute(1, 4, 0, 2, 3).copy_(rgb.view(n, 3, 2, low, low))
    field_q = top.mul_(keep).mul_(96.0).clamp_(max=255.0).view(n, low, low, 1)
    small32[2].copy_(field_q.expand(n, low, low, 3))
    small16 = scratch("small16", 3 * n, low, low, 3, dtype=torch.int16)
    small16.copy_(small32.view(3 * n, low, low, 3))
    small = scratch("small", 3 * n, low, low, 3, dtype=torch.uint8).copy_(small16)

    # --- to full resolution: one bilinear upsampling of channels-last uint8 (a fast
    # path in torch), then a few int16 passes: nuclear outlines sharpened from the
    # field (the 0.5 level set, a ramp over 1/3 unit of height), nuclei blended
    # over tissue, grain of 0-7 grey levels per pixel and channel
    big = scratch("big", 3 * n, size, size, 3, dtype=torch.uint8)
    torch.ops.aten.upsample_bilinear2d.out(
        small.permute(0, 3, 1, 2),
        [size, size],
        False,
        None,
        None,
        out=big.permute(0, 3, 1, 2),
    )
    big = big.view(3, n, size, size, 3)
    take = images_out.shape[0]
    tissue = scratch("tissue", n, size, size, 3, dtype=torch.int16).copy_(big[0])
    nuclei = scratch("nuclei", n, size, size, 3, dtype=torch.int16).copy_(big[1])
    alpha = scratch("alpha", n, size, size, 3, dtype=torch.int16).copy_(big[2])
    alpha.sub_(32).mul_(4).clamp_(0, 128)  # opacity in 1/128
    nuclei.sub_(tissue).mul_(alpha).bitwise_right_shift_(7)
    tissue.add_(nuclei)
    # grain: one random byte gives two values, its low and its high 3 bits
    first = -(-n * size * size * 3 // 2)
    grain = _random_words(gen, scratch("words8", -(-first // 8), dtype=torch.int64))
    grain = grain.view(torch.uint8)[:first]
    flat = tissue.view(-1)
    flat[:first].add_(torch.bitwise_and(grain, 7, out=scratch("grain", first, dtype=torch.uint8)))
    rest = flat[first:]
    rest.add_(grain[: len(rest)].bitwise_right_shift_(5))
    images_out.copy_(tissue[:take].clamp_(0, 255))
