"""FullGrad: equal to pytorch-grad-cam and to a hand-written decomposition, batched, hygienic."""

from __future__ import annotations

import copy
import threading
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camseg
import camseg.functional as CF

from .conftest import tolerance


class BNNet(nn.Module):
    """conv (no bias) -> BN -> in-place ReLU -> strided conv (bias) -> ReLU -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.conv2(a)).mean((2, 3)))


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    """Non-zero biases and batch-norm statistics (torchvision initialises them to 0 and 1,
    which makes every batch-norm bias 0 and leaves only FullGrad's input term)."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(t.shape, generator=g, dtype=t.dtype)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(rand(m.weight, 0.5, 1.5))
                m.bias.copy_(rand(m.bias, -0.3, 0.3))
                m.running_mean.copy_(rand(m.running_mean, -0.3, 0.3))
                m.running_var.copy_(rand(m.running_var, 0.5, 1.5))
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(rand(m.bias, -0.3, 0.3))
    return model


@pytest.fixture
def bn_net() -> BNNet:
    torch.manual_seed(0)
    return _randomize(BNNet(), 1).eval()


@pytest.fixture
def x16() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _scale(t: torch.Tensor, eps: float) -> torch.Tensor:
    lo = t.amin(dim=(-2, -1), keepdim=True)
    den = (t - lo).amax(dim=(-2, -1), keepdim=True) + eps
    return torch.where(den > 0, (t - lo) / den, 0.0)  # a constant map (eps = 0) becomes zeros


def _by_hand(net: BNNet, x: torch.Tensor, targets: list[int], eps: float = 1e-7) -> torch.Tensor:
    """The raw FullGrad map of BNNet, the graph written out (no hooks)."""
    x = x.detach().requires_grad_(True)
    z1 = net.bn1(net.conv1(x))
    z2 = net.conv2(torch.relu(z1))
    score = net.fc(torch.relu(z2).mean((2, 3)))[torch.arange(len(targets)), targets].sum()
    gx, g1, g2 = torch.autograd.grad(score, [x, z1, z2])
    bn = net.bn1
    b1 = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b2 = net.conv2.bias
    size = tuple(x.shape[-2:])
    total = _scale((gx * x).abs(), eps).sum(1)
    total = total + _scale((b1[:, None, None] * g1).abs(), eps).sum(1)
    up = F.interpolate(_scale((b2[:, None, None] * g2).abs(), eps), size=size, mode="bilinear")
    return (total + up.sum(1)).detach()


# ---------------------------------------------------------------------------------------------
# the maths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_equals_the_decomposition_written_out(bn_net, x16, eps):
    net, x = bn_net.double(), x16.double()
    fg = camseg.FullGrad(net, eps=eps)
    assert [n for n, _ in fg.layers] == ["bn1", "conv2"]
    raw = fg(x, targets=[2, 0, 1], normalize=None)
    expected = _by_hand(net, x, [2, 0, 1], eps)
    assert raw.shape == (3, 16, 16) and raw.dtype == torch.float64
    torch.testing.assert_close(raw, expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fg(x, targets=[2, 0, 1]), CF.normalize(expected))


def test_targets_forms_share_one_interpreter(bn_net, x16):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net, x = bn_net.double(), x16.double()
    fg = camseg.FullGrad(net)
    ints = fg(x, targets=[2, 0, 1], normalize=None)
    objects = fg(x, targets=[ClassifierOutputTarget(c) for c in (2, 0, 1)], normalize=None)
    tensor = fg(x, targets=torch.tensor([2, 0, 1]), normalize=None)
    call = fg(x, targets=lambda z: z[torch.arange(3), torch.tensor([2, 0, 1])], normalize=None)
    for other in (objects, tensor, call):
        torch.testing.assert_close(other, ints, atol=1e-12, rtol=0)
    res = fg.explain(x)  # None: the predicted class
    assert torch.equal(res.targets, res.logits.argmax(1))
    torch.testing.assert_close(res.maps, fg(x, targets=res.targets))


def test_k_targets_per_image_in_one_call(bn_net, x16):
    net, x = bn_net.double(), x16.double()
    fg = camseg.FullGrad(net)
    both = fg(x, targets=torch.tensor([[0, 2]] * 3), normalize=None)
    assert both.shape == (3, 2, 16, 16)
    for k, c in enumerate((0, 2)):
        torch.testing.assert_close(both[:, k], fg(x, targets=c, normalize=None), atol=1e-12, rtol=0)


def test_batch_order_invariance(bn_net, x16):
    net, x = bn_net.double(), x16.double()
    fg = camseg.FullGrad(net)
    targets = torch.tensor([2, 0, 1])
    maps = fg(x, targets=targets, normalize=None)
    perm = torch.tensor([2, 0, 1])
    permuted = fg(x[perm], targets=targets[perm], normalize=None)
    torch.testing.assert_close(permuted, maps[perm], atol=1e-12, rtol=0)
    single = torch.cat(
        [fg(x[i : i + 1], targets=int(targets[i]), normalize=None) for i in range(3)]
    )
    torch.testing.assert_close(single, maps, atol=1e-12, rtol=0)


def test_sizes_smoothing_and_create_graph(bn_net, x16):
    net, x = bn_net.double(), x16.double()
    fg = camseg.FullGrad(net)
    raw = fg(x, targets=1, normalize=None)
    torch.testing.assert_close(fg(x, targets=1, normalize=None, size=None), raw)  # input's size
    assert fg(x, targets=1, size=(8, 12)).shape == (3, 8, 12)
    torch.testing.assert_close(fg(x, targets=1, normalize=None, fusion="minmax"), raw)
    smooth = fg(x, targets=1, aug_smooth=True)
    turned = fg(torch.rot90(x, 1, (2, 3)), targets=1, aug_smooth=True)
    torch.testing.assert_close(turned, torch.rot90(smooth, 1, (1, 2)), atol=1e-10, rtol=0)
    eig = fg(x, targets=torch.tensor([[1, 2]] * 3), eigen_smooth=True, normalize=None)
    assert eig.shape == (3, 2, 16, 16) and float(eig.min()) >= 0
    torch.testing.assert_close(eig[:, 0], fg(x, targets=1, eigen_smooth=True, normalize=None))
    assert not torch.allclose(eig[:, 0], raw)
    res = fg.explain(x, targets=1, create_graph=True, normalize=None)
    assert res.maps.requires_grad and res.logits.requires_grad
    torch.testing.assert_close(res.maps.detach(), raw)
    (g,) = torch.autograd.grad(res.maps.sum(), net.bn1.bias)
    assert bool(torch.isfinite(g).all()) and bool(g.ne(0).any())
    assert all(p.grad is None for p in net.parameters())


def test_layer_used_twice_and_layer_that_does_not_run():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.unused = nn.Conv2d(3, 3, 1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.conv(torch.relu(self.conv(x)))).mean((2, 3)))

    torch.manual_seed(0)
    net = _randomize(Twice(), 3).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    raw = camseg.FullGrad(net)(x, targets=1, normalize=None)
    xg = x.clone().requires_grad_(True)
    z1 = net.conv(xg)
    z2 = net.conv(torch.relu(z1))
    score = net.fc(torch.relu(z2).mean((2, 3)))[:, 1].sum()
    gx, g1, g2 = torch.autograd.grad(score, [xg, z1, z2])
    b = net.conv.bias[:, None, None]
    expected = sum(_scale(t.abs(), 1e-7).sum(1) for t in (gx * x, b * g1, b * g2))
    torch.testing.assert_close(raw, expected.detach(), atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------
# pytorch-grad-cam
# ---------------------------------------------------------------------------------------------


class _Float64NumPy(types.ModuleType):
    """NumPy with ``float32`` meaning ``float64``: pytorch-grad-cam's image utilities cast
    every map with ``np.float32`` (before OpenCV's resize and after); this makes them float64."""

    def __getattr__(self, name: str) -> object:
        return np.float64 if name == "float32" else getattr(np, name)


REFERENCE_MODELS = {
    "resnet18": torchvision.models.resnet18,  # batch norms only
    "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,  # BN, hardswish, SE convs (1x1)
    "squeezenet1_1": torchvision.models.squeezenet1_1,  # convolutions with biases, no BN
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE_MODELS))
def test_matches_pytorch_grad_cam(name, monkeypatch):
    pgc = pytest.importorskip("pytorch_grad_cam")
    import pytorch_grad_cam.utils.image as pgc_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    monkeypatch.setattr(pgc_image, "np", _Float64NumPy("numpy"))
    torch.manual_seed(0)
    model = _randomize(REFERENCE_MODELS[name](weights=None, num_classes=3), 1).eval().double()
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    objects = [ClassifierOutputTarget(c) for c in (2, 0, 1)]
    with pgc.FullGrad(model=model, target_layers=[]) as cam:
        # their sum before its last step, scale_cam_image (applied below), so both are compared
        cam.aggregate_multi_layers = lambda per_layer: np.sum(per_layer, axis=1)
        theirs = {"objects": cam(x, targets=objects), "argmax": cam(x, targets=None)}
    model.zero_grad(set_to_none=True)
    assert theirs["objects"].dtype == np.float64

    fg = camseg.FullGrad(model)
    for targets, form in (([2, 0, 1], "objects"), (objects, "objects"), (None, "argmax")):
        theirs_raw = torch.from_numpy(theirs[form])
        theirs_maps = torch.from_numpy(pgc_image.scale_cam_image(theirs[form]))
        raw = fg(x, targets=targets, normalize=None)
        scale = float(theirs_raw.abs().max())
        assert scale > 10  # many channel terms count, not the input term alone
        torch.testing.assert_close(raw, theirs_raw, atol=1e-12 * scale, rtol=0)
        # their final scaling is (m - min) / (max - min + 1e-7); camseg's min-max is exact, so
        # the maps differ by less than 1e-7 / (max - min) (~1e-10 here)
        shifted = raw - raw.amin((1, 2), keepdim=True)
        span = shifted.amax((1, 2), keepdim=True)
        torch.testing.assert_close(shifted / (span + 1e-7), theirs_maps, atol=1e-12, rtol=0)
        bound = 1.01e-7 / float(span[span > 0].min()) + 1e-12  # a zero map is zero in both
        torch.testing.assert_close(fg(x, targets=targets), theirs_maps, atol=bound, rtol=0)


