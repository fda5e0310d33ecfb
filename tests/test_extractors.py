"""Extractors: targets, shapes, dtypes, graph modes and hygiene."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import camseg
from camseg import functional as CF

GRADIENT_METHODS = [
    camseg.GradCAM,
    camseg.GradCAMPlusPlus,
    camseg.HiResCAM,
    camseg.XGradCAM,
    camseg.LayerCAM,
    camseg.GradCAMElementWise,
    camseg.EigenGradCAM,
]
ALL_METHODS = [*GRADIENT_METHODS, camseg.EigenCAM]


def _make(cls, model, layer="features.3"):
    if cls is camseg.LinearCAM:
        return cls(model, layer, head="fc")
    return cls(model, layer)


@pytest.mark.parametrize("cls", [*ALL_METHODS, camseg.LinearCAM])
def test_maps_shape_range_device_and_module_equals_function(cls, tiny_net, images):
    maps = _make(cls, tiny_net)(images, targets=1)
    assert maps.shape == (4, 12, 12)
    assert maps.device == images.device and maps.dtype == torch.float32
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert not maps.requires_grad
    # module == function: the extractor is the functional weighting of the captured tensors
    with camseg.LayerCapture(tiny_net, "features.3") as cap:
        logits = tiny_net(images)
        a = cap.output
        g = cap.grad(logits, 1) if cls in GRADIENT_METHODS else None
        fn = {
            camseg.GradCAM: lambda: CF.gradcam(a, g),
            camseg.GradCAMPlusPlus: lambda: CF.gradcam_pp(a, g),
            camseg.HiResCAM: lambda: CF.hirescam(a, g),
            camseg.XGradCAM: lambda: CF.xgradcam(a, g),
            camseg.LayerCAM: lambda: CF.layercam(a, g),
            camseg.GradCAMElementWise: lambda: CF.gradcam_elementwise(a, g),
            camseg.EigenGradCAM: lambda: CF.eigengradcam(a, g),
            camseg.EigenCAM: lambda: CF.eigencam(a),
            camseg.LinearCAM: lambda: CF.linear_cam(a, tiny_net.fc.weight, torch.full((4,), 1)),
        }[cls]
        expected = CF.normalize(CF.upsample(fn().detach(), (12, 12)))
    torch.testing.assert_close(maps, expected)


def test_target_forms_agree(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, "features.3")
    by_list = cam(images, targets=[0, 1, 2, 1])
    by_tensor = cam(images, targets=torch.tensor([0, 1, 2, 1]))
    by_callable = cam(
        images, targets=lambda lg: lg.gather(1, torch.tensor([[0], [1], [2], [1]]))[:, 0]
    )
    torch.testing.assert_close(by_list, by_tensor)
    torch.testing.assert_close(by_list, by_callable)
    argmax = tiny_net(images).argmax(1)
    torch.testing.assert_close(cam(images), cam(images, targets=argmax))
    res = cam.explain(images, targets=2)
    assert torch.equal(res.targets, torch.full((4,), 2))
    torch.testing.assert_close(res.logits, tiny_net(images).detach())


@pytest.mark.parametrize("cls", [*GRADIENT_METHODS, camseg.LinearCAM])
def test_k_targets_equal_k_single_calls(cls, tiny_net, images):
    cam = _make(cls, tiny_net)
    t = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 0, 1], [0, 2, 1]])
    many = cam(images, targets=t, normalize=None)
    assert many.shape == (4, 3, 12, 12)
    for k in range(3):
        torch.testing.assert_close(many[:, k], cam(images, targets=t[:, k], normalize=None))


def test_single_logit_binary_head(images, tiny_net_cls):
    torch.manual_seed(0)
    model = tiny_net_cls(num_classes=1)
    cam = camseg.GradCAM(model, "features.3")
    pos = cam(images, targets=1, normalize=None)
    neg = cam(images, targets=0, normalize=None)
    with camseg.LayerCapture(model, "features.3") as cap:
        logit = model(images)[:, 0]
        g = cap.grad(logit)  # 1-D scores are used as they are
        expected_pos = CF.upsample(CF.gradcam(cap.output, g), (12, 12)).detach()
        expected_neg = CF.upsample(CF.gradcam(cap.output, -g), (12, 12)).detach()
    torch.testing.assert_close(pos, expected_pos)
    torch.testing.assert_close(neg, expected_neg)
    predicted = (model(images)[:, 0] > 0).long()
    torch.testing.assert_close(cam(images), cam(images, targets=predicted))


@pytest.mark.parametrize("cls", GRADIENT_METHODS)
def test_create_graph_maps_equal_inference_maps_and_are_differentiable(cls, tiny_net, images):
    cam = cls(tiny_net, "features.3")
    fast = cam(images, targets=[0, 1, 2, 0])
    res = cam.explain(images, targets=[0, 1, 2, 0], create_graph=True)
    torch.testing.assert_close(res.maps.detach(), fast, atol=1e-6, rtol=1e-5)
    assert res.maps.requires_grad and res.logits.requires_grad
    res.maps.sum().backward()
    assert tiny_net.features[0].weight.grad is not None  # the caller's backward reaches the body
    tiny_net.zero_grad(set_to_none=True)


def test_no_graph_below_layer_in_inference_path(tiny_net, images):
    seen = {}

    def probe(module, inputs, output):
        seen["first_conv_requires_grad"] = output.requires_grad

    handle = tiny_net.features[0].register_forward_hook(probe)
    try:
        camseg.GradCAM(tiny_net, "features.3")(images)
        assert seen["first_conv_requires_grad"] is False
        camseg.GradCAM(tiny_net, "features.3")(images, create_graph=True)
        assert seen["first_conv_requires_grad"] is True
    finally:
        handle.remove()
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("cls", [*ALL_METHODS, camseg.LinearCAM])
def test_hygiene_grads_hooks_flags(cls, tiny_net, images):
    tiny_net.train()
    tiny_net.fc.weight.requires_grad_(False)
    flags = {n: m.training for n, m in tiny_net.named_modules()}
    req = {n: p.requires_grad for n, p in tiny_net.named_parameters()}
    hooks = {n: len(m._forward_hooks) for n, m in tiny_net.named_modules()}
    cam = _make(cls, tiny_net)
    with cam:
        cam(images)
        cam(images, targets=2)
    cam(images)
    assert all(p.grad is None for p in tiny_net.parameters())
    assert {n: m.training for n, m in tiny_net.named_modules()} == flags
    assert {n: p.requires_grad for n, p in tiny_net.named_parameters()} == req
    assert {n: len(m._forward_hooks) for n, m in tiny_net.named_modules()} == hooks
    assert torch.is_grad_enabled()


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_hooks_removed_and_grad_mode_restored_when_forward_raises(tiny_net, images):
    tiny_net.pool = _Boom()
    cam = camseg.GradCAM(tiny_net, "features.3")
    with pytest.raises(RuntimeError, match="boom"), cam:
        cam(images)
    with pytest.raises(RuntimeError, match="boom"):
        cam(images)
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())
    assert torch.is_grad_enabled()


def test_exceptions_propagate_from_with_block(tiny_net):
    with pytest.raises(KeyError), camseg.GradCAM(tiny_net, "features.3"):
        raise KeyError("not swallowed")
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())


def test_user_forward_inside_block_is_not_recorded(tiny_net, images):
    with camseg.GradCAM(tiny_net, "features.3") as cam:
        logits = tiny_net(images)  # a plain forward of the user's: no clone, no graph change
        assert logits.requires_grad
        maps = cam(images)
    torch.testing.assert_close(maps, camseg.GradCAM(tiny_net, "features.3")(images))


def test_inplace_op_after_layer_does_not_alter_activations():
    torch.manual_seed(0)
    body = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(
        body, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    x = torch.randn(2, 3, 8, 8)
    raw = camseg.HiResCAM(model, "0")(x, targets=1, normalize=None, size=None)
    with torch.no_grad():
        a = body(x)
    a.requires_grad_(True)
    score = model[4](model[3](model[2](torch.relu(a))))[:, 1].sum()
    (g,) = torch.autograd.grad(score, a)
    torch.testing.assert_close(raw, CF.hirescam(a, g).detach())


def test_train_mode_and_channels_last(images):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Dropout(0.0),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 2),
    )
    model.train()
    ref = camseg.GradCAM(model, "2")(images, targets=1)
    cl_model = model.to(memory_format=torch.channels_last)
    cl = camseg.GradCAM(cl_model, "2")(images.to(memory_format=torch.channels_last), targets=1)
    torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-4)
    assert model.training


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_returns_float32(tiny_net, images, dtype):
    if dtype == torch.float16:
        # CPU autocast supports float16 in recent torch; skip cleanly where not
        try:
            with torch.autocast("cpu", dtype=dtype):
                tiny_net(images)
        except RuntimeError:
            pytest.skip("float16 autocast not supported on this CPU build")
    ref = camseg.GradCAM(tiny_net, "features.3")(images, targets=1)
    with torch.autocast("cpu", dtype=dtype):
        maps = camseg.GradCAM(tiny_net, "features.3")(images, targets=1)
    assert maps.dtype == torch.float32
    assert float((maps - ref).abs().mean()) < 0.05


def test_float64_stays_float64(tiny_net, images):
    model = tiny_net.double()
    maps = camseg.GradCAM(model, "features.3")(images.double())
    assert maps.dtype == torch.float64


def test_sizes_and_normalisation_modes(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, "features.3")
    raw = cam(images, normalize=None, size=None)
    assert raw.shape == (4, 12, 12)
    assert cam(images, size=(24, 30)).shape == (4, 24, 30)
    maxed = cam(images, normalize="max", size=None)
    torch.testing.assert_close(maxed, CF.normalize(raw, mode="max"))


def test_multi_layer_fusion_rule(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, ["features.1", "features.3"])
    fused = cam(images, targets=1, normalize=None)
    a = camseg.GradCAM(tiny_net, "features.1")(images, targets=1, normalize="max")
    b = camseg.GradCAM(tiny_net, "features.3")(images, targets=1, normalize="max")
    torch.testing.assert_close(fused, (a + b) / 2)


def test_token_model_with_reshape():
    torch.manual_seed(0)

    class TokenNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)  # 16x24 -> 4x6 patches
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.block = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
            t = torch.relu(self.block(t))
            return self.head(t[:, 1:].mean(1))

    model = TokenNet()
    x = torch.rand(2, 3, 16, 24)
    reshape = functools.partial(CF.tokens_to_grid, grid=(4, 6), prefix_tokens=1)
    maps = camseg.GradCAM(model, "block", reshape=reshape)(x, targets=1, size=None, normalize=None)
    assert maps.shape == (2, 4, 6)
    with camseg.LayerCapture(model, "block", reshape=reshape) as cap:
        g = cap.grad(model(x), 1)
        expected = CF.gradcam(cap.output, g).detach()
    torch.testing.assert_close(maps, expected)
    with pytest.raises(ValueError, match="Hint: pass `reshape=`"):
        camseg.GradCAM(model, "block")(x)


def test_linear_and_eigen_cam_work_in_inference_mode(tiny_net, images):
    with torch.inference_mode():
        lin = camseg.LinearCAM(tiny_net, "features.3", head="fc")(images, targets=0)
        eig = camseg.EigenCAM(tiny_net, "features.3")(images)
    assert lin.shape == eig.shape == (4, 12, 12)
    with torch.inference_mode(), pytest.raises(ValueError, match="outside torch.inference_mode"):
        camseg.GradCAM(tiny_net, "features.3")(images)


def test_no_memory_growth_over_many_calls(tiny_net):
    import gc

    x = torch.rand(2, 3, 8, 8)
    cam = camseg.GradCAM(tiny_net, "features.3")

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    for _ in range(20):
        cam(x)
    before = live_tensors()
    with cam:
        for _ in range(1000):
            cam(x)
    after = live_tensors()
    assert after <= before
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())


# -- bad input ------------------------------------------------------------------


def test_unknown_layer_lists_close_names(tiny_net):
    with pytest.raises(
        ValueError, match=r"got 'feature.3'.*Close names: 'features.3'.*list_layers"
    ):
        camseg.GradCAM(tiny_net, "feature.3")
    with pytest.raises(ValueError, match="not part of it"):
        camseg.GradCAM(tiny_net, nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="`model` to be a torch.nn.Module"):
        camseg.GradCAM("resnet", "layer4")  # type: ignore[arg-type]


def test_layer_that_never_runs(tiny_net, images):
    tiny_net.unused = nn.Conv2d(6, 6, 1)
    with pytest.raises(ValueError, match="'unused' to run in the forward pass, but it never did"):
        camseg.GradCAM(tiny_net, "unused")(images)


@pytest.mark.parametrize(
    ("targets", "exc", "match"),
    [
        (3, ValueError, r"`targets` in \[0, 2\] for 3 classes, but got values in \[3, 3\]"),
        ([0, 1], ValueError, "one class per image \\(4 images\\), but got 2"),
        (torch.tensor([0.0, 1.0, 1.0, 1.0]), TypeError, "integer \\(long\\) tensor"),
        (torch.zeros(4, 1, 1, dtype=torch.long), ValueError, r"shape \(B,\) or \(B, K\)"),
        ("tumour", TypeError, "Expected `targets` to be None, an int"),
        (True, TypeError, "int class index"),
        (lambda lg: lg[None], ValueError, r"return scores of shape \(B,\) or \(B, K\)"),
        (lambda lg: lg[:2, 0], ValueError, "return 4 scores"),
    ],
)
def test_bad_targets(tiny_net, images, targets, exc, match):
    with pytest.raises(exc, match=match):
        camseg.GradCAM(tiny_net, "features.3")(images, targets=targets)


def test_bad_images_and_options(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, "features.3")
    with pytest.raises(
        ValueError,
        match=r"`images` to be a tensor of shape \(B, C, H, W\), but got shape \(3, 12, 12\)",
    ):
        cam(images[0])
    with pytest.raises(ValueError, match="empty batch"):
        cam(images[:0])
    with pytest.raises(TypeError, match="`images` to have a floating-point dtype"):
        cam((images * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="`images` to be a torch.Tensor"):
        cam(images.numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`normalize` to be one of"):
        cam(images, normalize="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`size` to be 'input', None or"):
        cam(images, size=(0, 4))


def test_model_output_not_logits(images, tiny_net_cls):
    class Dict(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net_cls()

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.net(x)}

    model = Dict()
    with pytest.raises(
        TypeError, match="model output `logits` to be a torch.Tensor of shape \\(B, C\\)"
    ):
        camseg.GradCAM(model, "net.features.3")(images)
    maps = camseg.GradCAM(model, "net.features.3")(images, targets=lambda out: out["logits"][:, 1])
    assert maps.shape == (4, 12, 12)


def test_non_finite_activations_and_gradients(tiny_net, images, tiny_net_cls):
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    # a NaN image is reported as `images`, before the model runs (issue 12, item 5)
    for cls in (camseg.GradCAM, camseg.EigenCAM):
        with pytest.raises(ValueError, match="Expected `images` to be finite, but it holds 1 NaN"):
            cls(tiny_net, "features.3")(bad)

    class Blowup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net_cls()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x * torch.tensor(float("inf")))

    with pytest.raises(ValueError, match="`activations of layer 'net.features.3'` to be finite"):
        camseg.GradCAM(Blowup(), "net.features.3")(images)

    class Overflow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net_cls()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x) * torch.tensor(float("inf"))

    with pytest.raises(ValueError, match="gradient of layer 'net.features.3'|to be finite"):
        camseg.GradCAM(Overflow(), "net.features.3")(
            images, targets=lambda lg: lg[:, 0] * 0 + lg[:, 0]
        )


def test_linear_cam_needs_linear_head_and_class_targets(tiny_net, images):
    with pytest.raises(TypeError, match="`head` to be an nn.Linear"):
        camseg.LinearCAM(tiny_net, "features.3", head="pool")
    with pytest.raises(ValueError, match="`head` to name a submodule"):
        camseg.LinearCAM(tiny_net, "features.3", head="classifier")
    with pytest.raises(TypeError, match="class indices"):
        camseg.LinearCAM(tiny_net, "features.3", head="fc")(images, targets=lambda lg: lg[:, 0])
    wrong_layer = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    wrong_layer.fc = wrong_layer[3]
    with pytest.raises(ValueError, match="`weight` to have 3 input features"):
        camseg.LinearCAM(wrong_layer, "0", head="fc").weigh(
            torch.rand(4, 3, 3, 3), None, torch.zeros(4, dtype=torch.long)
        )


# -- issue 12: correctness on the models users bring ---------------------------------------


def test_gradient_free_paths_record_a_copy_densenet121():
    """DenseNet applies F.relu(inplace=True) to `features`: the recorded copy must not change."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None, num_classes=3).double().eval()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    lin = camseg.LinearCAM(model, "features", head="classifier")
    res = lin.explain(x, targets=1, normalize=None, size=None)
    with torch.no_grad():
        a = model.features(x)  # the true activations, before the in-place ReLU
    expected = CF.linear_cam(a, model.classifier.weight, torch.tensor([1]))
    torch.testing.assert_close(res.maps, expected)
    assert res.maps.dtype == torch.float64
    with torch.no_grad(), camseg.LayerCapture(model, "features") as cap:
        model(x)
        torch.testing.assert_close(cap.output, a)


