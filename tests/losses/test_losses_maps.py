"""Losses on the maps of the current forward: suppression, centre evidence, size,
smoothness, mask. Hand-computed values, gradcheck, module == function, errors."""

from __future__ import annotations

import pytest
import torch

from camseg import losses as L


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- region_mask
def test_region_mask_pcam_centre_at_any_size() -> None:
    m96 = L.region_mask(1 / 3, (96, 96))
    assert m96.sum() == 32 * 32
    assert m96[32:64, 32:64].all()
    m12 = L.region_mask(1 / 3, (12, 12))
    assert m12.nonzero().min().item() == 4 and m12.nonzero().max().item() == 7
    # 3x3 map: just the centre pixel
    assert L.region_mask(1 / 3, (3, 3)).nonzero().tolist() == [[1, 1]]


def test_region_mask_covers_partially_overlapped_pixels() -> None:
    # a 1/3 square of a 10-pixel map spans [3.33, 6.67): pixels 3..6
    m = L.region_mask(1 / 3, (10, 10))
    rows = m.any(1).nonzero().flatten().tolist()
    assert rows == [3, 4, 5, 6]


def test_region_mask_box_and_mask() -> None:
    m = L.region_mask((0.0, 0.5, 0.25, 1.0), (4, 8))
    expected = torch.zeros(4, 8, dtype=torch.bool)
    expected[0, 4:] = True
    assert torch.equal(m, expected)
    assert L.region_mask(expected, (4, 8)) is expected


@pytest.mark.parametrize(
    ("region", "error", "match"),
    [
        (0.0, ValueError, r"`region` as a number .* \(0, 1\]"),
        (1.5, ValueError, r"`region` as a number"),
        ((0.5, 0.0, 0.4, 1.0), ValueError, r"inside the map"),
        ((0.0, 0.0, 1.2, 1.0), ValueError, r"inside the map"),
        ((0.0, 0.0, 1.0), TypeError, r"Expected `region` to be a fraction"),
        ("centre", TypeError, r"Expected `region` to be a fraction"),
        (torch.ones(4, 4), TypeError, r"torch.bool mask"),
        (torch.ones(3, 4, dtype=torch.bool), ValueError, r"map's shape \(4, 4\)"),
        (torch.zeros(4, 4, dtype=torch.bool), ValueError, r"at least one True"),
    ],
)
def test_region_mask_errors(region: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        L.region_mask(region, (4, 4))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- suppression
def test_suppression_exact_value() -> None:
    maps = torch.zeros(3, 6, 6)
    maps[0, 2, 2] = 2.0  # inside the centre 2x2 of a negative: 4 / 4 pixels = 1
    maps[0, 0, 0] = 9.0  # periphery: ignored
    maps[1, 2:4, 2:4] = 5.0  # positive: ignored
    maps[2, 3, 3] = 1.0  # negative: 1 / 4
    labels = torch.tensor([0, 1, 0])
    assert L.suppression_loss(maps, labels).item() == pytest.approx((1.0 + 0.25) / 2)
    per = L.suppression_loss(maps, labels, reduction="none")
    assert per.tolist() == pytest.approx([1.0, 0.0, 0.25])
    assert L.suppression_loss(maps, labels, reduction="sum").item() == pytest.approx(1.25)


def test_suppression_no_negatives_is_zero() -> None:
    maps = torch.ones(2, 6, 6, requires_grad=True)
    loss = L.suppression_loss(maps, torch.tensor([1, 1]))
    assert loss.item() == 0.0
    loss.backward()
    assert maps.grad is not None and maps.grad.abs().sum() == 0


def test_suppression_region_mask_argument() -> None:
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 3.0
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[0, :2] = True
    assert L.suppression_loss(maps, torch.tensor([0]), region=region).item() == pytest.approx(4.5)


# --------------------------------------------------------------------------- centre evidence
def test_center_evidence_exact_value() -> None:
    maps = torch.zeros(2, 6, 6)
    maps[1, 2, 2] = 0.8  # top 1 of the 4 region pixels (top_fraction 0.25)
    labels = torch.tensor([1, 1])
    out = L.center_evidence_loss(maps, labels, top_fraction=0.25, reduction="none")
    assert out.tolist() == pytest.approx([1.0, 0.04])
    # top 2 of 4 -> mean 0.4 -> (1 - 0.4)^2
    out2 = L.center_evidence_loss(maps, labels, top_fraction=0.5, reduction="none")
    assert out2[1].item() == pytest.approx(0.36)
    # evidence outside the region does not count
    maps[0, 0, 0] = 5.0
    assert L.center_evidence_loss(maps, labels, reduction="none")[0].item() == pytest.approx(1.0)


def test_center_evidence_target_reached_is_zero() -> None:
    maps = torch.full((2, 6, 6), 0.95)
    assert L.center_evidence_loss(maps, torch.tensor([1, 0]), target=0.9).item() == 0.0


# --------------------------------------------------------------------------- size
def test_size_exact_values() -> None:
    maps = torch.zeros(3, 2, 2)
    maps[1] = 1.0
    maps[2, 0, 0] = 1.0  # area 0.25
    labels = torch.tensor([1, 1, 1])
    out = L.size_loss(maps, labels, bounds=(0.1, 0.5), reduction="none")
    assert out.tolist() == pytest.approx([0.01, 0.25, 0.0])
    # negatives are ignored; None applies to all
    assert L.size_loss(maps, torch.tensor([0, 0, 0]), bounds=(0.1, 0.5)).item() == 0.0
    assert L.size_loss(maps, None, bounds=(0.1, 0.5)).item() == pytest.approx(0.26 / 3)


# --------------------------------------------------------------------------- smoothness
def test_smoothness_exact_values() -> None:
    maps = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    # vertical diffs all 0; horizontal |1|,|1| per row -> mean 1
    assert L.smoothness_loss(maps).item() == pytest.approx(1.0)
    maps2 = torch.tensor([[[0.0, 2.0], [0.0, 2.0]]])
    assert L.smoothness_loss(maps2, norm="l2").item() == pytest.approx(4.0)
    assert L.smoothness_loss(torch.full((2, 5, 5), 3.0)).item() == 0.0


# --------------------------------------------------------------------------- mask
def test_mask_loss_exact_values() -> None:
    masks = torch.tensor([[[True, False], [False, False]]])
    maps = torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])
    # dice: inter 0.5, sums 1 + 1, smooth 1 -> 1 - 2/3
    assert L.mask_loss(maps, masks).item() == pytest.approx(1 / 3)
    # bce: -(log 0.5 + log 0.5 + 0 + 0) / 4
    bce = L.mask_loss(maps, masks, kind="bce").item()
    assert bce == pytest.approx(-2 * torch.log(torch.tensor(0.5)).item() / 4)
    both = L.mask_loss(maps, masks, kind="dice+bce").item()
    assert both == pytest.approx(1 / 3 + bce)