# ---------------------------------------------------------------------------------------------
# the model is left as found
# ---------------------------------------------------------------------------------------------


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


def test_model_left_as_found(bn_net, x16):
    bn_net.fc.weight.requires_grad_(False)
    flags = {n: m.training for n, m in bn_net.named_modules()}
    req = {n: p.requires_grad for n, p in bn_net.named_parameters()}
    state = copy.deepcopy(bn_net.state_dict())
    fg = camseg.FullGrad(bn_net)
    with fg:
        fg(x16)
        assert _hooks(bn_net) == 0  # hooks live for a call, not for the block
        fg(x16, targets=2, create_graph=True)
    fg(x16, targets=torch.tensor([[0, 1]] * 3))
    assert _hooks(bn_net) == 0
    assert all(p.grad is None for p in bn_net.parameters())
    assert {n: m.training for n, m in bn_net.named_modules()} == flags
    assert {n: p.requires_grad for n, p in bn_net.named_parameters()} == req
    assert all(torch.equal(v, bn_net.state_dict()[k]) for k, v in state.items())
    assert torch.is_grad_enabled() and not x16.requires_grad


def test_hooks_removed_when_the_forward_raises(bn_net, x16):
    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    handle = bn_net.conv2.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            camseg.FullGrad(bn_net)(x16)
    finally:
        handle.remove()
    assert _hooks(bn_net) == 0


