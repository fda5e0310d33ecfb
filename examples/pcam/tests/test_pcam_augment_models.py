from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from camseg_pcam.augment import Augment, d4_transform, hed_jitter, hed_to_rgb, rgb_to_hed
from camseg_pcam.evaluate import cam_maps, masks_from_cams
from camseg_pcam.models import MODELS, build_model
from skimage.color import hed2rgb, rgb2hed

import camseg

# ----------------------------------------------------------------- colour


def test_rgb_to_hed_matches_scikit_image() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # the 1e-6 floor
    ours = rgb_to_hed(x).clamp_min(0).permute(0, 2, 3, 1).numpy()
    ref = rgb2hed(x.permute(0, 2, 3, 1).numpy(), channel_axis=-1)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_hed_to_rgb_matches_scikit_image_and_inverts() -> None:
    torch.manual_seed(1)
    hed = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 0.3
    ref = hed2rgb(hed.permute(0, 2, 3, 1).numpy(), channel_axis=-1)
    np.testing.assert_allclose(hed_to_rgb(hed).permute(0, 2, 3, 1).numpy(), ref, atol=1e-12)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    torch.testing.assert_close(hed_to_rgb(rgb_to_hed(x)), x)


def test_hed_jitter_scales_the_haematoxylin_channel_only() -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64) * 0.8 + 0.1
    alpha = torch.tensor([[1.2, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    out = hed_jitter(x, alpha, torch.zeros(2, 3, dtype=torch.float64))
    h_in, h_out = rgb_to_hed(x), rgb_to_hed(out)
    keep = (out > 0) & (out < 1)  # away from the clipping
    assert bool(keep.all())
    torch.testing.assert_close(h_out[0, 0], 1.2 * h_in[0, 0])
    torch.testing.assert_close(h_out[0, 1:], h_in[0, 1:])
    torch.testing.assert_close(out[1], x[1])


def test_colour_functions_reject_bad_input() -> None:
    with pytest.raises(TypeError, match="`images` to have a floating-point dtype"):
        rgb_to_hed(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"`images` to be a tensor of shape \(B, 3, H, W\)"):
        rgb_to_hed(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="`alpha` and .*same batch size|`images` and `alpha`"):
        hed_jitter(torch.zeros(2, 3, 2, 2), torch.ones(1, 3), torch.zeros(2, 3))


# ----------------------------------------------------------------- D4


def _reference_d4(x: torch.Tensor, g: int) -> torch.Tensor:
    y = torch.rot90(x, g % 4, dims=(-2, -1))
    return y.transpose(-2, -1) if g >= 4 else y


def test_d4_transform_applies_each_element_per_sample() -> None:
    x = torch.arange(8 * 2 * 3 * 3, dtype=torch.float32).view(8, 2, 3, 3)
    k = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])
    out = d4_transform(x, k)
    for b in range(8):
        torch.testing.assert_close(out[b], _reference_d4(x[b], int(k[b])))
    # the 8 elements are distinct: a group of order 8
    one = x[:1].expand(8, -1, -1, -1)
    images = d4_transform(one, torch.arange(8)).flatten(1)
    assert len({tuple(r.tolist()) for r in images}) == 8
    masks = d4_transform(x[:, 0] > 20, k)
    assert masks.dtype == torch.bool
    torch.testing.assert_close(masks, d4_transform(x[:, 0], k) > 20)


def test_d4_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="`x` to be square"):
        d4_transform(torch.zeros(1, 2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="`k` to lie in"):
        d4_transform(torch.zeros(1, 2, 2), torch.tensor([8]))
    with pytest.raises(ValueError, match="same batch size"):
        d4_transform(torch.zeros(2, 2, 2), torch.tensor([1]))


def test_augment_is_reproducible_and_keeps_masks_aligned() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    m = torch.zeros(6, 8, 8, dtype=torch.bool)
    m[:, 0, 1] = True
    geo = Augment(hed_sigma=0.0, brightness=0.0, contrast=0.0)
    a1, m1 = geo(x, m, torch.Generator().manual_seed(5))
    a2, _ = geo(x, m, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a1, a2)
    # the pixel marked in the mask moves with the image
    marker = x.clone()
    marker[:, :, 0, 1] = 5.0
    moved, _ = geo(marker, None, torch.Generator().manual_seed(5))
    assert m1 is not None
    torch.testing.assert_close(moved[:, 0] == 5.0, m1)
    full, _ = Augment()(x, None, torch.Generator().manual_seed(5))
    assert float(full.min()) >= 0.0 and float(full.max()) <= 1.0
    assert not torch.allclose(full, a1)


# ----------------------------------------------------------------- models and maps


@pytest.mark.parametrize(
    "name",
    [n if n in ("small", "resnet18") else pytest.param(n, marks=pytest.mark.slow) for n in MODELS],
)
def test_models_have_a_gap_head_over_the_cam_layer(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()  # type: ignore[arg-type]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits, feats = model.forward_features(x)
        expected = model.fc(feats.mean((2, 3)))
    assert logits.shape == (1, 2) and feats.shape[1] == model.fc.in_features
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_local_weights_are_loaded_and_checked(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", weights=tmp_path / "r18.pth")
    torch.testing.assert_close(model.features[0].weight, ref.conv1.weight)
    torch.testing.assert_close(model.features[7][1].conv2.weight, ref.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match=r"`weights` .*r18\.pth.* resnet50 state dict"):
        build_model("resnet50", weights=tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="`weights` to be None for the small CNN"):
        build_model("small", weights=tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="Expected `name` to be one of"):
        build_model("resnet19")  # type: ignore[arg-type]


def test_cam_maps_equal_camseg_linear_cam_and_grad_cam() -> None:
    torch.manual_seed(0)
    model = build_model("small", width=4).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ours = cam_maps(model, x)["cam"]
    with camseg.LinearCAM(model, "features", head="fc") as lin:
        ref = lin(x, targets=1, normalize="minmax", size="input")
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    with camseg.GradCAM(model, "features") as grad:
        g = grad(x, targets=1, normalize="minmax", size="input")
    torch.testing.assert_close(ours, g, atol=1e-4, rtol=1e-4)


def test_masks_from_cams_gate_and_otsu() -> None:
    cams = torch.zeros(2, 4, 4)
    cams[:, :2, :2] = 1.0
    cams[:, 3, 3] = 0.2
    masks = masks_from_cams(cams, torch.tensor([0.8, 0.3]), min_prob=0.5)
    assert masks[0].sum() == 4 and bool(masks[0, :2, :2].all())
    assert not bool(masks[1].any())
