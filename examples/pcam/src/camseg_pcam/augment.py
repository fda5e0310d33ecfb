r"""Batched on-device augmentation for H&E patches.

Three transforms, each applied to a whole batch on the batch's device, with a
per-sample random draw from an explicit :class:`torch.Generator`:

- the 8 symmetries of the square (dihedral group D4: 4 rotations × optional
  flip), applied to images *and* masks, since tumour has no orientation;
- HED stain jitter: each pixel's optical density is projected on the
  haematoxylin, eosin and DAB stain vectors of Ruifrok and Johnston (2001), each
  stain concentration scaled by :math:`\alpha \sim U(1-\sigma, 1+\sigma)` and
  shifted by :math:`\beta \sim U(-\sigma, \sigma)` (Tellez et al., 2018), and
  projected back;
- brightness and contrast.

The colour conversion follows scikit-image's ``rgb2hed`` / ``hed2rgb``
convention (natural log, intensities floored at :math:`10^{-6}`, concentrations
divided by :math:`-\log 10^{-6}`), so the two agree numerically:

.. math::

    C = \frac{\log \max(I, 10^{-6})}{\log 10^{-6}} \, M^{-1},
    \qquad I = \exp\big(\log(10^{-6}) \, C M\big)

with :math:`M` the stain matrix (rows: H, E, DAB optical densities).

:func:`label_crops` is the fourth, separate step of ``train --crop``: crops that
keep the PCam label region whole, and where it moved to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from camseg_pcam._validate import check_floating, check_in_range, check_ndim, check_same_batch

__all__ = [
    "RGB_FROM_HED",
    "Augment",
    "d4_transform",
    "hed_jitter",
    "hed_to_rgb",
    "label_crops",
    "rgb_to_hed",
]

#: Ruifrok & Johnston (2001) stain vectors as rows: haematoxylin, eosin, DAB.
RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_LOG_FLOOR = math.log(1e-6)


def _matrices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = RGB_FROM_HED
    return m.to(x.device, x.dtype), torch.linalg.inv(m).to(x.device, x.dtype)


def rgb_to_hed(images: torch.Tensor) -> torch.Tensor:
    """Convert RGB images in [0, 1] to HED stain concentrations.

    Args:
        images: ``(B, 3, H, W)`` floating, RGB in [0, 1].

    Returns:
        ``(B, 3, H, W)`` concentrations of haematoxylin, eosin, DAB (not clipped,
        so :func:`hed_to_rgb` inverts it exactly).

    Raises:
        TypeError: if ``images`` is not floating.
        ValueError: if ``images`` is not ``(B, 3, H, W)``.

    References:
        Ruifrok and Johnston, "Quantification of histochemical staining by
        color deconvolution", Anal. Quant. Cytol. Histol. 2001.

    Example:
        >>> hed = rgb_to_hed(torch.ones(1, 3, 1, 1))  # white: no stain
        >>> hed.abs().max().item() < 1e-6
        True
    """
    _check_images(images)
    _, inv = _matrices(images)
    od = torch.log(images.clamp_min(1e-6)) / _LOG_FLOOR
    return torch.einsum("bchw,cd->bdhw", od, inv)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """Convert HED stain concentrations back to RGB in [0, 1].

    Args:
        hed: ``(B, 3, H, W)`` floating concentrations (see :func:`rgb_to_hed`).

    Returns:
        ``(B, 3, H, W)`` RGB, clipped to [0, 1].

    Raises:
        TypeError: if ``hed`` is not floating.
        ValueError: if ``hed`` is not ``(B, 3, H, W)``.

    Example:
        >>> x = torch.tensor([0.8, 0.4, 0.6]).view(1, 3, 1, 1)
        >>> torch.allclose(hed_to_rgb(rgb_to_hed(x)), x, atol=1e-6)
        True
    """
    _check_images(hed, "hed")
    m, _ = _matrices(hed)
    log_rgb = torch.einsum("bdhw,dc->bchw", hed, m) * _LOG_FLOOR
    return torch.exp(log_rgb).clamp(0.0, 1.0)


def _check_images(x: torch.Tensor, name: str = "images") -> None:
    check_floating(x, name)
    check_ndim(x, name, 4, "(B, 3, H, W)")
    if x.shape[1] != 3:
        raise ValueError(
            f"Expected `{name}` to be a tensor of shape (B, 3, H, W), but got shape "
            f"{tuple(x.shape)}."
        )


def hed_jitter(images: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    r"""Scale and shift each image's stain concentrations.

    .. math::

        C'_{b,s} = \alpha_{b,s} \, C_{b,s} + \beta_{b,s}

    Args:
        images: ``(B, 3, H, W)`` RGB in [0, 1].
        alpha: ``(B, 3)`` scales of H, E, DAB.
        beta: ``(B, 3)`` shifts of H, E, DAB.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].

    Raises:
        TypeError: if an input is not floating.
        ValueError: if the shapes do not match.

    References:
        Tellez et al., "Whole-slide mitosis detection in H&E breast histology
        using PHH3 as a reference to train distilled stain-invariant
        convolutional networks", IEEE TMI 2018.

    Example:
        >>> x = torch.full((2, 3, 4, 4), 0.5)
        >>> same = hed_jitter(x, torch.ones(2, 3), torch.zeros(2, 3))
        >>> torch.allclose(same, x, atol=1e-5)
        True
    """
    _check_images(images)
    for name, v in (("alpha", alpha), ("beta", beta)):
        check_floating(v, name)
        check_ndim(v, name, 2, "(B, 3)")
        check_same_batch(images, "images", v, name)
    hed = rgb_to_hed(images)
    hed = hed * alpha[:, :, None, None] + beta[:, :, None, None]
    return hed_to_rgb(hed)


def d4_transform(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 square symmetries per sample.

    Element ``k[b]`` in ``0..7``: rotate by ``(k % 4) * 90`` degrees (counter-
    clockwise in the ``(H, W)`` plane), then transpose the last two axes if
    ``k >= 4``. Works on images ``(B, C, H, W)`` and masks/maps ``(B, H, W)``
    (square spatial size). One batched op per group element, not per image.

    Args:
        x: ``(B, C, H, W)`` or ``(B, H, W)`` with ``H == W``.
        k: LongTensor ``(B,)`` of group elements in ``0..7``.

    Returns:
        The transformed tensor, same shape and dtype.

    Raises:
        ValueError: if ``x`` is not square, ``k`` has the wrong length or values.

    Example:
        >>> x = torch.arange(4.0).view(1, 2, 2)
        >>> d4_transform(x, torch.tensor([1]))
        tensor([[[1., 3.],
                 [0., 2.]]])
    """
    check_ndim(x, "x", (3, 4), "(B, C, H, W) or (B, H, W)")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"Expected `x` to be square, but got shape {tuple(x.shape)}.")
    check_ndim(k, "k", 1, "(B,)")
    check_same_batch(x, "x", k, "k")
    check_in_range(k, "k", 0, 7)
    out = x.clone()
    for g in range(8):
        sel = (k == g).nonzero().flatten()
        if sel.numel() == 0 or g == 0:
            continue
        part = torch.rot90(x.index_select(0, sel), g % 4, dims=(-2, -1))
        if g >= 4:
            part = part.transpose(-2, -1)
        out.index_copy_(0, sel, part)
    return out