def test_no_grad_and_inference_mode(bn_net, x16):
    fg = camseg.FullGrad(bn_net)
    maps = fg(x16, targets=1)
    with torch.no_grad():
        inside = fg(x16, targets=1)
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    torch.testing.assert_close(inside, maps)
    with torch.inference_mode(), pytest.raises(ValueError, match="outside torch.inference_mode"):
        fg(x16)


def test_training_mode(bn_net, x16, tiny_net):
    bn_net.train()
    with pytest.raises(ValueError, match=r"eval mode.*'bn1' is in training mode.*model.eval\(\)"):
        camseg.FullGrad(bn_net)(x16)
    assert bn_net.training and bn_net.bn1.training
    stats = nn.BatchNorm2d(6, track_running_stats=False)
    bn_net.eval().bn1 = stats.eval()
    with pytest.raises(ValueError, match="'bn1' keeps no running statistics"):
        camseg.FullGrad(bn_net)(x16)
    tiny_net.train()  # convolutions only: a training-mode model is run as it is
    maps = camseg.FullGrad(tiny_net)(torch.rand(2, 3, 12, 12), targets=1)
    assert maps.shape == (2, 12, 12) and tiny_net.training


def test_threads_share_a_model(bn_net, x16):
    fg = camseg.FullGrad(bn_net.double())
    x = x16.double()
    expected = fg(x, targets=1)
    results: list[torch.Tensor] = []

    def work() -> None:
        for _ in range(3):
            results.append(fg(x, targets=1))
            bn_net(x)  # a plain forward of another thread is not recorded

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    for r in results:
        torch.testing.assert_close(r, expected, atol=1e-12, rtol=0)


