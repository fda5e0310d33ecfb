"""Property-based tests of ROAD's noisy linear imputation (camseg.metrics)."""

import random

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from camseg.metrics import noisy_linear_imputation

SETTINGS = settings(deadline=None, max_examples=40)


@st.composite
def images_and_masks(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b = draw(st.integers(1, 4))
    c = draw(st.integers(1, 3))
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    values = st.floats(-10, 10, allow_nan=False, width=64)
    images = draw(hnp.arrays(np.float64, (b, c, h, w), elements=values))
    removed = draw(hnp.arrays(np.bool_, (b, h, w)))
    return torch.from_numpy(images), torch.from_numpy(removed)


@SETTINGS
@given(images_and_masks())
def test_discrete_maximum_principle(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    # each imputed value is a weighted mean of its neighbours, so (noise off) it
    # lies between the smallest and the largest known value of its channel
    images, removed = pair
    out = noisy_linear_imputation(images, removed, noise=0.0)
    keep = ~removed[:, None].expand_as(images)
    assert torch.equal(out[keep], images[keep])
    for i in range(images.shape[0]):
        if removed[i].all():  # nothing known: the minimum-norm solution 0
            assert torch.equal(out[i], torch.zeros_like(out[i]))
            continue
        known = images[i][:, ~removed[i]]  # (C, n_known)
        lo, hi = known.amin(dim=1), known.amax(dim=1)
        filled = out[i][:, removed[i]]  # (C, n_removed)
        assert (filled >= lo[:, None]).all() and (filled <= hi[:, None]).all()


@SETTINGS
@given(images_and_masks(), st.randoms(use_true_random=False))
def test_batch_order_invariance(
    pair: tuple[torch.Tensor, torch.Tensor], rnd: random.Random
) -> None:
    images, removed = pair
    perm = list(range(images.shape[0]))
    rnd.shuffle(perm)
    idx = torch.tensor(perm)
    # at the default tol=1e-5 the iterate may differ with the order by up to ~tol
    # (the float32 preconditioner); a tight tol makes the solves agree to ~1e-14
    out = noisy_linear_imputation(images, removed, noise=0.0, tol=1e-9)
    shuffled = noisy_linear_imputation(images[idx], removed[idx], noise=0.0, tol=1e-9)
    scale = images.abs().max().clamp_min(1)
    torch.testing.assert_close(shuffled, out[idx], atol=1e-9 * float(scale), rtol=0)


@SETTINGS
@given(images_and_masks(), st.floats(-5, 5), st.floats(0.1, 10))
def test_affine_equivariance_and_constants(
    pair: tuple[torch.Tensor, torch.Tensor], shift: float, scale: float
) -> None:
    # linear imputation commutes with x -> a x + b, and reproduces constants
    images, removed = pair
    out = noisy_linear_imputation(images, removed, noise=0.0, tol=1e-9)
    moved = noisy_linear_imputation(scale * images + shift, removed, noise=0.0, tol=1e-9)
    has_known = (~removed).flatten(1).any(dim=1)
    span = float(images.abs().max().clamp_min(1))
    torch.testing.assert_close(
        moved[has_known],
        (scale * out + shift)[has_known],
        atol=1e-6 * span * scale + 1e-9 * abs(shift),
        rtol=0,
    )
    const = torch.full_like(images, shift)
    filled = noisy_linear_imputation(const, removed, noise=0.0)
    assert torch.equal(filled[has_known], const[has_known])