@dataclass
class Augment:
    """The training augmentation: D4, HED jitter, brightness/contrast, batched.

    Args:
        d4: apply a random square symmetry per sample (to masks too).
        hed_sigma: HED jitter strength σ (0 disables).
        brightness: maximum brightness shift (added, in [0, 1] units).
        contrast: maximum relative contrast change.

    Example:
        >>> aug = Augment()
        >>> g = torch.Generator().manual_seed(0)
        >>> x, m = aug(torch.rand(4, 3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.bool), g)
        >>> x.shape, m.dtype, bool(x.min() >= 0) and bool(x.max() <= 1)
        (torch.Size([4, 3, 8, 8]), torch.bool, True)
    """

    d4: bool = True
    hed_sigma: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a batch.

        Args:
            images: ``(B, 3, H, W)`` RGB in [0, 1].
            masks: ``(B, H, W)`` masks that follow the geometric part, or ``None``.
            generator: a CPU generator for the random draws (drawn on the CPU,
                then moved to the images' device, so runs are reproducible).

        Returns:
            ``(images, masks)`` augmented.
        """
        _check_images(images)
        b, dev, dt = images.shape[0], images.device, images.dtype

        def u(*shape: int, lo: float, hi: float) -> torch.Tensor:
            r = torch.rand(*shape, generator=generator, dtype=torch.float64)
            return (lo + (hi - lo) * r).to(dev, dt)

        if self.d4:
            k = torch.randint(0, 8, (b,), generator=generator).to(dev)
            images = d4_transform(images, k)
            if masks is not None:
                masks = d4_transform(masks, k)
        if self.hed_sigma > 0:
            s = self.hed_sigma
            images = hed_jitter(images, u(b, 3, lo=1 - s, hi=1 + s), u(b, 3, lo=-s, hi=s))
        if self.brightness > 0 or self.contrast > 0:
            c = u(b, 1, 1, 1, lo=1 - self.contrast, hi=1 + self.contrast)
            br = u(b, 1, 1, 1, lo=-self.brightness, hi=self.brightness)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = ((images - mean) * c + mean + br).clamp(0.0, 1.0)
        return images, masks


def label_crops(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    *,
    size: int,
    generator: torch.Generator,
    step: int = 8,
    region: float = 1.0 / 3.0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Random square crops that contain the label region, and where it lies in each.

    The PCam label speaks of the centre region only, so a crop that keeps the whole
    region keeps the label; the region moves with the crop. Training on such crops puts
    the label region at every distance from the image border (up to touching it), which
    is where a patch's periphery sits at test time: per-location heads trained by
    multiple-instance learning then see border conditions in training that they meet
    in the periphery. Offsets are multiples of ``step`` (use the model's output stride,
    so the region falls on whole map cells).

    Args:
        images: ``(B, C, H, W)`` images.
        masks: ``(B, H, W)`` masks cropped alike, or ``None``.
        size: the crop's side in pixels, at least the region's side, at most ``H``.
        generator: a CPU generator for the offsets.
        step: offsets are multiples of it.
        region: the label region: the side of a centred square as a fraction of ``H``.

    Returns:
        ``(images, masks, regions)``: the crops ``(B, C, size, size)``, the masks'
        crops (or ``None``), and ``(B, size, size)`` bool masks of the label region in
        each crop.

    Raises:
        ValueError: if no crop of that size holds the region at a multiple of ``step``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, _, r = label_crops(torch.rand(2, 3, 96, 96), None, size=64, generator=g)
        >>> x.shape, r.shape, r.sum(dim=(1, 2)).tolist()
        (torch.Size([2, 3, 64, 64]), torch.Size([2, 64, 64]), [1024, 1024])
    """
    _check_images(images)
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"Expected square `images`, but got shape {tuple(images.shape)}.")
    lo = round(h * (1.0 - region) / 2.0)
    hi = h - lo
    if not (hi - lo <= size <= h):
        raise ValueError(
            f"Expected `size` between the label region's side {hi - lo} and the image side "
            f"{h}, but got {size!r}."
        )
    starts = [o for o in range(max(0, hi - size), min(lo, h - size) + 1) if o % step == 0]
    if not starts:
        raise ValueError(
            f"Expected a crop of side {size} to hold the label region [{lo}, {hi}) at an "
            f"offset that is a multiple of `step`={step}, but there is none."
        )
    choice = torch.tensor(starts)
    oy = choice[torch.randint(0, len(starts), (b,), generator=generator)].to(images.device)
    ox = choice[torch.randint(0, len(starts), (b,), generator=generator)].to(images.device)
    span = torch.arange(size, device=images.device)
    rows, cols = oy[:, None] + span, ox[:, None] + span  # (B, size)
    bi = torch.arange(b, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    out_masks = None if masks is None else masks[bi, rows[:, :, None], cols[:, None, :]]
    inside_r = (rows >= lo) & (rows < hi)
    inside_c = (cols >= lo) & (cols < hi)
    regions = inside_r[:, :, None] & inside_c[:, None, :]
    return crops.permute(0, 3, 1, 2).contiguous(), out_masks, regions