def test_devices_and_dtypes(bn_net, x16, device, dtype):
    ref = camseg.FullGrad(copy.deepcopy(bn_net).double())(x16.double(), targets=1)
    model = bn_net.to(device=device, dtype=dtype)
    maps = camseg.FullGrad(model)(x16.to(device=device, dtype=dtype), targets=1)
    assert maps.device.type == device.type and maps.dtype == dtype
    if dtype == torch.bfloat16:  # bfloat16 gradients: compare on average
        assert float((maps.double().cpu() - ref).abs().mean()) < 0.06
    else:
        tol = tolerance(dtype)
        torch.testing.assert_close(maps.double().cpu(), ref, atol=tol["atol"] * 10, rtol=0)


def test_autocast_gives_float32(bn_net, x16):
    ref = camseg.FullGrad(bn_net)(x16, targets=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = camseg.FullGrad(bn_net)(x16, targets=1)
    assert maps.dtype == torch.float32
    assert float((maps - ref).abs().mean()) < 0.06


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_model_and_eps():
    with pytest.raises(TypeError, match=r"`model` to be a torch.nn.Module, but got 5"):
        camseg.FullGrad(5)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"`model` to contain bias layers .* Sequential has none"):
        camseg.FullGrad(plain)
    no_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4, affine=False))
    with pytest.raises(ValueError, match="has none"):
        camseg.FullGrad(no_bias)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    for bad, err in ((-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(err, match="`eps`"):
            camseg.FullGrad(net, eps=bad)
    assert repr(camseg.FullGrad(net)) == "FullGrad(model=Sequential, layers=1)"


def test_bad_call_arguments(bn_net, x16):
    fg = camseg.FullGrad(bn_net)
    cases = [
        (TypeError, r"`images` to be a torch.Tensor", {"images": x16.tolist()}),
        (ValueError, r"`images` to be a tensor of shape \(B, C, H, W\)", {"images": x16[0]}),
        (TypeError, r"`images` to have a floating-point dtype", {"images": (x16 * 9).long()}),
        (ValueError, r"`images` to be finite", {"images": x16.clone().fill_(float("nan"))}),
        (ValueError, r"`images` to hold at least one image", {"images": x16[:0]}),
        (ValueError, r"`targets` in \[0, 2\]", {"targets": 3}),
        (ValueError, r"`targets` to give one class per image", {"targets": [0, 1]}),
        (TypeError, r"`targets` to be an integer", {"targets": torch.tensor([0.0, 1.0, 2.0])}),
        (ValueError, r"`normalize` to be one of", {"normalize": "bogus"}),
        (ValueError, r"`size` to be 'input', None or \(H, W\)", {"size": (0, 4)}),
        (TypeError, r"`create_graph` to be a bool", {"create_graph": "yes"}),
        (TypeError, r"`aug_smooth` to be a bool", {"aug_smooth": 1}),
        (ValueError, r"`fusion` to be one of", {"fusion": "mean"}),
        (ValueError, r"`images` to have 3 channels", {"images": torch.rand(2, 4, 16, 16)}),
        (TypeError, r"`images` in the model's dtype", {"images": x16.double()}),
    ]
    for err, pattern, kwargs in cases:
        call = {"images": x16, **kwargs}
        with pytest.raises(err, match=pattern):
            fg(**call)
    with pytest.raises(ValueError, match="scores to depend on the images"):
        fg(x16, targets=lambda z: torch.zeros(z.shape[0]))
    with pytest.warns(camseg.CAMWarning, match="Every FullGrad map is zero"):
        fg(x16, targets=lambda z: z[:, 0] * 0)
