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


@pytest.mark.parametrize("sigma", [-1.0, 0.0, 1.0, 1.5])
def test_attention_mining_rejects_sigma_outside_unit(sigma: float) -> None:
    x, maps = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match=r"Expected `sigma` to lie in \(0, 1\)"):
        L.attention_mining_loss(_score, x, maps, sigma=sigma)


def test_empty_batches_raise() -> None:
    x = torch.rand(0, 3, 8, 8)
    with pytest.raises(ValueError, match="Expected `maps` to hold at least one image"):
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


def test_a_nan_in_an_image_the_loss_skips_still_shows() -> None:
    # each loss applies to one class only; a NaN in the centre of an image of the other
    # class must not be masked out of the result
    labels = torch.tensor([1, 0])
    for fn, skipped in (
        (L.size_loss, 1),
        (L.center_evidence_loss, 1),
        (L.suppression_loss, 0),
    ):
        maps = torch.rand(2, 9, 9)
        maps[skipped, 4, 4] = float("nan")
        assert torch.isnan(fn(maps, labels)), fn.__name__
        maps[skipped, 4, 4] = 0.5
        assert torch.isfinite(fn(maps, labels)), fn.__name__


@pytest.mark.parametrize(
    "call",
    [
        lambda m: L.size_loss(m),
        lambda m: L.suppression_loss(m, torch.tensor([1, 0])),
        lambda m: L.center_evidence_loss(m, torch.tensor([1, 0])),
        lambda m: L.smoothness_loss(m),
        lambda m: L.mask_loss(m, torch.zeros(m.shape, dtype=torch.bool)),
        lambda m: L.mil_loss(m, torch.tensor([1, 0])),
        lambda m: L.pseudo_mask_loss(m, torch.zeros(m.shape, dtype=torch.long)),
    ],
)
def test_images_without_pixels_raise_naming_the_maps(call) -> None:
    with pytest.raises(ValueError, match=r"`(maps|logits)` to have at least one pixel"):
        call(torch.rand(2, 4, 0))


def test_empty_batch_of_a_loss_raises_but_pooling_maps_it_to_empty() -> None:
    with pytest.raises(ValueError, match="`maps` to hold at least one image"):
        L.size_loss(torch.rand(0, 4, 4))
    with pytest.raises(ValueError, match="`logits` to hold at least one image"):
        L.mil_loss(torch.rand(0, 6, 6), torch.zeros(0, dtype=torch.long))
    assert L.mil_pool(torch.rand(0, 6, 6)).shape == (0,)


def test_zero_pos_weight_is_refused() -> None:
    z, g = torch.rand(1, 4, 4), torch.ones(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="`pos_weight` to be > 0"):
        L.pseudo_mask_loss(z, g, pos_weight=0.0)
    with pytest.raises(ValueError, match="`pos_weight` to be > 0"):
        L.PseudoMaskLoss(pos_weight=0.0)


@pytest.mark.parametrize("fn", [L.equivariance_loss, L.puzzle_loss])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_consistency_losses_refuse_non_finite_images(fn, value: float) -> None:
    x = torch.rand(2, 3, 8, 8)
    x[1, 0, 0, 0] = value
    with pytest.raises(ValueError, match="`images` to be finite"):
        fn(_cam, x)


@pytest.mark.parametrize(("device", "error"), [("nodevice", ValueError), (5, TypeError)])
def test_region_mask_bad_device(device: object, error: type) -> None:
    with pytest.raises(error, match="`device`"):
        L.region_mask(0.5, (8, 8), device=device)  # type: ignore[arg-type]


@pytest.mark.parametrize("fn", [L.suppression_loss, L.center_evidence_loss])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_region_losses_show_a_non_finite_value_outside_their_region(fn, value: float) -> None:
    maps, labels = torch.rand(2, 9, 9, requires_grad=True), torch.tensor([1, 0])
    bad = maps.detach().clone()
    bad[:, 0, 0] = value  # the corner: outside the centre region the loss reads
    assert torch.isnan(fn(bad, labels))
    fn(maps, labels).backward()  # the check leaves the gradient alone
    assert maps.grad is not None and bool(torch.isfinite(maps.grad).all())
    assert bool((maps.grad[:, 0, 0] == 0).all())


def test_size_loss_maps_outside_unit_interval(device: torch.device) -> None:
    """CPU maps outside [0, 1] raise; elsewhere (no sync allowed) the loss turns NaN."""
    maps = torch.rand(3, 4, 4, device=device)
    maps[1, 0, 0] = 1.5
    module = L.SizeLoss()
    if device.type == "cpu":
        for fn in (L.size_loss, module):
            with pytest.raises(ValueError, match=r"Expected `maps` in \[0, 1\].*1\.5"):
                fn(maps)
        return
    assert torch.isnan(L.size_loss(maps))
    assert torch.isnan(module(maps))
    per_image = L.size_loss(maps, reduction="none")
    assert torch.isnan(per_image[1]) and torch.isfinite(per_image[[0, 2]]).all()
