"""Issue 12, item 5: bad loss inputs raise, and the message names the argument."""

from __future__ import annotations

import pytest
import torch

from camseg import losses as L


def _cam(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1)


def _score(x: torch.Tensor) -> torch.Tensor:
    return x.mean((1, 2, 3))


def test_attention_mining_rejects_infinite_maps() -> None:
    x = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    maps[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="Expected `maps` to be finite"):
        L.attention_mining_loss(_score, x, maps)


@pytest.mark.parametrize("sigma", [-1.0, 1.5])
def test_attention_mining_rejects_sigma_outside_unit(sigma: float) -> None:
    x, maps = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match=r"Expected `sigma` to lie in \[0.0, 1.0\]"):
        L.attention_mining_loss(_score, x, maps, sigma=sigma)


def test_empty_batches_raise() -> None:
    x = torch.rand(0, 3, 8, 8)
    with pytest.raises(ValueError, match="Expected `maps` to hold at least one map"):
        L.smoothness_loss(torch.rand(0, 8, 8))
    with pytest.raises(ValueError, match="Expected `images` to hold at least one image"):
        L.equivariance_loss(_cam, x)
    with pytest.raises(ValueError, match="Expected `images` to hold at least one image"):
        L.puzzle_loss(_cam, x)
    with pytest.raises(ValueError, match="Expected `images` to hold at least one image"):
        L.attention_mining_loss(_score, x, torch.rand(0, 8, 8))


@pytest.mark.parametrize("size", [(0, 0), (8, 0), (-1, 4)])
def test_region_mask_rejects_empty_size(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="Expected `size` to have sides >= 1"):
        L.region_mask(0.5, size)


@pytest.mark.parametrize("size", [(8,), (8.0, 8.0), "88"])
def test_region_mask_rejects_bad_size_type(size: object) -> None:
    with pytest.raises(TypeError, match="Expected `size` to be a pair of ints"):
        L.region_mask(0.5, size)  # type: ignore[arg-type]


def test_regularizer_rejects_negative_step() -> None:
    reg = L.CAMRegularizer({"tv": (L.SmoothnessLoss(), 1.0)}, warmup=4)
    with pytest.raises(ValueError, match="Expected `step` to be an int >= 0 or None, but got -1"):
        reg(maps=torch.rand(2, 8, 8), step=-1)
    with pytest.raises(ValueError, match="Expected `step` to be an int >= 0"):
        reg.current_weights(step=-1)
