"""``aug_smooth``: maps averaged over the 8 rotations and reflections of the images."""

from __future__ import annotations

import pytest
import torch

import camseg
from camseg import functional as CF

from .conftest import TinyGAPNet

EXTRACTORS = [camseg.GradCAM, camseg.GradCAMPlusPlus, camseg.LayerCAM, camseg.EigenCAM]


def _net() -> TinyGAPNet:
    torch.manual_seed(0)
    return TinyGAPNet().double()


def _images(h: int = 12, w: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, h, w, generator=g, dtype=torch.float64)


def _by_hand(
    cam: camseg.BaseCAM, x: torch.Tensor, targets: torch.Tensor, **kw: object
) -> torch.Tensor:
    size = kw.pop("size", "input")
    outs = []
    for k, flip in CF.transform_group("d4"):
        turned = size if not isinstance(size, tuple) or k % 2 == 0 else size[::-1]
        m = cam(CF.apply_transform(x, (k, flip)), targets, normalize=None, size=turned, **kw)
        outs.append(CF.apply_transform(m, (k, flip), inverse=True))
    return CF.normalize(torch.stack(outs).mean(0), mode="minmax")


@pytest.mark.parametrize("cls", EXTRACTORS)
def test_aug_smooth_is_the_mean_of_the_turned_back_maps(cls: type[camseg.BaseCAM]) -> None:
    net, x = _net(), _images()
    targets = torch.tensor([0, 2, 1])
    with cls(net, "features.1") as cam:
        got = cam(x, targets, aug_smooth=True)
        expected = _by_hand(cam, x, targets)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert got.dtype == torch.float64 and got.shape == (3, 12, 12)
    assert (got.flatten(1).amax(1) > 0).all()  # real maps, not all zero


def test_aug_smooth_is_equivariant_and_keeps_the_top_class() -> None:
    net, x = _net(), _images()
    with camseg.GradCAM(net, "features.1") as cam:
        plain = cam.explain(x)
        smooth = cam.explain(x, aug_smooth=True)
        assert (smooth.maps.flatten(1).amax(1) > 0).all()
        # the classes are those of the untransformed pass, the logits too
        assert smooth.targets is not None and plain.targets is not None
        assert torch.equal(smooth.targets, plain.targets)
        torch.testing.assert_close(smooth.logits, plain.logits)
        # averaging over the group makes the maps turn with the images
        for e in CF.transform_group("d4"):
            turned = cam(CF.apply_transform(x, e), plain.targets, aug_smooth=True)
            torch.testing.assert_close(
                turned, CF.apply_transform(smooth.maps, e), atol=1e-10, rtol=0
            )
        # without it they need not: the check above can fail
        one = cam(CF.apply_transform(x, (1, False)), plain.targets)
        assert not torch.allclose(one, CF.apply_transform(plain.maps, (1, False)), atol=1e-6)


def test_aug_smooth_sizes_and_non_square_images() -> None:
    net, x = _net(), _images(10, 14)
    targets = torch.tensor([1, 1, 0])
    with camseg.GradCAM(net, "features.1") as cam:
        assert cam(x, targets, aug_smooth=True).shape == (3, 10, 14)
        assert cam(x, targets, aug_smooth=True, size=None).shape == (3, 10, 14)  # feature res
        got = cam(x, targets, aug_smooth=True, size=(5, 7))
        assert got.shape == (3, 5, 7)
        torch.testing.assert_close(got, _by_hand(cam, x, targets, size=(5, 7)), rtol=0, atol=1e-12)
        k_maps = cam(x, torch.tensor([[0, 1]] * 3), aug_smooth=True)
        assert k_maps.shape == (3, 2, 10, 14)


def test_aug_smooth_with_create_graph_is_differentiable() -> None:
    net, x = _net(), _images()
    with camseg.GradCAM(net, "features.1") as cam:
        maps = cam(x, 1, aug_smooth=True, create_graph=True, normalize=None)
        maps.sum().backward()
    assert net.fc.weight.grad is not None and net.fc.weight.grad.abs().sum() > 0


def test_aug_smooth_keeps_float32() -> None:
    net = _net().float()
    with camseg.LinearCAM(net, "features", head="fc") as cam:
        assert cam(_images().float(), 0, aug_smooth=True).dtype == torch.float32


def test_aug_smooth_must_be_a_bool() -> None:
    with camseg.GradCAM(_net(), "features.1") as cam:
        with pytest.raises(TypeError, match="`aug_smooth`"):
            cam(_images(), 0, aug_smooth="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`aug_smooth`"):
            cam(_images(), 0, aug_smooth=1)  # type: ignore[arg-type]