def test_gradient_free_paths_record_a_copy_resnet18_bn2():
    """ResNet-18 `layer4.1.bn2` is followed by `out += identity` and an in-place ReLU."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    acts = {}
    handle = model.layer4[1].bn2.register_forward_hook(
        lambda m, i, o: acts.__setitem__("a", o.clone())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    eig = camseg.EigenCAM(model, "layer4.1.bn2")(x, normalize=None, size=None)
    torch.testing.assert_close(eig, CF.eigencam(acts["a"]))
    with torch.inference_mode():
        eig_inf = camseg.EigenCAM(model, "layer4.1.bn2")(x, normalize=None, size=None)
    torch.testing.assert_close(eig_inf, eig)


class _TokenNet(nn.Module):
    """A two-block ViT-like toy: the last block's patch tokens never reach the head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.norm1 = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        t = torch.relu(self.blocks[0](t))
        # the last block: its norm1 feeds a token mixer (attention's role), but only the
        # class token of its output goes on to the head, as in a ViT
        u = self.norm1(t)
        out = self.blocks[1](u + u.mean(1, keepdim=True))
        return self.head(out[:, 0])


def test_all_zero_gradients_warn_with_the_layer_and_the_vit_hint():
    torch.manual_seed(0)
    model = _TokenNet()
    x = torch.rand(2, 3, 16, 16)
    reshape = functools.partial(CF.tokens_to_grid, prefix_tokens=1)
    with pytest.warns(camseg.CAMWarning, match=r"gradient of layer 'blocks.1' is zero.*norm1"):
        maps = camseg.GradCAM(model, "blocks.1", reshape=reshape)(x, targets=1)
    assert (maps == 0).all()
    with camseg.LayerCapture(model, "blocks.1", reshape=reshape) as cap:
        logits = model(x)
        with pytest.warns(camseg.CAMWarning, match="'blocks.1'"):
            cap.grad(logits, 1)
    # the recommended layer works and does not warn
    good = camseg.GradCAM(model, "norm1", reshape=reshape)(x, targets=1)
    assert float(good.amax()) > 0


