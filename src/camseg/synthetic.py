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

The generator is vectorised in torch (a handful of batched convolutions and
interpolations per chunk of patches) and deterministic for a seed: patches are
made in fixed chunks of 64 whose random streams depend only on ``seed`` and the
chunk index, so ``make_patches(n, seed=s)[:k]`` equals ``make_patches(k, seed=s)``.

References:
    Veeling et al., "Rotation Equivariant CNNs for Digital Pathology", MICCAI 2018
    (PatchCamelyon). Ruifrok and Johnston, "Quantification of histochemical staining
    by color deconvolution", Anal. Quant. Cytol. Histol. 2001 (stain vectors).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

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


def label_region_mask(size: int = 96, label_region: int = 32) -> torch.Tensor:
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
        >>> m = label_region_mask(6, 2)
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
    tumour_fraction: float = 0.5,
    peripheral_fraction: float = 0.3,
    stain_jitter: float = 0.1,
    background: float = 0.25,
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
        tumour_fraction: expected fraction of positive patches.
        peripheral_fraction: expected fraction of the negatives that hold tumour
            outside the label region.
        stain_jitter: strength of the per-patch stain variation (standard
            deviation of the log stain intensities; 0 disables it).
        background: probability that a patch holds fat/background holes (white
            areas in normal tissue).

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
        >>> centre = label_region_mask(96, 32)
        >>> bool((labels == (masks & centre).flatten(1).any(1)).all())
        True

    References:
        Veeling et al., "Rotation Equivariant CNNs for Digital Pathology", MICCAI 2018.
    """
    check_positive_int(n, "n", minimum=0)
    check_positive_int(size, "size", minimum=16)
    check_positive_int(seed, "seed", minimum=0)
    _check_label_region(label_region, size)
    check_probability(tumour_fraction, "tumour_fraction")
    check_probability(peripheral_fraction, "peripheral_fraction")
    check_nonnegative(stain_jitter, "stain_jitter")
    check_probability(background, "background")

    images, masks = [], []
    for chunk in range((n + _CHUNK - 1) // _CHUNK):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + chunk) % (2**63))
        img, msk = _render_chunk(
            gen,
            size=size,
            label_region=label_region,
            tumour_fraction=tumour_fraction,
            peripheral_fraction=peripheral_fraction,
            stain_jitter=stain_jitter,
            background=background,
        )
        take = min(_CHUNK, n - chunk * _CHUNK)
        images.append(img[:take])
        masks.append(msk[:take])
    if n == 0:
        empty = torch.zeros(0, size, size, dtype=torch.bool)
        return SyntheticPatches(
            torch.zeros(0, size, size, 3, dtype=torch.uint8),
            torch.zeros(0, dtype=torch.int64),
            empty,
        )
    all_masks = torch.cat(masks)
    centre = label_region_mask(size, label_region)
    labels = (all_masks & centre).flatten(1).any(1).long()
    return SyntheticPatches(torch.cat(images), labels, all_masks)


# --------------------------------------------------------------------------- internals


def _check_label_region(label_region: int, size: int) -> None:
    check_positive_int(label_region, "label_region")
    if label_region > size or (size - label_region) % 2:
        raise ValueError(
            f"Expected `label_region` to be at most `size` ({size}) and to differ from it "
            f"by an even number so that it can be centred, but got {describe(label_region)}."
        )


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=gen) * (high - low) + low


def _noise(gen: torch.Generator, n: int, channels: int, cells: int, size: int) -> torch.Tensor:
    """Smooth value noise in [-1, 1], shape (n, channels, size, size): an upsampled lattice."""
    grid = torch.rand((n, channels, cells, cells), generator=gen) * 2 - 1
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)


def _blur(field: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """Separable Gaussian blur of each channel with its own sigma (peak-one kernels).

    An impulse of height ``a`` becomes a bump of peak ``a``, so a threshold at 0.5
    turns it into a disc whose radius grows with ``a``.
    """
    radius = max(1, math.ceil(3 * max(sigmas)))
    t = torch.arange(-radius, radius + 1, dtype=field.dtype)
    k = torch.stack([torch.exp(-(t**2) / (2 * s**2)) for s in sigmas])  # (C, taps)
    c = len(sigmas)
    x = F.conv2d(field, k.view(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(x, k.view(c, 1, -1, 1), padding=(radius, 0), groups=c)


def _render_chunk(
    gen: torch.Generator,
    *,
    size: int,
    label_region: int,
    tumour_fraction: float,
    peripheral_fraction: float,
    stain_jitter: float,
    background: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    n = _CHUNK
    s = float(size)
    scale = s / 96.0  # geometry is designed at 96 px and scaled to other sizes
    amp = 0.3  # boundary irregularity of the tumour blobs
    start = (size - label_region) // 2
    stop = start + label_region - 1  # last pixel index inside the label region
    low = (size + 1) // 2  # smooth fields and nuclei are made at half resolution

    # --- tumour blobs: positives, peripheral negatives, clean negatives
    positive = torch.rand(n, generator=gen) < tumour_fraction
    peripheral = (~positive) & (torch.rand(n, generator=gen) < peripheral_fraction)
    aniso = _uniform(gen, (n,), 0.75, 1.33)
    theta = _uniform(gen, (n,), 0.0, math.pi)
    stretch = torch.maximum(aniso, 1 / aniso) * (1 + amp)  # bound of extent / radius

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

    # blob = irregular ellipse: |rotated, scaled offset| < 1 - amp * boundary noise
    boundary = F.interpolate(
        0.6 * _noise(gen, n, 1, 5, low) + 0.4 * _noise(gen, n, 1, max(6, size // 5), low),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
    )[:, 0]
    coords = torch.arange(size, dtype=torch.float32)
    dy = coords.view(1, -1, 1) - centre[:, 0].view(-1, 1, 1)
    dx = coords.view(1, 1, -1) - centre[:, 1].view(-1, 1, 1)
    cos, sin = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    uu = (dx * cos + dy * sin) / (radius * aniso).view(-1, 1, 1)
    vv = (dy * cos - dx * sin) * (aniso / radius).view(-1, 1, 1)
    masks = (uu**2 + vv**2 < (1.0 - amp * boundary) ** 2) & has_tumour.view(-1, 1, 1)
    tum = F.interpolate(masks[:, None].float(), size=(low, low), mode="area")  # (n, 1, L, L)

    # smooth noise at half resolution: 0 fibre warp, 1 fibre phase, 2 fat holes,
    # 3 background haematoxylin, 4 stroma/cytoplasm texture, 5 nuclear shape, 6 chromatin
    coarse = _noise(gen, n, 4, 5, low)
    fine = _noise(gen, n, 3, max(6, size // 4), low)

    # --- nuclei: impulses blurred into bumps. Channels: lymphocytes, large pale
    # nuclei, tumour nuclei. Each is a height field whose 0.5 level set is the outline.
    density = (
        torch.stack(
            [
                _uniform(gen, (n,), 0.01, 0.1),
                torch.full((n,), 0.005),
                _uniform(gen, (n,), 0.025, 0.04),
            ],
            1,
        ).view(n, 3, 1, 1)
        / scale**2
    )
    lo = torch.tensor([1.0, 0.9, 1.0]).view(1, 3, 1, 1)
    hi = torch.tensor([2.0, 1.6, 1.9]).view(1, 3, 1, 1)
    u = torch.rand((n, 3, low, low), generator=gen)
    # one uniform draw: below `density` it places an impulse, and where it falls in
    # [0, density) gives the impulse's height
    imp = torch.where(u < density, lo + (hi - lo) * (u / density), torch.zeros(()))
    inside = torch.cat([1 - tum, 1 - tum, tum], 1) > 0.5
    imp = imp * inside
    # every positive gets a tumour nucleus at its blob's centre: no invisible positives
    cy, cx = (centre / (s / low)).long().clamp(0, low - 1).unbind(1)
    imp[torch.arange(n), 2, cy, cx] = torch.where(positive, 1.6, imp[torch.arange(n), 2, cy, cx])
    field = _blur(imp, (0.8 * scale, 1.4 * scale, 1.6 * scale))
    irregular = torch.tensor([0.08, 0.1, 0.35]).view(1, 3, 1, 1)
    field = field * (1 + irregular * fine[:, 1:2])
    h_nuc = torch.stack(
        [
            _uniform(gen, (n,), 0.85, 1.45),
            _uniform(gen, (n,), 0.55, 1.0),
            _uniform(gen, (n,), 0.8, 1.4),
        ],
        1,
    ).view(n, 3, 1, 1)
    chroma = torch.tensor([0.0, 0.0, 0.3]).view(1, 3, 1, 1) * fine[:, 2:3]
    # the channel with the highest field colours the pixel
    top, idx = field.max(1, keepdim=True)
    stain = torch.gather(h_nuc * (1 + chroma), 1, idx)

    # --- stroma and cytoplasm: eosin with fibrous texture, faint haematoxylin
    freq = _uniform(gen, (n, 1, 1, 1), 2.0, 5.0)
    fibre = 0.5 + 0.5 * torch.sin(freq * math.pi * coarse[:, 0:1] + 3 * coarse[:, 1:2])
    e_stroma = _uniform(gen, (n, 1, 1, 1), 0.25, 0.55) * (0.7 + 0.3 * fibre + 0.1 * fine[:, 0:1])
    e_cyto = _uniform(gen, (n, 1, 1, 1), 0.25, 0.5) * (1 + 0.2 * fine[:, 0:1])
    h_bg = _uniform(gen, (n, 1, 1, 1), 0.04, 0.16) * (1 + 0.5 * coarse[:, 3:4])
    h_tissue = h_bg + tum * _uniform(gen, (n, 1, 1, 1), 0.0, 0.05)
    e_tissue = e_stroma + tum * (e_cyto - e_stroma)

    # --- fat / background holes in normal tissue
    holes = torch.rand((n, 1, 1, 1), generator=gen) < background
    hole_thr = _uniform(gen, (n, 1, 1, 1), 0.25, 0.6)
    hole = torch.sigmoid((coarse[:, 2:3] - hole_thr) * 25) * (holes * (1 - tum))
    keep = 1 - 0.93 * hole

    # --- to full resolution; nuclei outlines are thresholded after upsampling
    smooth = torch.cat([top * keep, stain, h_tissue * keep, e_tissue * keep], 1)
    top, stain, h_tissue, e_tissue = F.interpolate(
        smooth, size=(size, size), mode="bilinear", align_corners=False
    ).unbind(1)
    occ = torch.sigmoid((top - 0.5) * 12)
    conc_h = h_tissue + occ * (stain - h_tissue)
    conc_e = e_tissue * (1 - 0.5 * occ)

    # --- stain variation and Beer-Lambert rendering
    h_vec = torch.tensor(_H_VEC) + stain_jitter * 0.3 * torch.randn((n, 3), generator=gen)
    e_vec = torch.tensor(_E_VEC) + stain_jitter * 0.3 * torch.randn((n, 3), generator=gen)
    gains = torch.exp(stain_jitter * torch.randn((n, 2), generator=gen))
    h_vec = h_vec.clamp_min(0.02)
    e_vec = e_vec.clamp_min(0.02)
    h_vec = -255.0 * h_vec / h_vec.norm(dim=1, keepdim=True) * gains[:, :1]
    e_vec = -255.0 * e_vec / e_vec.norm(dim=1, keepdim=True) * gains[:, 1:]
    conc = torch.stack([conc_h, conc_e], 1).flatten(2)  # (n, 2, HW)
    # exp(-od) * 255 = exp(log(255) - od); the -255 / 255 scaling keeps one bmm
    od = torch.bmm(torch.stack([h_vec, e_vec], 2), conc).div_(255.0).add_(math.log(255.0))
    grain = torch.rand((n, 1, size * size), generator=gen).sub_(0.5)  # luminance grain
    rgb = od.exp_().add_(grain, alpha=6.0)
    images = rgb.round_().clamp_(0, 255).to(torch.uint8).view(n, 3, size, size)
    return images.permute(0, 2, 3, 1).contiguous(), masks
