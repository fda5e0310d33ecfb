"""MIL loss and the pseudo-mask loss: values, gradcheck, module == function,
properties (hypothesis), errors naming the argument."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg import losses as L


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- mil_pool
@pytest.mark.parametrize("pooling", ["lse", "max", "mean", "topk"])
def test_mil_pool_of_a_constant_map_is_the_constant(pooling: str) -> None:
    z = torch.full((2, 12, 12), -1.5, dtype=torch.float64)
    out = L.mil_pool(z, pooling=pooling, k=3)  # type: ignore[arg-type]
    assert torch.allclose(out, torch.full((2,), -1.5, dtype=torch.float64))


def test_mil_pool_only_reads_the_label_region() -> None:
    z = _rand(3, 12, 12)
    inside = L.region_mask(1 / 3, (12, 12))
    changed = z.clone()
    changed[:, ~inside] = 1e3  # the periphery says nothing
    for pooling in ("lse", "max", "mean", "topk"):
        assert torch.equal(L.mil_pool(z, pooling=pooling), L.mil_pool(changed, pooling=pooling))  # type: ignore[arg-type]


def test_mil_pool_hand_values_and_limits() -> None:
    z = torch.full((1, 6, 6), -4.0, dtype=torch.float64)
    z[0, 2, 3] = 4.0
    vals = torch.tensor([4.0, -4.0, -4.0, -4.0], dtype=torch.float64)
    lse = math.log(vals.exp().mean().item())
    assert L.mil_pool(z).item() == pytest.approx(lse)
    assert L.mil_pool(z, pooling="max").item() == 4.0
    assert L.mil_pool(z, pooling="mean").item() == -2.0
    assert L.mil_pool(z, pooling="topk", k=2).item() == 0.0
    # temperature -> 0: max; large: mean
    assert L.mil_pool(z, temperature=1e-3).item() == pytest.approx(
        4.0 - 1e-3 * math.log(4), abs=1e-6
    )
    assert L.mil_pool(z, temperature=1e4).item() == pytest.approx(-2.0, abs=1e-2)


# --------------------------------------------------------------------------- mil_loss
@pytest.mark.parametrize("pooling", ["lse", "max", "mean", "topk"])
def test_mil_pool_per_sample_regions_equal_one_region_per_call(pooling: str) -> None:
    z = _rand(4, 8, 8, seed=3)
    g = torch.Generator().manual_seed(1)
    regions = torch.zeros(4, 8, 8, dtype=torch.bool)
    for b in range(4):  # a 4x4 label region at a different place per sample
        oy, ox = (int(v) for v in torch.randint(0, 5, (2,), generator=g))
        regions[b, oy : oy + 4, ox : ox + 4] = True
    out = L.mil_pool(z, region=regions, pooling=pooling, k=3)  # type: ignore[arg-type]
    one = [
        L.mil_pool(z[b : b + 1], region=regions[b], pooling=pooling, k=3)  # type: ignore[arg-type]
        for b in range(4)
    ]
    assert torch.allclose(out, torch.cat(one), atol=1e-12)
    z.requires_grad_(True)
    L.mil_pool(z, region=regions, pooling=pooling, k=3).sum().backward()  # type: ignore[arg-type]
    assert z.grad is not None and bool((z.grad[~regions] == 0).all())


def test_mil_pool_per_sample_region_errors() -> None:
    z = torch.zeros(2, 6, 6)
    with pytest.raises(ValueError, match=r"`region`.*shape"):
        L.mil_pool(z, region=torch.ones(3, 6, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"`region`"):
        L.mil_pool(z, region=torch.ones(2, 6, 6))
    empty = torch.ones(2, 6, 6, dtype=torch.bool)
    empty[1] = False
    with pytest.raises(ValueError, match=r"`region`.*at least one"):
        L.mil_pool(z, region=empty)
    assert L.mil_pool(torch.zeros(0, 6, 6), region=torch.ones(0, 6, 6, dtype=torch.bool)).shape == (
        0,
    )


def test_mil_loss_is_bce_of_the_pooled_logit() -> None:
    z, y = _rand(4, 12, 12), torch.tensor([1, 0, 1, 0])
    s = L.mil_pool(z)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(s, y.double())
    assert torch.allclose(L.mil_loss(z, y), expected)
    per = L.mil_loss(z, y, reduction="none")
    assert per.shape == (4,)
    assert torch.allclose(L.mil_loss(z, y, reduction="sum"), per.sum())


def test_mil_loss_zero_at_its_optimum() -> None:
    z = torch.full((2, 12, 12), -200.0, dtype=torch.float64)
    z[0, 5, 6] = 200.0  # one tumor location in the positive's centre
    z[1, 0, 0] = 200.0  # the negative's tumor lies outside the centre: allowed
    y = torch.tensor([1, 0])
    assert L.mil_loss(z, y, pooling="max").item() == pytest.approx(0.0, abs=1e-30)
    assert L.mil_loss(z, y).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("pooling", ["lse", "max", "mean", "topk"])
def test_mil_loss_gradcheck(pooling: str) -> None:
    z = _rand(3, 6, 6).requires_grad_(True)
    y = torch.tensor([1, 0, 1])
    assert torch.autograd.gradcheck(
        lambda t: L.mil_loss(t, y, pooling=pooling, k=2),  # type: ignore[arg-type]
        (z,),
    )


def test_mil_loss_gives_no_gradient_outside_the_region() -> None:
    z = _rand(2, 12, 12).requires_grad_(True)
    L.mil_loss(z, torch.tensor([1, 0])).backward()
    assert z.grad is not None
    inside = L.region_mask(1 / 3, (12, 12))
    assert bool((z.grad[:, ~inside] == 0).all())
    assert bool((z.grad[1, inside] > 0).all())  # a negative's whole centre is pushed down


def test_mil_module_equals_function() -> None:
    z, y = _rand(4, 12, 12), torch.tensor([1, 0, 0, 1])
    for kw in ({}, {"pooling": "topk", "k": 4}, {"temperature": 0.5, "reduction": "none"}):
        assert torch.allclose(L.MILLoss(**kw)(z, y), L.mil_loss(z, y, **kw))  # type: ignore[arg-type]


def test_mil_loss_half_precision_is_promoted() -> None:
    out = L.mil_loss(_rand(2, 6, 6, dtype=torch.float32).bfloat16(), torch.tensor([1, 0]))
    assert out.dtype == torch.float32


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    pooling=st.sampled_from(["lse", "max", "mean", "topk"]),
)
def test_mil_loss_properties(b: int, seed: int, pooling: str) -> None:
    z = _rand(b, 9, 9, seed=seed) * 5
    y = torch.randint(0, 2, (b,), generator=torch.Generator().manual_seed(seed))
    per = L.mil_loss(z, y, pooling=pooling, reduction="none")  # type: ignore[arg-type]
    assert bool((per >= 0).all())
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + 1))
    permuted = L.mil_loss(z[perm], y[perm], pooling=pooling, reduction="none")  # type: ignore[arg-type]
    assert torch.allclose(permuted, per[perm])
    assert torch.allclose(
        L.mil_loss(z[perm], y[perm], pooling=pooling),
        L.mil_loss(z, y, pooling=pooling),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"logits": [[1.0]]}, TypeError, r"`logits`"),
        ({"logits": torch.zeros(2, 4)}, ValueError, r"`logits` .*\(B, H, W\)"),
        ({"logits": torch.zeros(2, 4, 4, dtype=torch.long)}, TypeError, r"`logits`"),
        ({"logits": torch.full((2, 6, 6), math.nan)}, ValueError, r"`logits` to be finite"),
        ({"labels": torch.tensor([1, 2])}, ValueError, r"`labels`"),
        ({"labels": torch.tensor([1, 0, 1])}, ValueError, r"`labels`"),
        ({"labels": [1, 0]}, TypeError, r"`labels`"),
        ({"pooling": "median"}, ValueError, r"`pooling`"),
        ({"temperature": 0.0}, ValueError, r"`temperature`"),
        ({"temperature": math.inf}, ValueError, r"`temperature`"),
        ({"temperature": "1"}, TypeError, r"`temperature`"),
        ({"k": 0}, ValueError, r"`k`"),
        ({"k": 1.5}, TypeError, r"`k`"),
        ({"region": 0.0}, ValueError, r"`region`"),
        ({"reduction": "avg"}, ValueError, r"`reduction`"),
    ],
)
def test_mil_loss_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"logits": torch.zeros(2, 6, 6), "labels": torch.tensor([1, 0])}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        L.mil_loss(**args)  # type: ignore[arg-type]


def test_mil_module_checks_its_options_at_construction() -> None:
    with pytest.raises(ValueError, match="`pooling`"):
        L.MILLoss(pooling="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`temperature`"):
        L.MILLoss(temperature=-1.0)


# --------------------------------------------------------------------------- pseudo_mask_loss
def _pseudo(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (b, h, w), generator=g).to(torch.int8)


def test_pseudo_mask_loss_is_bce_over_the_labelled_pixels() -> None:
    z, g = _rand(3, 5, 5), _pseudo(3, 5, 5)
    per = L.pseudo_mask_loss(z, g, reduction="none")
    for b in range(3):
        keep = g[b] >= 0
        ref = torch.nn.functional.binary_cross_entropy_with_logits(
            z[b][keep], (g[b][keep] == 1).double()
        )
        assert per[b].item() == pytest.approx(ref.item())
    assert L.pseudo_mask_loss(z, g).item() == pytest.approx(per.mean().item())


def test_pseudo_mask_loss_ignores_ignored_pixels_and_images() -> None:
    z, g = _rand(2, 4, 4), _pseudo(2, 4, 4)
    g[1] = -1  # nothing labelled: does not count in the mean, no gradient
    changed = z.clone()
    changed[g < 0] = 1e3
    assert torch.allclose(L.pseudo_mask_loss(z, g), L.pseudo_mask_loss(changed, g))
    assert L.pseudo_mask_loss(z, g, reduction="none")[1].item() == 0.0
    assert L.pseudo_mask_loss(z, g).item() == pytest.approx(L.pseudo_mask_loss(z[:1], g[:1]).item())
    zz = z.clone().requires_grad_(True)
    L.pseudo_mask_loss(zz, g).backward()
    assert zz.grad is not None and bool((zz.grad[g < 0] == 0).all())


def test_pseudo_mask_loss_zero_at_its_optimum_and_bool_masks() -> None:
    g = _pseudo(2, 6, 6)
    z = torch.where(g == 1, 100.0, -100.0).double()
    assert L.pseudo_mask_loss(z, g).item() == pytest.approx(0.0, abs=1e-30)
    m = g == 1
    assert L.pseudo_mask_loss(z, m).item() == pytest.approx(0.0, abs=1e-30)


def test_pseudo_mask_loss_pos_weight() -> None:
    z, g = _rand(1, 4, 4), _pseudo(1, 4, 4)
    w = L.pseudo_mask_loss(z, g, pos_weight=2.0)
    pw = torch.where(g == 1, 2.0, 1.0).double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        z, (g == 1).double(), reduction="none"
    )
    keep = g >= 0
    assert w.item() == pytest.approx((bce * pw)[keep].sum().item() / keep.sum().item())


def test_pseudo_mask_loss_gradcheck_and_module() -> None:
    z, g = _rand(2, 5, 5).requires_grad_(True), _pseudo(2, 5, 5)
    assert torch.autograd.gradcheck(lambda t: L.pseudo_mask_loss(t, g, pos_weight=1.5), (z,))
    assert torch.allclose(
        L.PseudoMaskLoss(pos_weight=1.5)(z, g), L.pseudo_mask_loss(z, g, pos_weight=1.5)
    )


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_pseudo_mask_loss_properties(b: int, seed: int) -> None:
    z, g = _rand(b, 6, 6, seed=seed) * 4, _pseudo(b, 6, 6, seed=seed)
    per = L.pseudo_mask_loss(z, g, reduction="none")
    assert bool((per >= 0).all())
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed + 1))
    assert torch.allclose(L.pseudo_mask_loss(z[perm], g[perm], reduction="none"), per[perm])
    assert torch.allclose(L.pseudo_mask_loss(z[perm], g[perm]), L.pseudo_mask_loss(z, g))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"logits": "z"}, TypeError, r"`logits`"),
        ({"logits": torch.zeros(2, 4, 4, dtype=torch.int64)}, TypeError, r"`logits`"),
        ({"logits": torch.full((2, 4, 4), math.inf)}, ValueError, r"`logits` to be finite"),
        ({"pseudo_masks": [[1]]}, TypeError, r"`pseudo_masks`"),
        ({"pseudo_masks": torch.zeros(2, 4, 4)}, TypeError, r"`pseudo_masks` .*integer"),
        (
            {"pseudo_masks": torch.zeros(2, 4, 5, dtype=torch.int8)},
            ValueError,
            r"`pseudo_masks` .*shape",
        ),
        (
            {"pseudo_masks": torch.full((2, 4, 4), 2, dtype=torch.int8)},
            ValueError,
            r"only 1, 0 and -1",
        ),
        ({"pos_weight": -1.0}, ValueError, r"`pos_weight`"),
        ({"reduction": "mean2"}, ValueError, r"`reduction`"),
    ],
)
def test_pseudo_mask_loss_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {
        "logits": torch.zeros(2, 4, 4),
        "pseudo_masks": torch.zeros(2, 4, 4, dtype=torch.int8),
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        L.pseudo_mask_loss(**args)  # type: ignore[arg-type]
