"""Hypothesis properties of camseg.losses: >= 0, zero at the optimum, invariant to
batch order, and consistent between reductions."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg import losses as L

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def batches(draw: st.DrawFn, min_side: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maps in [0, 1] (B, H, W), 0/1 labels (B,), masks (B, H, W), from one seed."""
    b = draw(st.integers(1, 5))
    h = draw(st.integers(min_side, 12))
    w = draw(st.integers(min_side, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, h, w, generator=g, dtype=torch.float64)
    labels = (torch.rand(b, generator=g) < 0.5).long()
    masks = torch.rand(b, h, w, generator=g) < 0.4
    return maps, labels, masks


def _map_losses(maps: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, reduction: str):  # type: ignore[no-untyped-def]
    return {
        "suppression": L.suppression_loss(maps, labels, reduction=reduction),  # type: ignore[arg-type]
        "evidence": L.center_evidence_loss(maps, labels, reduction=reduction),  # type: ignore[arg-type]
        "size": L.size_loss(maps, labels, bounds=(0.2, 0.4), reduction=reduction),  # type: ignore[arg-type]
        "smooth": L.smoothness_loss(maps, reduction=reduction),  # type: ignore[arg-type]
        "mask": L.mask_loss(maps, masks, kind="dice+bce", reduction=reduction),  # type: ignore[arg-type]
        "puzzle": L.puzzle_loss(
            lambda x: x.mean(1) * x.mean(dim=(1, 2, 3))[:, None, None],  # not local
            maps[:, None].repeat(1, 1, 2, 2),
            reduction=reduction,  # type: ignore[arg-type]
        ),
    }


@SETTINGS
@given(batches())
def test_nonnegative(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    maps, labels, masks = batch
    for name, value in _map_losses(maps, labels, masks, "none").items():
        assert (value >= 0).all(), name
    images = maps[:, None]
    eq = L.equivariance_loss(lambda x: x.mean(1).cumsum(-1), images, sample="all", reduction="none")
    assert (eq >= 0).all()
    am = L.attention_mining_loss(lambda x: x.mean(dim=(1, 2, 3)), images, maps, labels)
    assert am >= 0


@SETTINGS
@given(batches(), st.data())
def test_invariant_to_batch_order(
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    maps, labels, masks = batch
    perm = torch.tensor(data.draw(st.permutations(range(maps.shape[0]))))
    a = _map_losses(maps, labels, masks, "mean")
    b = _map_losses(maps[perm], labels[perm], masks[perm], "mean")
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    pa = _map_losses(maps, labels, masks, "none")
    pb = _map_losses(maps[perm], labels[perm], masks[perm], "none")
    for name in pa:
        torch.testing.assert_close(pa[name][perm], pb[name], msg=name)


@SETTINGS
@given(batches())
def test_sum_is_sum_of_per_image(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    maps, labels, masks = batch
    per = _map_losses(maps, labels, masks, "none")
    total = _map_losses(maps, labels, masks, "sum")
    for name in per:
        torch.testing.assert_close(per[name].sum(), total[name], msg=name)


@SETTINGS
@given(batches())
def test_zero_at_the_optimum(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    maps, labels, masks = batch
    region = L.region_mask(1 / 3, tuple(maps.shape[-2:]))  # type: ignore[arg-type]
    # negatives silent in the region, anything elsewhere
    quiet = torch.where(region, torch.zeros_like(maps), maps)
    assert L.suppression_loss(quiet, torch.zeros_like(labels)).item() == 0.0
    # positives saturated in the region
    loud = torch.where(region, torch.ones_like(maps), maps)
    assert L.center_evidence_loss(loud, torch.ones_like(labels)).item() == 0.0
    # area inside the bounds: a constant map of value 0.3 has area 0.3
    assert L.size_loss(torch.full_like(maps, 0.3), labels, bounds=(0.2, 0.4)).item() == 0.0
    assert L.smoothness_loss(torch.full_like(maps, 0.7)).item() == 0.0
    assert L.mask_loss(masks.double(), masks, kind="dice+bce").item() == 0.0
    images = maps[:, None]
    pointwise = lambda x: x.mean(1) ** 2  # noqa: E731
    assert L.equivariance_loss(pointwise, images, sample="all").item() == 0.0
    assert (
        L.attention_mining_loss(lambda x: x.amax(dim=(1, 2, 3)) * 0, images, maps, labels).item()
        == 0.0
    )


@SETTINGS
@given(batches(min_side=4))
def test_equivariant_cam_has_zero_loss_for_every_element(
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> None:
    maps, _, _ = batch
    # a 3x3 isotropic blur is D4-equivariant (zero padding is symmetric too)
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=maps.dtype)
    blur = lambda x: torch.nn.functional.conv2d(x, kernel.view(1, 1, 3, 3), padding=1)[:, 0]  # noqa: E731
    loss = L.equivariance_loss(blur, maps[:, None], sample="all")
    assert loss.item() < 1e-12


@SETTINGS
@given(batches(), st.floats(0.0, 3.0), st.integers(0, 50))
def test_regularizer_is_weighted_sum(
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], weight: float, step: int
) -> None:
    maps, labels, _ = batch
    reg = L.CAMRegularizer(
        {"s": (L.SuppressionLoss(), weight), "tv": (L.SmoothnessLoss(), 1.0)}, warmup={"s": 10}
    )
    total, parts = reg(maps=maps, labels=labels, step=step)
    ramp = min(1.0, step / 10)
    want = weight * ramp * L.suppression_loss(maps, labels) + L.smoothness_loss(maps)
    torch.testing.assert_close(total, want)
    assert total >= 0
    if weight * ramp > 0:
        torch.testing.assert_close(parts["s"], L.suppression_loss(maps, labels))