def test_mask_loss_valid_selects_images() -> None:
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    maps = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)])
    out = L.mask_loss(maps, masks, torch.tensor([1, 0]), reduction="none")
    assert out.tolist() == [0.0, 0.0]
    assert L.mask_loss(maps, masks).item() == pytest.approx(0.5 * (1 - 1 / 5))


def test_mask_loss_empty_mask_empty_map_is_zero() -> None:
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    for kind in ("dice", "bce", "dice+bce"):
        assert L.mask_loss(torch.zeros(1, 3, 3), masks, kind=kind).item() == 0.0  # type: ignore[arg-type]


# --------------------------------------------------------------------------- gradcheck
def _gradcheck(fn, *inputs: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_gradcheck_suppression() -> None:
    maps = _rand(3, 6, 6).requires_grad_()
    _gradcheck(lambda m: L.suppression_loss(m, torch.tensor([0, 1, 0])), maps)


def test_gradcheck_center_evidence() -> None:
    maps = _rand(3, 6, 6, seed=1).mul(0.8).requires_grad_()
    _gradcheck(lambda m: L.center_evidence_loss(m, torch.tensor([1, 1, 0]), top_fraction=0.5), maps)


def test_gradcheck_size() -> None:
    maps = _rand(3, 5, 5, seed=2).requires_grad_()
    _gradcheck(lambda m: L.size_loss(m, torch.tensor([1, 1, 1]), bounds=(0.6, 0.7)), maps)
    _gradcheck(lambda m: L.size_loss(m, torch.tensor([1, 1, 1]), bounds=(0.0, 0.3)), maps)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_gradcheck_smoothness(norm: str) -> None:
    maps = _rand(2, 5, 4, seed=3).requires_grad_()
    _gradcheck(lambda m: L.smoothness_loss(m, norm=norm), maps)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["dice", "bce", "dice+bce"])
def test_gradcheck_mask(kind: str) -> None:
    maps = _rand(2, 4, 4, seed=4).mul(0.8).add(0.1).requires_grad_()
    masks = _rand(2, 4, 4, seed=5) > 0.5
    _gradcheck(lambda m: L.mask_loss(m, masks, kind=kind), maps)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- module == function
