import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from camseg.metrics import (
    average_drop,
    deletion_auc,
    deletion_curve,
    increase_in_confidence,
    insertion_auc,
    insertion_curve,
)
from camseg.metrics._perturb import substrate_of


def _model(out: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, out)
    ).eval()


def _reference_curve(model, images, maps, targets, steps, base, insert):  # type: ignore[no-untyped-def]
    """The plain per-image, per-step loop."""
    b, _, h, w = images.shape
    out = torch.zeros(b, steps + 1)
    for i in range(b):
        order = np.argsort(-maps[i].flatten().numpy(), kind="stable")
        for s in range(steps + 1):
            n = (s * h * w) // steps
            sel = torch.zeros(h * w, dtype=torch.bool)
            sel[torch.from_numpy(order[:n].copy())] = True
            sel = sel.view(h, w)
            if insert:
                x = torch.where(sel, images[i], base[i])
            else:
                x = torch.where(sel, base[i], images[i])
            with torch.no_grad():
                logits = model(x[None])
            if logits.shape[-1] == 1:
                p1 = torch.sigmoid(logits[0, 0])
                out[i, s] = p1 if targets[i] == 1 else 1 - p1
            else:
                out[i, s] = torch.softmax(logits[0], 0)[targets[i]]
    return out


@pytest.mark.parametrize("substrate", ["zeros", "mean", "blur"])
def test_curves_equal_reference_loop(substrate: str) -> None:
    model = _model()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 2, 6, 6, generator=g)
    maps = torch.round(torch.rand(2, 6, 6, generator=g) * 4) / 4  # ties
    targets = torch.tensor([0, 2])
    if substrate == "zeros":
        base = torch.zeros_like(images)
    elif substrate == "mean":
        base = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    else:
        base = substrate_of(images, "blur", 5.0)
    for insert, fn in ((False, deletion_curve), (True, insertion_curve)):
        ref = _reference_curve(model, images, maps, targets, 3, base, insert)
        for batch_size in (1, 3, 1000):  # chunks that split images and steps anywhere
            got = fn(  # type: ignore[operator]
                model, images, maps, targets, steps=3, substrate=substrate, batch_size=batch_size
            )
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_auc_is_trapezoid_and_endpoints() -> None:
    model = _model()
    images = torch.rand(2, 2, 6, 6)
    maps = torch.rand(2, 6, 6)
    curve = deletion_curve(model, images, maps, steps=8)
    x = np.linspace(0, 1, 9)
    expect = [float(((c[1:] + c[:-1]) / 2 * np.diff(x)).sum()) for c in curve.numpy()]
    np.testing.assert_allclose(
        deletion_auc(model, images, maps, steps=8).numpy(), expect, rtol=1e-5
    )
    # the last deletion step is the substrate, the last insertion step the image
    with torch.no_grad():
        p_img = torch.softmax(model(images), 1)
        p_zero = torch.softmax(model(torch.zeros_like(images)), 1)
    t = p_img.argmax(1)
    torch.testing.assert_close(curve[:, 0], p_img[torch.arange(2), t])
    torch.testing.assert_close(curve[:, -1], p_zero[torch.arange(2), t])
    ins = insertion_curve(model, images, maps, steps=8)
    torch.testing.assert_close(ins[:, -1], p_img[torch.arange(2), t])
    assert insertion_auc(model, images, maps, steps=8).shape == (2,)


def test_single_logit_head_uses_sigmoid() -> None:
    model = _model(out=1)
    images = torch.rand(2, 2, 6, 6)
    maps = torch.rand(2, 6, 6)
    targets = torch.tensor([1, 0])
    got = deletion_curve(model, images, maps, targets, steps=4)
    ref = _reference_curve(model, images, maps, targets, 4, torch.zeros_like(images), False)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # a (B,) output works the same way
    flat = nn.Sequential(model, nn.Flatten(0))
    torch.testing.assert_close(deletion_curve(flat, images, maps, targets, steps=4), got)


