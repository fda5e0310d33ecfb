"""A second H&E-like patch generator, independent of :mod:`camseg.synthetic`.

It exists to check that WSSS defaults carry over to data they were not chosen on.
It shares only the PCam label rule (tumor in the centre 32×32) with
``camseg.synthetic``; everything else is built another way, closer to how lymph-node
metastases look:

- **Regions**: tumor is a thresholded smooth random field (several irregular
  components, concave outlines), not ellipses; its area varies from a sliver to
  most of the patch. Some normal patches hold fat (white, round holes) or
  stroma (pink, fibrous, few nuclei).
- **Nuclei**: normal tissue is packed with small, dark, round lymphocytes; tumor
  cells have larger, paler, vesicular nuclei (a dark rim and a nucleolus) in
  pink-purple cytoplasm, with *fewer* nuclei per area than normal tissue. (In
  ``camseg.synthetic`` tumor nuclei are the crowded, dark ones.)
- **Colour**: Beer-Lambert optical density with per-patch hematoxylin and eosin
  vectors and concentrations jittered, camera noise and a slight blur.

Labels are computed from the masks by the PCam rule; negatives may hold tumor
outside the centre. Deterministic for a seed. Run ``python benchmarks/_altgen.py``
to write a preview PNG.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIZE = 96
CENTRE = 32


def _disk(r: float, ring: bool = False) -> np.ndarray:
    k = int(np.ceil(r)) + 1
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    d = np.sqrt(yy**2 + xx**2)
    inside = np.clip(r + 0.5 - d, 0.0, 1.0)
    if not ring:
        return inside
    rim = np.clip(1.0 - np.abs(d - (r - 0.8)) / 1.0, 0.0, 1.0)
    nucleolus = np.clip(1.2 - d, 0.0, 1.0)
    return 0.35 * inside + 0.5 * rim + 0.6 * nucleolus


_LYMPH = [_disk(r) for r in (1.8, 2.2, 2.6)]
_TUMOR = [_disk(r, ring=True) for r in (3.6, 4.3, 5.0)]


def _field(rng: np.random.Generator, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _points(rng: np.random.Generator, where: np.ndarray, density: float) -> np.ndarray:
    return (rng.random((SIZE, SIZE)) < density) & where


def _stamp(points: np.ndarray, kernels: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((SIZE, SIZE))
    which = rng.integers(0, len(kernels), size=points.shape)
    for i, k in enumerate(kernels):
        out += ndimage.convolve((points & (which == i)).astype(float), k, mode="constant")
    return np.clip(out, 0.0, 1.0)


def _patch(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (SIZE - CENTRE) // 2, (SIZE + CENTRE) // 2
    while True:
        if kind == "clean":
            mask = np.zeros((SIZE, SIZE), bool)
            break
        f = _field(rng, rng.uniform(6.0, 12.0))
        mask = f > rng.uniform(0.2, 1.6)
        centre = mask[lo:hi, lo:hi].any()
        if kind == "pos" and centre:
            break
        if kind == "peripheral" and mask.any() and not centre:
            break
    stroma = (_field(rng, 10.0) > rng.uniform(0.6, 2.5)) & ~mask
    fat = np.zeros((SIZE, SIZE), bool)
    if rng.random() < 0.3:
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, SIZE, 2)
            r = rng.uniform(5, 14)
            yy, xx = np.mgrid[:SIZE, :SIZE]
            fat |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        fat &= ~mask
    normal = ~mask & ~fat
    lymph = _stamp(_points(rng, normal & ~stroma, rng.uniform(0.035, 0.06)), _LYMPH, rng)
    lymph += 0.6 * _stamp(_points(rng, stroma, 0.006), _LYMPH, rng)
    tumor = _stamp(_points(rng, mask, rng.uniform(0.012, 0.02)), _TUMOR, rng)
    fibres = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), (0.8, 3.0))
    hema = 0.95 * lymph + 0.75 * tumor + 0.08 * mask + 0.03
    eos = 0.35 + 0.06 * fibres + 0.25 * stroma + 0.22 * mask - 0.1 * lymph
    hema = np.where(fat, 0.01, hema)
    eos = np.where(fat, 0.02, np.clip(eos, 0.05, None))
    h_vec = np.array([0.65, 0.70, 0.29]) + rng.normal(0, 0.05, 3)
    e_vec = np.array([0.07, 0.99, 0.11]) + rng.normal(0, 0.05, 3)
    scale = rng.uniform(0.8, 1.25, 2)
    od = scale[0] * hema[..., None] * 1.6 * h_vec + scale[1] * eos[..., None] * 1.2 * e_vec
    rgb = 255.0 * np.exp(-np.clip(od, 0.0, None))
    rgb = ndimage.gaussian_filter(rgb, (0.7, 0.7, 0)) + rng.normal(0, 3.0, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), mask


def make_alt_patches(
    n: int, *, seed: int = 0, tumor_fraction: float = 0.5, peripheral_fraction: float = 0.35
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` patches: uint8 images ``(n, 96, 96, 3)``, int64 labels ``(n,)``, bool masks.

    Args:
        n: number of patches.
        seed: the seed; equal seeds give equal patches.
        tumor_fraction: expected share of positives.
        peripheral_fraction: expected share of negatives with tumor outside the centre.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    masks = np.empty((n, SIZE, SIZE), bool)
    for i in range(n):
        u = rng.random()
        kind = (
            "pos"
            if u < tumor_fraction
            else "peripheral"
            if u < tumor_fraction + (1 - tumor_fraction) * peripheral_fraction
            else "clean"
        )
        images[i], masks[i] = _patch(rng, kind)
    lo, hi = (SIZE - CENTRE) // 2, (SIZE + CENTRE) // 2
    labels = masks[:, lo:hi, lo:hi].reshape(n, -1).any(1).astype(np.int64)
    return images, labels, masks


if __name__ == "__main__":
    import matplotlib.pyplot as plt

    im, lab, ms = make_alt_patches(16, seed=0)
    fig, ax = plt.subplots(4, 8, figsize=(16, 8))
    for i in range(16):
        ax[i // 4, (i % 4) * 2].imshow(im[i])
        ax[i // 4, (i % 4) * 2].set_title(f"label {lab[i]}")
        ax[i // 4, (i % 4) * 2 + 1].imshow(ms[i])
    for a in ax.flat:
        a.axis("off")
    fig.savefig("altgen_preview.png", dpi=60)