def test_modules_equal_functions() -> None:
    maps = _rand(4, 9, 9, seed=6, dtype=torch.float32)
    labels = torch.tensor([0, 1, 1, 0])
    masks = _rand(4, 9, 9, seed=7) > 0.6
    region = (0.2, 0.1, 0.7, 0.9)
    pairs = [
        (
            L.SuppressionLoss(region=region)(maps, labels),
            L.suppression_loss(maps, labels, region=region),
        ),
        (
            L.CenterEvidenceLoss(region=region, target=0.7, top_fraction=0.3)(maps, labels),
            L.center_evidence_loss(maps, labels, region=region, target=0.7, top_fraction=0.3),
        ),
        (L.SizeLoss(bounds=(0.6, 0.8))(maps, labels), L.size_loss(maps, labels, bounds=(0.6, 0.8))),
        (L.SmoothnessLoss(norm="l2")(maps), L.smoothness_loss(maps, norm="l2")),
        (
            L.MaskLoss(kind="dice+bce", smooth=0.5)(maps, masks),
            L.mask_loss(maps, masks, kind="dice+bce", smooth=0.5),
        ),
        (
            L.SuppressionLoss(reduction="none")(maps, labels),
            L.suppression_loss(maps, labels, reduction="none"),
        ),
    ]
    for got, want in pairs:
        assert torch.equal(got, want)


# --------------------------------------------------------------------------- dtypes, autocast
def test_half_precision_inputs_are_promoted() -> None:
    maps = _rand(2, 6, 6, dtype=torch.float32)
    labels = torch.tensor([0, 1])
    want = L.suppression_loss(maps, labels)
    got = L.suppression_loss(maps.bfloat16(), labels)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=2e-2)


def test_works_under_cpu_autocast() -> None:
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)
    x = _rand(2, 3, 8, 8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = torch.sigmoid(conv(x)[:, 0])
        loss = (
            L.suppression_loss(maps, torch.tensor([0, 1]))
            + L.center_evidence_loss(maps, torch.tensor([0, 1]))
            + L.size_loss(maps, torch.tensor([0, 1]))
            + L.smoothness_loss(maps)
            + L.mask_loss(maps, maps.detach() > 0.5)
        )
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


# --------------------------------------------------------------------------- errors
def test_errors_maps_and_labels() -> None:
    maps = torch.zeros(2, 6, 6)
    with pytest.raises(ValueError, match=r"`maps` to be a tensor of shape \(B, H, W\)"):
        L.suppression_loss(torch.zeros(2, 1, 6, 6), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"`maps` to have a floating-point dtype"):
        L.suppression_loss(torch.zeros(2, 6, 6, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"`maps` to be a torch.Tensor"):
        L.size_loss([[0.0]], None)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`labels` to hold binary labels 0/1, but got values \[2\]"
    ):
        L.suppression_loss(maps, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"same batch size"):
        L.center_evidence_loss(maps, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"`reduction` to be one of"):
        L.suppression_loss(maps, torch.tensor([0, 1]), reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"inside the map"):
        L.suppression_loss(maps, torch.tensor([0, 1]), region=(0.5, 0.5, 0.4, 0.9))


def test_errors_options() -> None:
    maps = torch.zeros(2, 6, 6)
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"`top_fraction` to lie in \(0, 1\]"):
        L.center_evidence_loss(maps, labels, top_fraction=0.0)
    with pytest.raises(ValueError, match=r"`target` to be a finite number >= 0"):
        L.center_evidence_loss(maps, labels, target=-1.0)
    with pytest.raises(ValueError, match=r"`bounds` to satisfy 0 <= low <= high <= 1"):
        L.size_loss(maps, labels, bounds=(0.5, 0.2))
    with pytest.raises(TypeError, match=r"`bounds` to be a pair"):
        L.size_loss(maps, labels, bounds=(0.5,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least 2×2"):
        L.smoothness_loss(torch.zeros(2, 1, 6))
    with pytest.raises(ValueError, match=r"`norm` to be one of"):
        L.smoothness_loss(maps, norm="l3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`bounds` to satisfy"):
        L.SizeLoss(bounds=(0.9, 0.1))
    with pytest.raises(ValueError, match=r"`top_fraction` to lie in \(0, 1\]"):
        L.CenterEvidenceLoss(top_fraction=0.0)
    with pytest.raises(ValueError, match=r"`region` as a number"):
        L.SuppressionLoss(region=2.0)
    with pytest.raises(TypeError, match=r"torch.bool mask"):
        L.CenterEvidenceLoss(region=torch.ones(3, 3))


def test_errors_mask_loss() -> None:
    maps = torch.zeros(2, 4, 4)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    with pytest.raises(TypeError, match=r"`masks` to be a torch.bool mask"):
        L.mask_loss(maps, masks.float())
    with pytest.raises(ValueError, match=r"`maps` and `masks` to have the same shape.*upsample"):
        L.mask_loss(maps, masks[:, :2])
    with pytest.raises(ValueError, match=r"`maps` to lie in \[0.0, 1.0\].*probabilities"):
        L.mask_loss(maps + 2, masks)
    with pytest.raises(ValueError, match=r"`smooth` to be > 0"):
        L.mask_loss(maps, masks, smooth=0.0)
    with pytest.raises(ValueError, match=r"`kind` to be one of"):
        L.mask_loss(maps, masks, kind="focal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`valid` to hold binary labels"):
        L.mask_loss(maps, masks, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"same batch size"):
        L.mask_loss(maps, masks, torch.tensor([0, 1, 1]))
