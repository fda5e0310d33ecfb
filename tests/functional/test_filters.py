"""The one Gaussian blur: scipy's filter, by hand, validation, device and dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from camseg import functional as CF


@pytest.mark.parametrize("sigma", [0.3, 1.0, 1.7, 3.0])
@pytest.mark.parametrize("truncate", [1.0, 2.5, 4.0])
def test_gaussian_blur_matches_scipy(sigma: float, truncate: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 13, 9, generator=g, dtype=torch.float64)
    if int(truncate * sigma + 0.5) < 1:
        pytest.skip("scipy has no lower bound of 1 on the radius")
    ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=truncate)
    out = CF.gaussian_blur(x, sigma, truncate=truncate)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.2])
def test_gaussian_blur_radius_matches_scipy(sigma: float) -> None:
    x = torch.rand(1, 2, 8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = max(math.ceil(sigma), 1)
    ref = gaussian_filter(
        x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", radius=(0, 0, r, r)
    )
    np.testing.assert_allclose(CF.gaussian_blur(x, sigma, radius=r).numpy(), ref, atol=1e-14)


def test_gaussian_blur_by_hand_three_tap_kernel() -> None:
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0
    k = torch.exp(-0.5 * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    k = k / k.sum()
    out = CF.gaussian_blur(x, 1.0, radius=1)
    expected = torch.zeros_like(x)
    expected[0, 0, 1:4, 1:4] = torch.outer(k, k)
    assert torch.allclose(out, expected, atol=1e-15)
    assert float(out.sum()) == pytest.approx(1.0)


def test_gaussian_blur_keeps_constants_and_channels_apart() -> None:
    x = torch.stack([torch.full((6, 7), 2.0), torch.full((6, 7), -1.0)]).unsqueeze(0)
    assert torch.allclose(CF.gaussian_blur(x, 2.0), x)
    # a radius larger than the image still replicates the edges
    assert torch.allclose(CF.gaussian_blur(x, 5.0, radius=20), x)


def test_gaussian_blur_sigma_zero_is_identity_and_empty_batch() -> None:
    x = torch.rand(2, 1, 4, 4)
    assert CF.gaussian_blur(x, 0.0) is x
    assert CF.gaussian_blur(torch.rand(0, 3, 4, 4), 1.0).shape == (0, 3, 4, 4)


def test_gaussian_blur_is_differentiable() -> None:
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: CF.gaussian_blur(t, 0.8), (x,))


def test_gaussian_blur_on_callers_device_and_dtype(
    device: torch.device, dtype: torch.dtype
) -> None:
    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(2)).to(device, dtype)
    out = CF.gaussian_blur(x, 1.3)
    assert out.device == x.device and out.dtype == dtype
    ref = CF.gaussian_blur(x.double().cpu(), 1.3)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    assert torch.allclose(out.double().cpu(), ref, atol=tol)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"images": torch.rand(3, 4, 4)},
            ValueError,
            r"`images` to be a tensor of shape \(B, C, H, W\)",
        ),
        (
            {"images": torch.ones(1, 1, 4, 4, dtype=torch.int64)},
            TypeError,
            "`images` to have a floating",
        ),
        ({"images": torch.rand(1, 1, 0, 4)}, ValueError, "`images` to have H, W >= 1"),
        ({"images": [[1.0]]}, TypeError, "`images` to be a torch.Tensor"),
        ({"sigma": -1.0}, ValueError, "`sigma` to be a finite number >= 0"),
        ({"sigma": float("nan")}, ValueError, "`sigma`"),
        ({"sigma": float("inf")}, ValueError, "`sigma`"),
        ({"sigma": True}, TypeError, "`sigma` to be a number"),
        ({"sigma": "1"}, TypeError, "`sigma` to be a number"),
        ({"truncate": 0.0}, ValueError, "`truncate` to be a finite number > 0"),
        ({"truncate": float("nan")}, ValueError, "`truncate`"),
        ({"radius": 0}, ValueError, "`radius` to be an int >= 1"),
        ({"radius": 1.5}, TypeError, "`radius` to be an int"),
    ],
)
def test_gaussian_blur_rejects_bad_input(kwargs: dict[str, object], exc: type, match: str) -> None:
    args: dict[str, object] = {"images": torch.rand(1, 1, 4, 4), "sigma": 1.0}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        CF.gaussian_blur(**args)  # type: ignore[arg-type]