def test_all_zero_activations_warn_for_gradient_free_methods(images):
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    nn.init.zeros_(model[0].weight)
    nn.init.constant_(model[0].bias, -1.0)
    with pytest.warns(camseg.CAMWarning, match="Every activation of layer '1' is zero"):
        camseg.EigenCAM(model, "1")(images)


def test_channels_last_features_are_caught_with_what_to_pass():
    class SwinLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 24, 4, stride=4)
            self.stage = nn.Linear(24, 24)
            self.head = nn.Linear(24, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).permute(0, 2, 3, 1)  # (B, h, w, C), as timm Swin stages
            return self.head(self.stage(t).mean((1, 2)))

    torch.manual_seed(0)
    model = SwinLike()
    x = torch.rand(1, 3, 28, 28)
    with pytest.raises(ValueError, match=r"looks channels-last.*reshape=lambda a: a.permute"):
        camseg.GradCAM(model, "stage")(x)
    maps = camseg.GradCAM(model, "stage", reshape=lambda a: a.permute(0, 3, 1, 2))(x, size=None)
    assert maps.shape == (1, 7, 7)


def test_bfloat16_model_gives_bfloat16_maps_close_to_float32():
    torch.manual_seed(0)
    from tests.conftest import TinyGAPNet

    net = TinyGAPNet()
    x = torch.rand(2, 3, 12, 12)
    ref = camseg.GradCAM(net, "features.3")(x, targets=1)
    maps = camseg.GradCAM(net.bfloat16(), "features.3")(x.bfloat16(), targets=1)
    assert maps.dtype == torch.bfloat16
    assert float((maps.float() - ref).abs().mean()) < 0.05


