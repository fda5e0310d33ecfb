"""Losses with extra passes: equivariance (SEAM), puzzle (Puzzle-CAM), attention
mining (GAIN); and the CAMRegularizer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camseg
from camseg import losses as L


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype)


def _pointwise(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1) ** 2


def _not_equivariant(x: torch.Tensor) -> torch.Tensor:
    # a fixed ramp along the width: flips and rotations change it
    ramp = torch.linspace(0, 1, x.shape[-1], dtype=x.dtype)
    return x.mean(1) * ramp


# --------------------------------------------------------------------------- equivariance
def test_equivariance_zero_for_pointwise_cam() -> None:
    x = _rand(2, 3, 6, 6)
    assert L.equivariance_loss(_pointwise, x, sample="all").item() == pytest.approx(0.0, abs=1e-12)


def test_equivariance_exact_value_for_hflip() -> None:
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0, :, 0] = 1.0  # a bright left column
    # maps = x * ramp(0, .5, 1): original map [1*0, 0, 0]; flipped image has the bright
    # column on the right -> its map is 1 there; flipped original map is 0 there.
    loss = L.equivariance_loss(_not_equivariant, x, transforms="flips", sample="all")
    # hflip: |map(flip x) - flip(map x)| = [0, 0, 1] per row -> mean 1/3
    # vflip+rot180 (element (2, True)) = vertical flip: the column stays -> 0
    assert loss.item() == pytest.approx((1 / 3 + 0.0) / 2)


def test_equivariance_samples_one_transform_per_call() -> None:
    calls = []

    def cam_fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return x.mean(1)

    x = _rand(2, 3, 4, 4)
    L.equivariance_loss(cam_fn, x)
    assert len(calls) == 2  # the original maps + one transform
    calls.clear()
    L.equivariance_loss(cam_fn, x, cam_fn(x), sample=3)
    assert len(calls) == 1 + 3


def test_equivariance_generator_makes_draw_reproducible() -> None:
    x = _rand(2, 3, 6, 6)
    a = [
        L.equivariance_loss(_not_equivariant, x, generator=torch.Generator().manual_seed(s))
        for s in range(6)
    ]
    b = [
        L.equivariance_loss(_not_equivariant, x, generator=torch.Generator().manual_seed(s))
        for s in range(6)
    ]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len({round(v.item(), 9) for v in a}) > 1


def test_equivariance_scales() -> None:
    x = _rand(2, 3, 8, 8)
    # a constant-per-image cam is scale-equivariant
    const = lambda im: im.mean(dim=(1, 2, 3))[:, None, None].expand(-1, im.shape[-2], im.shape[-1])  # noqa: E731
    loss = L.equivariance_loss(const, x, transforms=None, scales=(0.5,), sample="all")
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss2 = L.equivariance_loss(
        _not_equivariant, x, transforms=None, scales=(0.5, 2.0), sample="all"
    )
    assert loss2.item() > 0


def test_gradcheck_equivariance() -> None:
    conv = nn.Conv2d(2, 1, 3, padding=1).double()

    def fn(x: torch.Tensor) -> torch.Tensor:
        return L.equivariance_loss(
            lambda im: conv(im)[:, 0] * 1.0, x, sample=2, generator=torch.Generator().manual_seed(0)
        )

    x = _rand(2, 2, 5, 5).requires_grad_()
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_equivariance_module_equals_function() -> None:
    x = _rand(3, 3, 6, 6, dtype=torch.float32)
    mod = L.EquivarianceLoss(transforms="c4", sample=2, scales=(0.5,), reduction="none")
    got = mod(_not_equivariant, x, generator=torch.Generator().manual_seed(3))
    want = L.equivariance_loss(
        _not_equivariant,
        x,
        transforms="c4",
        sample=2,
        scales=(0.5,),
        generator=torch.Generator().manual_seed(3),
        reduction="none",
    )
    assert torch.equal(got, want)


def test_equivariance_with_gradcam_engine(tiny_net: nn.Module) -> None:
    x = _rand(2, 3, 8, 8, dtype=torch.float32)

    def cam_fn(images: torch.Tensor) -> torch.Tensor:
        return camseg.GradCAM(tiny_net, "features")(
            images, targets=1, normalize=None, create_graph=True
        )

    loss = L.equivariance_loss(cam_fn, x, generator=torch.Generator().manual_seed(0))
    assert loss.item() > 0
    loss.backward()
    # Grad-CAM maps depend on the features and the head's weight (not its bias)
    for name, p in tiny_net.named_parameters():
        if name != "fc.bias":
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_equivariance_errors() -> None:
    x = _rand(2, 3, 4, 4, dtype=torch.float32)
    with pytest.raises(TypeError, match=r"`cam_fn` to be callable"):
        L.equivariance_loss("gradcam", x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`images` to be a tensor of shape \(B, C, H, W\)"):
        L.equivariance_loss(_pointwise, x[0])
    with pytest.raises(ValueError, match=r"`sample` to be at most the number .* \(3\)"):
        L.equivariance_loss(_pointwise, x, transforms="c4", sample=4)
    with pytest.raises(ValueError, match=r"`transforms` to be one of"):
        L.equivariance_loss(_pointwise, x, transforms="d8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"every value of `scales` to be > 0"):
        L.equivariance_loss(_pointwise, x, scales=(0.0,))
    with pytest.raises(TypeError, match=r"`scales` to be a sequence"):
        L.equivariance_loss(_pointwise, x, scales=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least one transform other than the identity"):
        L.equivariance_loss(_pointwise, x, transforms=None)
    with pytest.raises(ValueError, match=r"`cam_fn` to return maps of shape \(B, h, w\)"):
        L.equivariance_loss(lambda im: im, x)
    with pytest.raises(ValueError, match=r"same batch size"):
        L.equivariance_loss(_pointwise, x, torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match=r"`sample` to be an int"):
        L.equivariance_loss(_pointwise, x, sample=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- puzzle
def test_puzzle_zero_for_local_cam() -> None:
    x = _rand(2, 3, 8, 8)
    assert L.puzzle_loss(_pointwise, x, tiles=2).item() == pytest.approx(0.0, abs=1e-12)
    assert L.puzzle_loss(_pointwise, x, tiles=4).item() == pytest.approx(0.0, abs=1e-12)


def test_puzzle_exact_value_for_global_cam() -> None:
    # cam = image mean broadcast over the map: tiles see their own means
    def cam_fn(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None, None].expand(-1, x.shape[-2], x.shape[-1])

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :2, :2] = 4.0  # top-left tile mean 4, whole mean 1
    # merged map: 4 in the top-left quarter, 0 elsewhere; whole map 1 everywhere
    # |4 - 1| on 4 pixels, |0 - 1| on 12 pixels -> (12 + 12) / 16
    assert L.puzzle_loss(cam_fn, x).item() == pytest.approx(1.5)


def test_puzzle_resizes_merged_maps() -> None:
    def cam_fn(x: torch.Tensor) -> torch.Tensor:  # half-resolution maps
        return torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 2)[:, 0]

    x = torch.ones(1, 3, 8, 8)
    assert L.puzzle_loss(cam_fn, x, tiles=2).item() == pytest.approx(0.0)


def test_gradcheck_puzzle() -> None:
    conv = nn.Conv2d(2, 1, 3, padding=1).double()
    x = _rand(2, 2, 4, 4, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda im: L.puzzle_loss(lambda t: conv(t)[:, 0], im), (x,))


def test_puzzle_module_and_errors() -> None:
    x = _rand(2, 3, 6, 6, dtype=torch.float32)
    assert torch.equal(
        L.PuzzleLoss(tiles=3)(_not_equivariant, x), L.puzzle_loss(_not_equivariant, x, tiles=3)
    )
    with pytest.raises(ValueError, match=r"divisible by `tiles` \(4\)"):
        L.puzzle_loss(_pointwise, x, tiles=4)
    with pytest.raises(ValueError, match=r"`tiles` to be an int >= 1"):
        L.puzzle_loss(_pointwise, x, tiles=0)
    with pytest.raises(ValueError, match=r"`maps` to be a tensor of shape \(B, H, W\)"):
        L.puzzle_loss(_pointwise, x, torch.zeros(2, 1, 6, 6))


# --------------------------------------------------------------------------- attention mining
def _score(x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(1, 2, 3))


def test_attention_mining_exact_values() -> None:
    x = torch.zeros(2, 1, 2, 2)
    x[:, 0, 0, 0] = 1.0
    maps = torch.zeros(2, 2, 2)
    maps[0, 0, 0] = 1.0  # image 0: covers the evidence
    # soft mask at the evidence pixel: sigmoid(10 * 0.5); at zero map: sigmoid(-5)
    t_hi = torch.sigmoid(torch.tensor(5.0)).item()
    t_lo = torch.sigmoid(torch.tensor(-5.0)).item()
    out = L.attention_mining_loss(_score, x, maps, reduction="none")
    assert out.tolist() == pytest.approx([1 - t_hi, 1 - t_lo])
    # labels: the loss applies to positives only
    out = L.attention_mining_loss(_score, x, maps, torch.tensor([0, 1]))
    assert out.item() == pytest.approx(1 - t_lo)
    # fill value: erased pixels become `fill`
    out = L.attention_mining_loss(_score, x, maps, torch.tensor([1, 0]), fill=0.5, omega=1e3)
    assert out.item() == pytest.approx(0.5)


def test_gradcheck_attention_mining() -> None:
    x = _rand(2, 1, 3, 3, seed=2)
    maps = _rand(2, 3, 3, seed=3).requires_grad_()
    fn = lambda m: L.attention_mining_loss(lambda im: im.mean(dim=(1, 2, 3)), x, m, omega=3.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (maps,))


def test_attention_mining_module_and_errors() -> None:
    x = _rand(2, 3, 4, 4, dtype=torch.float32)
    maps = _rand(2, 4, 4, seed=1, dtype=torch.float32)
    score = lambda im: im.mean(dim=(1, 2, 3))  # noqa: E731
    mod = L.AttentionMiningLoss(omega=5.0, sigma=0.3, fill=1.0)
    assert torch.equal(
        mod(score, x, maps), L.attention_mining_loss(score, x, maps, omega=5.0, sigma=0.3, fill=1.0)
    )
    with pytest.raises(
        ValueError, match=r"`maps` to have shape \(B, H, W\) matching `images`.*upsample"
    ):
        L.attention_mining_loss(score, x, maps[:, :2])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*sigmoid"):
        L.attention_mining_loss(lambda im: im.sum(dim=(1, 2, 3)), x, maps)
    with pytest.raises(ValueError, match=r"`score_fn` to return scores of shape \(2,\)"):
        L.attention_mining_loss(lambda im: im.mean(1), x, maps)
    with pytest.raises(ValueError, match=r"`omega` to be > 0"):
        L.attention_mining_loss(score, x, maps, omega=0.0)
    with pytest.raises(TypeError, match=r"`score_fn` to be callable"):
        L.attention_mining_loss(None, x, maps)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`fill` to be a number"):
        L.attention_mining_loss(score, x, maps, fill="white")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- regulariser
def test_regularizer_total_components_and_dispatch() -> None:
    maps = torch.zeros(2, 6, 6)
    maps[0, 2:4, 2:4] = 1.0
    labels = torch.tensor([0, 1])
    x = _rand(2, 3, 6, 6, dtype=torch.float32)
    reg = L.CAMRegularizer(
        {
            "suppress": (L.SuppressionLoss(), 2.0),
            "evidence": (L.CenterEvidenceLoss(), 1.0),
            "tv": (L.SmoothnessLoss(), 0.5),
            "puzzle": (L.PuzzleLoss(), 1.0),
            "fn": (lambda maps, **_: maps.sum(), 0.0),
        }
    )
    total, parts = reg(maps=maps, labels=labels, images=x, cam_fn=lambda im: im.mean(1))
    assert list(parts) == ["suppress", "evidence", "tv", "puzzle", "fn"]
    assert parts["suppress"].item() == pytest.approx(1.0)
    assert parts["evidence"].item() == pytest.approx(1.0)
    want_tv = L.smoothness_loss(maps).item()
    assert parts["tv"].item() == pytest.approx(want_tv)
    assert parts["fn"].item() == 0.0  # weight 0: not computed
    want = 2.0 + 1.0 + 0.5 * want_tv + parts["puzzle"].item()
    assert total.item() == pytest.approx(want)


def test_regularizer_warmup_ramps() -> None:
    reg = L.CAMRegularizer(
        {"a": (L.SmoothnessLoss(), 2.0), "b": (L.SizeLoss(bounds=(0.0, 0.0)), 1.0)}, warmup={"a": 4}
    )
    assert reg.current_weights(step=0) == {"a": 0.0, "b": 1.0}
    assert reg.current_weights(step=1) == {"a": 0.5, "b": 1.0}
    assert reg.current_weights(step=100) == {"a": 2.0, "b": 1.0}
    assert reg.current_weights(step=None) == {"a": 2.0, "b": 1.0}
    maps = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    total, parts = reg(maps=maps, step=2)  # tv 1 * 1.0 + size 0.25 * 1.0
    assert total.item() == pytest.approx(1.0 + 0.25)
    assert parts["a"].item() == pytest.approx(1.0)
    reg_all = L.CAMRegularizer({"a": (L.SmoothnessLoss(), 2.0)}, warmup=10)
    assert reg_all.current_weights(step=5) == {"a": 1.0}


def test_regularizer_gradients_flow() -> None:
    maps = _rand(2, 6, 6, dtype=torch.float32).requires_grad_()
    reg = L.CAMRegularizer({"s": (L.SuppressionLoss(), 1.0), "tv": (L.SmoothnessLoss(), 1.0)})
    total, parts = reg(maps=maps, labels=torch.tensor([0, 1]))
    total.backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
    assert not parts["s"].requires_grad


def test_regularizer_errors() -> None:
    with pytest.raises(ValueError, match=r"`terms` to be a non-empty mapping"):
        L.CAMRegularizer({})
    with pytest.raises(ValueError, match=r"`terms\['a'\] weight` to be a finite number >= 0"):
        L.CAMRegularizer({"a": (L.SmoothnessLoss(), -1.0)})
    with pytest.raises(TypeError, match=r"`terms\['a'\]` to be a pair"):
        L.CAMRegularizer({"a": L.SmoothnessLoss()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"loss of `terms\['a'\]` to be callable"):
        L.CAMRegularizer({"a": (3, 1.0)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"names in `warmup` to be terms"):
        L.CAMRegularizer({"a": (L.SmoothnessLoss(), 1.0)}, warmup={"b": 3})
    with pytest.raises(ValueError, match=r"`warmup` to be an int >= 0"):
        L.CAMRegularizer({"a": (L.SmoothnessLoss(), 1.0)}, warmup=-1)
    reg = L.CAMRegularizer({"s": (L.SuppressionLoss(), 1.0)})
    with pytest.raises(TypeError, match=r"include \['labels'\] for the term 's'"):
        reg(maps=torch.zeros(1, 3, 3))
    with pytest.raises(TypeError, match=r"`step` to be an int or None"):
        reg(maps=torch.zeros(1, 3, 3), labels=torch.tensor([0]), step=1.5)
