"""A synthetic whole slide with an exact tumour mask, built from camseg.synthetic patches."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from camseg._checks import check_positive_int
from camseg.slide._readers import ArrayReader

__all__ = ["SyntheticSlide", "make_slide"]

#: Colour of bare glass (RGB) in synthetic slides.
GLASS = (240, 238, 242)


class SyntheticSlide(NamedTuple):
    """Output of :func:`make_slide`.

    Attributes:
        image: ``(H, W, 3)`` ``uint8`` RGB slide (NumPy, the reader layout).
        tumor: ``(H, W)`` ``torch.bool`` exact tumor mask.
        tissue: ``(H, W)`` ``torch.bool`` tissue mask (the section outline).
        mpp: microns per pixel.
    """

    image: np.ndarray
    tumor: torch.Tensor
    tissue: torch.Tensor
    mpp: float

    def reader(self, levels: int = 1) -> ArrayReader:
        """An :class:`~camseg.slide.ArrayReader` with ``levels`` levels, each 2x smaller.

        Coarser levels are 2 x 2 means of the previous one.

        Args:
            levels: number of pyramid levels.

        Returns:
            The reader.
        """
        levels = check_positive_int(levels, "levels")
        arrays = [self.image]
        for _ in range(levels - 1):
            prev = torch.from_numpy(arrays[-1]).permute(2, 0, 1).float()[None]
            down = F.avg_pool2d(prev, 2)[0].round().clamp(0, 255).byte()
            arrays.append(np.ascontiguousarray(down.permute(1, 2, 0).numpy()))
        return ArrayReader(arrays, mpp=self.mpp, downsamples=[2.0**i for i in range(levels)])


def _blob(
    h: int, w: int, cy: float, cx: float, ry: float, rx: float, gen: torch.Generator, rough: float
) -> torch.Tensor:
    """Irregular ellipse on an (h, w) grid: smooth random radius modulation."""
    yy = torch.arange(h, dtype=torch.float32)[:, None]
    xx = torch.arange(w, dtype=torch.float32)[None, :]
    angle = torch.atan2((yy - cy) / ry, (xx - cx) / rx)
    r = torch.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    wobble = torch.zeros_like(angle)
    for k in range(2, 6):
        amp, phase = torch.rand(2, generator=gen)
        wobble += rough * float(amp) / k * torch.cos(k * angle + 2 * math.pi * float(phase))
    return r < 1.0 + wobble


def make_slide(
    *,
    height: int = 2048,
    width: int = 3072,
    tumors: int = 3,
    patch: int = 96,
    seed: int = 0,
    mpp: float = 0.97,
    pool: int = 128,
) -> SyntheticSlide:
    """Make a synthetic H&E slide: a tissue section on glass, with tumour regions.

    The slide is a mosaic of :func:`camseg.synthetic.make_patches` patches
    (``patch`` pixels a side) cut to an irregular tissue outline on glass.
    ``tumors`` irregular tumour zones of decreasing size (the largest about a
    quarter of the slide's shorter side across) are placed inside the tissue;
    mosaic cells in a zone take one of the most solid tumour-positive patches of
    a pool of ``pool``, the others one of ``pool`` clean negatives, each under a random
    flip/rotation, and the tumour mask is the mosaic of the patches' exact masks
    inside the tissue. Generation costs two pools of patches whatever the slide
    size. The patches' seams are visible on close inspection: a testbed for the
    pipeline, not a realistic image.

    Args:
        height: slide height in pixels.
        width: slide width in pixels.
        tumors: number of tumor zones (0 for a tumour-free slide).
        patch: side of the mosaic patches (``>= 16``).
        seed: seed of every random choice.
        mpp: microns per pixel (0.97 is PCam's 10x level).
        pool: patches per texture pool (``>= 4``; fewer is faster, more varied is
            more realistic).

    Returns:
        :class:`SyntheticSlide` ``(image, tumor, tissue, mpp)``.

    Raises:
        TypeError: if a size or count is not an int.
        ValueError: if the slide is smaller than 4 patches a side, or ``mpp`` is not
            a finite number > 0.

    Example:
        >>> slide = make_slide(height=384, width=512, tumors=1, seed=0, pool=16)
        >>> slide.image.shape, slide.image.dtype, slide.tumor.shape
        ((384, 512, 3), dtype('uint8'), torch.Size([384, 512]))
        >>> bool((slide.tumor & ~slide.tissue).any()), bool(slide.tumor.any())
        (False, True)
    """
    from camseg.synthetic import make_patches

    patch = check_positive_int(patch, "patch", minimum=16)
    height = check_positive_int(height, "height", minimum=4 * patch)
    width = check_positive_int(width, "width", minimum=4 * patch)
    tumors = check_positive_int(tumors, "tumors", minimum=0)
    seed = check_positive_int(seed, "seed", minimum=0)
    pool = check_positive_int(pool, "pool", minimum=4)
    if not isinstance(mpp, (int, float)) or isinstance(mpp, bool) or not 0 < mpp < math.inf:
        raise ValueError(f"Expected `mpp` to be a number > 0 and finite, but got {mpp!r}.")
    gen = torch.Generator().manual_seed(seed)

    # tissue outline: one big irregular ellipse
    tissue = _blob(
        height, width, height / 2, width / 2, 0.42 * height, 0.44 * width, gen, rough=0.25
    )
    # tumour zones at patch resolution, inside the tissue, decreasing in size
    gh, gw = -(-height // patch), -(-width // patch)
    zone = torch.zeros(gh, gw, dtype=torch.bool)
    side = min(height, width)
    for t in range(tumors):
        radius = 0.12 * side / (1.4**t)
        for _ in range(50):  # rejection: centre well inside the tissue
            cy = float(torch.rand(1, generator=gen)) * height * 0.6 + 0.2 * height
            cx = float(torch.rand(1, generator=gen)) * width * 0.6 + 0.2 * width
            if tissue[int(cy), int(cx)]:
                break
        blob = _blob(
            gh,
            gw,
            cy / patch - 0.5,
            cx / patch - 0.5,
            radius / patch,
            1.3 * radius / patch,
            gen,
            rough=0.3,
        )
        blob[min(int(cy // patch), gh - 1), min(int(cx // patch), gw - 1)] = True
        zone |= blob

    # texture pools: clean negatives, and the most solid of a batch of positives;
    # each mosaic cell takes a pool patch under one of the 8 flips/rotations
    neg = make_patches(
        pool,
        size=patch,
        seed=seed,
        tumor_fraction=0.0,
        peripheral_fraction=0.0,
        stain_jitter=0.05,
    )
    pos = make_patches(
        pool, size=patch, seed=seed + 1, tumor_fraction=1.0, background=0.0, stain_jitter=0.05
    )
    solid = pos.masks.flatten(1).float().mean(1).argsort(descending=True)[: pool // 4]
    n = gh * gw
    flat = zone.flatten()
    pick_neg = torch.randint(0, pool, (n,), generator=gen)
    pick_pos = solid[torch.randint(0, len(solid), (n,), generator=gen)]
    images = torch.where(flat[:, None, None, None], pos.images[pick_pos], neg.images[pick_neg])
    masks = pos.masks[pick_pos] & flat[:, None, None]
    rot = torch.randint(0, 4, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(2), images)
    masks = torch.where(flip[:, None, None], masks.flip(2), masks)
    for k in range(1, 4):
        sel = rot == k
        images[sel] = images[sel].rot90(k, dims=(1, 2))
        masks[sel] = masks[sel].rot90(k, dims=(1, 2))
    mosaic = (
        images.view(gh, gw, patch, patch, 3)
        .permute(0, 2, 1, 3, 4)
        .reshape(gh * patch, gw * patch, 3)[:height, :width]
    )
    tumour = (
        masks.view(gh, gw, patch, patch)
        .permute(0, 2, 1, 3)
        .reshape(gh * patch, gw * patch)[:height, :width]
    )

    glass = torch.tensor(GLASS, dtype=torch.int16)
    noise = torch.randint(-4, 5, (height, width, 1), generator=gen, dtype=torch.int16)
    background = (glass + noise).clamp(0, 255).to(torch.uint8)
    image = torch.where(tissue[..., None], mosaic, background)
    return SyntheticSlide(
        image=np.ascontiguousarray(image.numpy()),
        tumor=(tumour & tissue).contiguous(),
        tissue=tissue,
        mpp=float(mpp),
    )