def test_blur_equals_scipy_gaussian_filter() -> None:
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    got = substrate_of(x, "blur", 5.0)[0, 0].numpy()
    ref = ndimage.gaussian_filter(x[0, 0].numpy(), sigma=5.0, mode="nearest", truncate=1.0)
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_maps_are_resized_to_images() -> None:
    model = _model()
    images = torch.rand(2, 2, 6, 6)
    small = torch.rand(2, 3, 3)
    big = torch.nn.functional.interpolate(small[:, None], size=(6, 6), mode="bilinear")[:, 0]
    torch.testing.assert_close(
        deletion_auc(model, images, small, steps=4), deletion_auc(model, images, big, steps=4)
    )


def test_average_drop_and_increase_hand() -> None:
    model = _model()
    g = torch.Generator().manual_seed(2)
    images = torch.rand(4, 2, 6, 6, generator=g)
    maps = torch.rand(4, 6, 6, generator=g)
    t = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        y = torch.softmax(model(images), 1)[torch.arange(4), t]
        o = torch.softmax(model(images * maps[:, None]), 1)[torch.arange(4), t]
    drop = 100 * torch.clamp(y - o, min=0) / y
    for bs in (1, 3, 128):
        got = average_drop(model, images, maps, t, batch_size=bs, average="none")
        torch.testing.assert_close(got, drop)
        inc = increase_in_confidence(model, images, maps, t, batch_size=bs)
        assert float(inc) == pytest.approx(100 * float((o > y).float().mean()))
    assert float(average_drop(model, images, maps, t)) == pytest.approx(
        float(drop.mean()), rel=1e-6
    )
    # a map of ones keeps the image: no drop, no increase
    ones = torch.ones(4, 6, 6)
    assert float(average_drop(model, images, ones, t)) == 0.0
    assert float(increase_in_confidence(model, images, ones, t)) == 0.0


def test_model_mode_is_left_alone() -> None:
    model = _model().train()
    deletion_auc(model.eval(), torch.rand(1, 2, 6, 6), torch.rand(1, 6, 6), steps=2)
    assert not model.training
    model.train()
    average_drop(model, torch.rand(1, 2, 6, 6), torch.rand(1, 6, 6))
    assert model.training


def test_errors() -> None:
    model = _model()
    images = torch.rand(2, 2, 6, 6)
    maps = torch.rand(2, 6, 6)
    with pytest.raises(ValueError, match=r"`images` to be a tensor of shape \(B, C, H, W\)"):
        deletion_auc(model, images[0], maps)
    with pytest.raises(ValueError, match="same batch size"):
        deletion_auc(model, images, maps[:1])
    with pytest.raises(ValueError, match="`maps` to be finite"):
        deletion_auc(model, images, torch.full((2, 6, 6), math.nan))
    with pytest.raises(ValueError, match="`substrate` to be one of"):
        deletion_auc(model, images, maps, substrate="noise")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`steps` to be an int >= 1"):
        insertion_auc(model, images, maps, steps=0)
    with pytest.raises(ValueError, match="`batch_size` to be an int >= 1"):
        insertion_auc(model, images, maps, batch_size=0)
    with pytest.raises(ValueError, match="`blur_sigma` to be a finite number > 0"):
        insertion_auc(model, images, maps, blur_sigma=0.0)
    with pytest.raises(ValueError, match=r"`targets` to have shape \(2,\)"):
        deletion_auc(model, images, maps, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="`targets` to hold integer class ids"):
        deletion_auc(model, images, maps, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"`targets` in \[0, 2\]"):
        deletion_auc(model, images, maps, 5)
    with pytest.raises(ValueError, match=r"`targets` in \[0, 1\] for a single-logit"):
        deletion_auc(_model(out=1), images, maps, 2)
    with pytest.raises(ValueError, match=r"`maps` to lie in \[0, 1\]"):
        average_drop(model, images, maps * 3)
    with pytest.raises(TypeError, match="floating-point"):
        average_drop(model, (images * 255).byte(), maps)
    with pytest.raises(ValueError, match="`average` to be one of"):
        increase_in_confidence(model, images, maps, average="sum")  # type: ignore[arg-type]