@pytest.mark.parametrize("cls", [camseg.GradCAM, camseg.EigenCAM])
def test_output_on_callers_device_and_dtype(cls, tiny_net_cls, device, dtype):
    torch.manual_seed(0)
    net = tiny_net_cls().to(device=device, dtype=dtype)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    maps = cls(net, "features.3")(x.to(device, dtype), targets=1)
    assert maps.device.type == device.type and maps.dtype == dtype
    ref = cls(tiny_net_cls().double().requires_grad_(False), "features.3")
    ref.model.load_state_dict({k: v.double().cpu() for k, v in net.state_dict().items()})
    expected = ref(x.double(), targets=1)
    tol = 0.06 if dtype == torch.bfloat16 else 1e-4
    assert float((maps.double().cpu() - expected).abs().mean()) < tol


def test_model_errors_from_bad_images_are_explained(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, "features.3")
    with pytest.raises(TypeError, match=r"`images` in the model's dtype torch.float32") as info:
        cam(images.double())
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(ValueError, match=r"`images` to have 3 channels .*'features.0'") as info:
        cam(torch.rand(2, 4, 12, 12))
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(TypeError, match="model's dtype"):
        camseg.EigenCAM(tiny_net, "features.3")(images.double())


def test_threads_sharing_a_model_and_an_extractor(tiny_net_cls):
    import threading

    torch.manual_seed(0)
    net = tiny_net_cls()
    xs = [torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    expected = [camseg.GradCAM(net, "features.3")(x, targets=1) for x in xs]
    shared = camseg.GradCAM(net, "features.3")
    errors: list[BaseException] = []

    def work(i: int, own: bool) -> None:
        try:
            cam = camseg.GradCAM(net, "features.3") if own else shared
            for _ in range(25):
                torch.testing.assert_close(cam(xs[i], targets=1), expected[i])
        except BaseException as err:  # reported below
            errors.append(err)

    for own in (True, False):
        threads = [threading.Thread(target=work, args=(i, own)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:1]
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    # one thread cannot enter the same capture twice; the message says what to do
    with shared, pytest.raises(ValueError, match="attached once per thread"):
        shared.__enter__()


@pytest.mark.parametrize(
    "cls,terms",
    [
        (camseg.GradCAM, lambda a, g: g.mean((2, 3), keepdim=True) * a),
        (camseg.HiResCAM, lambda a, g: g * a),
        (camseg.LayerCAM, lambda a, g: torch.relu(g) * a),
        (camseg.GradCAMElementWise, lambda a, g: torch.relu(g * a)),
        (camseg.EigenCAM, lambda a, g: a),
    ],
)
def test_eigen_smooth_projects_the_weighted_activations(cls, terms, tiny_net, images):
    net, x = tiny_net.double(), images.double()
    maps = cls(net, "features.3")(x, targets=1, normalize=None, size=None, eigen_smooth=True)
    with camseg.LayerCapture(net, "features.3") as cap:
        logits = net(x)
        a, g = cap.output, cap.grad(logits, 1)
    torch.testing.assert_close(maps, CF.eigencam(terms(a, g).detach()), atol=1e-12, rtol=0)
    plain = cls(net, "features.3")(x, targets=1, normalize=None, size=None)
    assert (cls is camseg.EigenCAM) == torch.allclose(maps, plain, atol=1e-12)


def test_eigen_smooth_for_linear_cam_and_k_targets(tiny_net, images):
    net, x = tiny_net.double(), images.double()
    t = torch.tensor([[0, 2]] * 4)
    lin = camseg.LinearCAM(net, "features.3", head="fc")
    both = lin(x, targets=t, normalize=None, size=None, eigen_smooth=True)
    assert both.shape == (4, 2, 12, 12)
    with camseg.LayerCapture(net, "features.3") as cap:
        net(x)
        a = cap.output.detach()
    for k, c in enumerate((0, 2)):
        expected = CF.eigencam(net.fc.weight[c].detach()[None, :, None, None] * a)
        torch.testing.assert_close(both[:, k], expected, atol=1e-12, rtol=0)
    for cls in (camseg.GradCAM, camseg.ScoreCAM):
        k_maps = cls(net.eval(), "features.3")(x, targets=t, eigen_smooth=True)
        one = cls(net, "features.3")(x, targets=2, eigen_smooth=True)
        torch.testing.assert_close(k_maps[:, 1], one, atol=1e-12, rtol=0)
    with pytest.raises(TypeError, match="eigen_smooth"):
        camseg.GradCAM(net, "features.3")(x, eigen_smooth="yes")


def test_fusion_rules(tiny_net, images):
    cam = camseg.GradCAM(tiny_net, ["features.1", "features.3"])
    raw = [
        camseg.GradCAM(tiny_net, n)(images, targets=1, normalize=None, size=None)
        for n in ("features.1", "features.3")
    ]
    minmax = cam(images, targets=1, normalize=None, size=None, fusion="minmax")
    expected = torch.stack([CF.normalize(m) for m in raw]).mean(0)
    torch.testing.assert_close(minmax, expected)
    one = camseg.GradCAM(tiny_net, "features.3")
    torch.testing.assert_close(one(images, fusion="minmax"), one(images))
    for bad in ("mean", None, 1):
        with pytest.raises(ValueError, match="fusion"):
            cam(images, fusion=bad)
