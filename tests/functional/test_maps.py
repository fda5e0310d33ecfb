"""Map operations: normalisation, resizing, token grids."""

from __future__ import annotations

import pytest
import torch

from camseg import functional as CF


def test_normalize_modes_by_hand():
    m = torch.tensor([[[2.0, 4.0], [6.0, 10.0]]])
    assert torch.allclose(CF.normalize(m, mode="minmax"), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))
    assert torch.allclose(CF.normalize(m, mode="max"), torch.tensor([[[0.2, 0.4], [0.6, 1.0]]]))
    assert CF.normalize(m, mode=None) is m


def test_normalize_constant_and_empty_maps_become_zero():
    m = torch.stack([torch.full((3, 3), 5.0), torch.zeros(3, 3)])
    assert (CF.normalize(m, mode="minmax") == 0).all()
    assert (CF.normalize(torch.zeros(2, 3, 3), mode="max") == 0).all()
    # "max" keeps an empty map empty and zero as zero
    mixed = torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])
    assert torch.equal(CF.normalize(mixed, mode="max"), torch.tensor([[[0.0, 0.0], [0.0, 1.0]]]))


def test_normalize_is_differentiable_without_nan():
    m = torch.zeros(1, 2, 2, requires_grad=True)
    CF.normalize(m, mode="minmax").sum().backward()
    assert m.grad is not None and torch.isfinite(m.grad).all()


def test_normalize_errors():
    with pytest.raises(ValueError, match="`mode` to be one of 'minmax', 'max', None"):
        CF.normalize(torch.rand(1, 2, 2), mode="l2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        CF.normalize(torch.ones(1, 2, 2, dtype=torch.long))


def test_upsample_matches_interpolate_and_keeps_range():
    torch.manual_seed(0)
    m = torch.rand(2, 3, 4, 4)
    up = CF.upsample(m, (16, 12))
    ref = torch.nn.functional.interpolate(
        m.reshape(6, 1, 4, 4), size=(16, 12), mode="bilinear", align_corners=False
    ).reshape(2, 3, 16, 12)
    torch.testing.assert_close(up, ref)
    assert up.min() >= m.min() - 1e-6 and up.max() <= m.max() + 1e-6
    assert CF.upsample(m, (4, 4)) is m


def test_upsample_errors():
    with pytest.raises(ValueError, match=r"`maps` to be a tensor of shape \(B, h, w\)"):
        CF.upsample(torch.rand(4, 4), (8, 8))
    with pytest.raises(ValueError, match="`size` to be a pair"):
        CF.upsample(torch.rand(1, 4, 4), (8,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`size` to be an int >= 1"):
        CF.upsample(torch.rand(1, 4, 4), (0, 8))


def test_tokens_to_grid_layout_and_errors():
    b, h, w, c = 2, 2, 3, 4
    grid = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    tokens = grid.flatten(2).transpose(1, 2)  # (B, h*w, C), row-major patches
    cls = torch.full((b, 1, c), -1.0)
    reg = torch.full((b, 4, c), -2.0)
    with_prefix = torch.cat([cls, reg, tokens], dim=1)
    out = CF.tokens_to_grid(with_prefix, grid=(h, w), prefix_tokens=5)
    assert torch.equal(out, grid)
    square = torch.cat([cls, torch.rand(b, 9, c)], dim=1)
    assert CF.tokens_to_grid(square).shape == (b, c, 3, 3)
    with pytest.raises(ValueError, match="square grid"):
        CF.tokens_to_grid(with_prefix, prefix_tokens=1)
    with pytest.raises(ValueError, match="to cover the 6 patch tokens"):
        CF.tokens_to_grid(with_prefix, grid=(2, 2), prefix_tokens=5)
