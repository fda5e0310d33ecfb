"""CAM weightings: values worked out by hand, and the input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camseg
from camseg import functional as CF

#: every weighting of activations and gradients
WEIGHTINGS = [
    CF.gradcam,
    CF.hirescam,
    CF.xgradcam,
    CF.layercam,
    CF.gradcam_pp,
    CF.gradcam_elementwise,
    CF.eigengradcam,
]


def test_gradcam_one_conv_net_by_hand():
    # One 1x1 conv with two output channels, GAP, a linear head.
    # x: one image 1x2x2 of ones -> A_k = w_conv_k * x + b_k, linear head v.
    conv = nn.Conv2d(1, 2, 1)
    head = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).reshape(2, 1, 1, 1))
        conv.bias.zero_()
        head.weight.copy_(torch.tensor([[3.0, 4.0]]))
    model = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    x = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]])
    # A_0 = 2x, A_1 = -x. score = mean(3*A_0 + 4*A_1) -> dscore/dA_k = v_k / 4.
    # Grad-CAM weights = v_k / 4 -> map = ReLU(0.75 * 2x - 1.0 * x) = ReLU(0.5 x).
    # (a single-logit head: class 1 scores the logit itself)
    raw = camseg.GradCAM(model, "0")(x, targets=1, normalize=None, size=None)
    assert torch.allclose(raw, torch.tensor([[[0.5, 1.0], [0.0, 1.5]]]))
    # the closed form: linear_cam = 4 * Grad-CAM (Z = 4)
    lin = camseg.LinearCAM(model, "0", head="3")(x, targets=1, normalize=None, size=None)
    assert torch.allclose(lin, 4 * raw)
    # class 0 scores the negative logit: ReLU(-0.5 x) = 0
    assert (camseg.GradCAM(model, "0")(x, targets=0, normalize=None, size=None) == 0).all()


def test_gradcam_pp_by_hand():
    a = torch.tensor([[[[1.0, 3.0]]]])  # sum_ab A = 4
    g = torch.tensor([[[[2.0, -1.0]]]])
    # pixel 0: g=2: alpha = 4 / (8 + 4 * 8) = 0.1, relu(g) = 2 -> 0.2
    # pixel 1: g=-1: alpha = 1 / (2 - 4) = -0.5, relu(g) = 0 -> 0
    out = CF.gradcam_pp(a, g)
    assert torch.allclose(out, torch.tensor([[[0.2, 0.6]]]))
    # eps enters the denominator
    out_eps = CF.gradcam_pp(a, g, eps=1.0)
    assert torch.allclose(out_eps, torch.tensor([[[4 / 41 * 2, 3 * 4 / 41 * 2]]]))


def test_gradcam_pp_zero_denominator_gives_zero_alpha():
    # g = -1 and sum A = 2: denominator 2 + 2 * (-1) = 0 -> alpha 0, no NaN
    a = torch.tensor([[[[1.0, 1.0]]]])
    g = torch.tensor([[[[-1.0, -1.0]]]])
    out = CF.gradcam_pp(a, g)
    assert torch.isfinite(out).all() and (out == 0).all()


def test_xgradcam_hirescam_layercam_by_hand():
    a = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])
    g = torch.tensor([[[[1.0, -1.0]], [[2.0, 0.5]]]])
    # hirescam: sum_k g*A = [1 + 0, -2 + 2] = [1, 0]
    assert torch.allclose(CF.hirescam(a, g), torch.tensor([[[1.0, 0.0]]]))
    # layercam: relu(g)*A = [1, 0] + [0, 2] = [1, 2]
    assert torch.allclose(CF.layercam(a, g), torch.tensor([[[1.0, 2.0]]]))
    # xgradcam: w0 = (1 - 2)/3 = -1/3, w1 = (0 + 2)/4 = 0.5
    # map = relu(-1/3 * [1, 2] + 0.5 * [0, 4]) = relu([-1/3, 4/3]) = [0, 4/3]
    assert torch.allclose(CF.xgradcam(a, g), torch.tensor([[[0.0, 4 / 3]]]))


def test_weightings_broadcast_k_targets():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 4, 5)
    g = torch.randn(2, 4, 3, 4, 5)
    for fn in WEIGHTINGS:
        many = fn(a, g)
        assert many.shape == (2, 4, 4, 5)
        for k in range(4):
            torch.testing.assert_close(many[:, k], fn(a, g[:, k]))


def test_linear_cam_single_logit_and_k_targets():
    a = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])
    w = torch.tensor([[1.0, -1.0]])
    pos = CF.linear_cam(a, w, torch.tensor([1]), relu=False)
    neg = CF.linear_cam(a, w, torch.tensor([0]), relu=False)
    assert torch.allclose(pos, torch.tensor([[[1.0, -2.0]]]))
    assert torch.allclose(neg, -pos)
    both = CF.linear_cam(a, w, torch.tensor([[0, 1]]), relu=False)
    assert torch.allclose(both[:, 0], neg) and torch.allclose(both[:, 1], pos)


def test_eigencam_finds_dominant_direction_and_fixes_sign():
    torch.manual_seed(0)
    a = torch.zeros(2, 4, 5, 5)
    a[:, :, 1:3, 1:3] = torch.tensor([1.0, 2.0, 0.5, 1.5])[None, :, None, None]
    a = a + 0.01 * torch.rand(2, 4, 5, 5)
    m = CF.eigencam(a)
    inside = m[:, 1:3, 1:3].mean()
    outside = m.sum() - m[:, 1:3, 1:3].sum()
    assert inside > 0 and float(outside) < 1e-2 * float(inside) * 25
    # flipping the activations' sign flips the projection; the fixed sign keeps
    # the map pointing at the mass of the activations
    assert torch.equal(m.argmax(), CF.eigencam(a).argmax())


def test_gradcam_elementwise_clips_each_channel():
    torch.manual_seed(0)
    a, g = torch.rand(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    ew = CF.gradcam_elementwise(a, g)
    torch.testing.assert_close(ew, torch.relu(g * a).sum(1))
    assert (ew >= CF.hirescam(a, g) - 1e-7).all()  # sum of positive parts >= positive part of sum
    pos = g.abs()  # no channel against the class: the two agree
    torch.testing.assert_close(CF.gradcam_elementwise(a, pos), CF.hirescam(a, pos))


def test_eigengradcam_is_eigencam_of_the_product():
    torch.manual_seed(0)
    a, g = torch.rand(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(CF.eigengradcam(a, g), CF.eigencam(a * g))
    # with constant gradients it is Eigen-CAM of the activations (positive scale)
    torch.testing.assert_close(CF.eigengradcam(a, torch.full_like(a, 2.0)), 2 * CF.eigencam(a))
    with pytest.raises(ValueError, match="finite"):
        CF.eigengradcam(a, torch.full_like(a, float("nan")))


@pytest.mark.parametrize("fn", WEIGHTINGS)
def test_weighting_input_errors(fn):
    a = torch.rand(1, 2, 3, 3)
    with pytest.raises(TypeError, match="`activations` to have a floating-point dtype"):
        fn(a.long(), a)
    with pytest.raises(ValueError, match=r"`activations` to be a tensor of shape \(B, C, h, w\)"):
        fn(a[0, 0], a[0, 0])
    with pytest.raises(ValueError, match="`gradients`"):
        fn(a, torch.rand(1, 2, 3, 4))


def test_linear_cam_errors():
    a = torch.rand(2, 3, 4, 4)
    w = torch.rand(5, 3)
    with pytest.raises(ValueError, match="`weight` to have 3 input features"):
        CF.linear_cam(a, torch.rand(5, 4), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="`targets` to be an integer tensor"):
        CF.linear_cam(a, w, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"`targets` in \[0, 4\]"):
        CF.linear_cam(a, w, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"`targets` to have shape \(2,\)"):
        CF.linear_cam(a, w, torch.tensor([0, 1, 2]))


def test_gradcam_pp_negative_eps():
    a = torch.rand(1, 2, 3, 3)
    with pytest.raises(ValueError, match="`eps` to be a finite number >= 0"):
        CF.gradcam_pp(a, a, eps=-1.0)
