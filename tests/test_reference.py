"""camseg against the reference libraries: pytorch-grad-cam and Captum.

Randomly initialised torchvision models (no downloads), float64 so that the
comparison measures the method, not float32 rounding. pytorch-grad-cam's maps
are rebuilt from its own activations, gradients and weighting
(``get_cam_image``), then both sides go through the same normalisation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import camseg

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

MODELS = {
    "resnet18": (torchvision.models.resnet18, "layer4"),
    "densenet121": (torchvision.models.densenet121, "features.denseblock4"),
    "vgg16_bn": (torchvision.models.vgg16_bn, "features.42"),
}
METHODS = {
    "gradcam": (camseg.GradCAM, pgc.GradCAM, {}),
    # pytorch-grad-cam adds 1e-6 to the alpha denominator
    "gradcam_pp": (camseg.GradCAMPlusPlus, pgc.GradCAMPlusPlus, {"eps": 1e-6}),
    "hirescam": (camseg.HiResCAM, pgc.HiResCAM, {}),
    "xgradcam": (camseg.XGradCAM, pgc.XGradCAM, {}),
    "layercam": (camseg.LayerCAM, pgc.LayerCAM, {}),
    "gradcam_elementwise": (camseg.GradCAMElementWise, pgc.GradCAMElementWise, {}),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_and_layer(request):
    ctor, layer = MODELS[request.param]
    torch.manual_seed(0)
    model = ctor(weights=None, num_classes=3).eval().double()
    return model, layer


def _reference_raw(cam_cls, model, layer, x, targets, *, clip=True, eigen_smooth=False):
    module = model.get_submodule(layer)
    with cam_cls(model=model, target_layers=[module]) as cam:
        outputs = cam.activations_and_grads(x)
        tg = [ClassifierOutputTarget(t) for t in targets]
        model.zero_grad()
        sum(t(o) for t, o in zip(tg, outputs)).backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(x, module, tg, acts, grads, eigen_smooth)
    model.zero_grad(set_to_none=True)
    return torch.from_numpy(np.maximum(raw, 0) if clip else raw)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_matches_pytorch_grad_cam(model_and_layer, method):
    model, layer = model_and_layer
    ours_cls, theirs_cls, kwargs = METHODS[method]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    targets = [2, 1]
    ours = ours_cls(model, layer, **kwargs)(x, targets=targets, normalize="minmax", size=None)
    theirs = camseg.functional.normalize(_reference_raw(theirs_cls, model, layer, x, targets))
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_eigengradcam_matches_pytorch_grad_cam_up_to_the_sign(model_and_layer):
    # pytorch-grad-cam leaves the sign of the principal component to the SVD; camseg
    # fixes it (positive correlation with the channel sum). Per image, our raw map
    # is the positive part of their projection or of its negative.
    model, layer = model_and_layer
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    ours = camseg.EigenGradCAM(model, layer)(x, targets=[2, 1], normalize=None, size=None)
    proj = _reference_raw(pgc.EigenGradCAM, model, layer, x, [2, 1], clip=False)
    assert ours.dtype == torch.float64 and ours.shape == proj.shape
    for i in range(2):
        err = min(
            float((ours[i] - proj[i].clamp(min=0)).abs().max()),
            float((ours[i] - (-proj[i]).clamp(min=0)).abs().max()),
        )
        assert err < 1e-8 * max(1.0, float(proj[i].abs().max()))
        assert float(ours[i].max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_gradcam_matches_captum_layergradcam(name):
    from captum.attr import LayerGradCam

    ctor, layer = MODELS[name]
    torch.manual_seed(1)
    model = ctor(weights=None, num_classes=4).eval().double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    targets = torch.tensor([3, 1])
    ours = camseg.GradCAM(model, layer)(x, targets=targets, normalize=None, size=None)
    theirs = LayerGradCam(model, model.get_submodule(layer)).attribute(
        x, target=targets, relu_attributions=True
    )
    torch.testing.assert_close(ours, theirs[:, 0].detach(), atol=1e-10, rtol=1e-7)
    model.zero_grad(set_to_none=True)


def test_linear_cam_equals_gradcam_on_gap_linear_head():
    torch.manual_seed(2)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval().double()
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    t = torch.tensor([[0, 4], [1, 2], [3, 3]])
    lin = camseg.LinearCAM(model, "layer4", head="fc")(x, targets=t, normalize=None, size=None)
    grad = camseg.GradCAM(model, "layer4")(x, targets=t, normalize=None, size=None)
    z = 2 * 2  # layer4 of a 64-pixel input is 2x2
    torch.testing.assert_close(lin, z * grad, atol=1e-10, rtol=1e-9)


@pytest.fixture
def float64_default():
    # pytorch-grad-cam's ScoreCAM collects its scores with torch.Tensor(list), in the default dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,ctor,layer",
    [
        ("ScoreCAM", torchvision.models.resnet18, "layer3"),
        ("ScoreCAM", torchvision.models.mobilenet_v3_small, "features.12"),
        ("AblationCAM", torchvision.models.resnet18, "layer4"),
        ("AblationCAM", torchvision.models.resnet18, "layer3"),
    ],
)
def test_perturbation_cams_match_pytorch_grad_cam(
    method, ctor, layer, float64_default, monkeypatch
):
    # pytorch-grad-cam rounds Ablation-CAM's scores with np.float32 (its only float32 step):
    # run it in float64 so the comparison is exact
    monkeypatch.setattr(pgc.ablation_cam.np, "float32", np.float64)
    torch.manual_seed(4)
    model = ctor(weights=None, num_classes=3).eval().double()
    head = {"resnet18": "fc", "mobilenet_v3_small": "classifier.3", "squeezenet1_1": "classifier.1"}
    head = model.get_submodule(head[ctor.__name__])
    with torch.no_grad():
        head.bias += 5.0  # positive scores: Ablation-CAM divides by the score
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    module = model.get_submodule(layer)
    targets = [ClassifierOutputTarget(2)]
    with getattr(pgc, method)(model=model, target_layers=[module]) as cam:
        cam.activations_and_grads(x)
        acts = cam.activations_and_grads.activations[0].numpy()
        raw = cam.get_cam_image(x, module, targets, acts, None, False)
    theirs = camseg.functional.normalize(torch.from_numpy(np.maximum(raw, 0)))
    # pytorch-grad-cam ablates to 0 only where the layer's minimum is 0 (ReLU layers, as here)
    assert method == "ScoreCAM" or acts.min() == 0
    ours = getattr(camseg, method)(model, layer)(x, targets=2, size=None)
    assert ours.dtype == torch.float64 and float(ours.max()) == 1.0
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_eigen_smooth_matches_pytorch_grad_cam_up_to_the_sign(model_and_layer, method):
    model, layer = model_and_layer
    ours_cls, theirs_cls, kwargs = METHODS[method]
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 64, 64, generator=g, dtype=torch.float64)
    ours = ours_cls(model, layer, **kwargs)(
        x, targets=[2, 1], normalize=None, size=None, eigen_smooth=True
    )
    proj = _reference_raw(theirs_cls, model, layer, x, [2, 1], clip=False, eigen_smooth=True)
    proj = proj.double()
    # pytorch-grad-cam returns the projection in float32 with the SVD's arbitrary sign, and adds
    # 1e-7 to XGrad-CAM's denominators (the projection amplifies that to ~3e-5 on DenseNet)
    for i in range(2):
        scale = max(1.0, float(proj[i].abs().max()))
        err = min(
            float((ours[i] - proj[i].clamp(min=0)).abs().max()),
            float((ours[i] - (-proj[i]).clamp(min=0)).abs().max()),
        )
        assert err < 1e-4 * scale
        assert float(ours[i].max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_minmax_fusion_reproduces_pytorch_grad_cam_on_several_layers(method):
    ours_cls, theirs_cls, _ = METHODS[method]
    torch.manual_seed(7)
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval().double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    layers = ["layer2", "layer3", "layer4"]
    modules = [model.get_submodule(n) for n in layers]
    with theirs_cls(model=model, target_layers=modules) as cam:
        theirs = torch.from_numpy(cam(x, targets=[ClassifierOutputTarget(t) for t in (2, 1)]))
    model.zero_grad(set_to_none=True)
    ours = ours_cls(model, layers)(x, targets=[2, 1], fusion="minmax").float()
    default = ours_cls(model, layers)(x, targets=[2, 1]).float()
    # pytorch-grad-cam resizes with OpenCV in float32 and adds 1e-7 to its min-max denominators
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert float((default - theirs).abs().max()) > 1e-3  # camseg's own rule differs


def test_pytorch_grad_cam_target_objects_work_unchanged():
    from pytorch_grad_cam.utils.model_targets import (
        BinaryClassifierOutputTarget,
        ClassifierOutputSoftmaxTarget,
        SemanticSegmentationTarget,
    )

    torch.manual_seed(9)
    feats = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU())
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    # a classifier: their target objects equal camseg's class indices / callables
    clf = torch.nn.Sequential(
        feats, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3)
    ).double()
    cam = camseg.GradCAM(clf, "0.1")
    torch.testing.assert_close(
        cam(x, [ClassifierOutputTarget(2), ClassifierOutputTarget(0)]), cam(x, [2, 0])
    )
    soft = cam(x, [ClassifierOutputSoftmaxTarget(1)] * 2)
    torch.testing.assert_close(soft, cam(x, lambda z: torch.softmax(z, -1)[:, 1]))
    # a single-logit binary head: one map per image, class 0 explains the negated logit
    binary = torch.nn.Sequential(*list(clf)[:3], torch.nn.Linear(6, 1)).double()
    bcam = camseg.GradCAM(binary, "0.1")
    got = bcam(x, [BinaryClassifierOutputTarget(1), BinaryClassifierOutputTarget(0)])
    assert got.shape == (2, 12, 12)
    torch.testing.assert_close(got, bcam(x, [1, 0]))
    # a segmentation model: SemanticSegmentationTarget(category, mask) per image
    seg = torch.nn.Sequential(feats, torch.nn.Conv2d(6, 2, 1)).double()
    masks = [np.zeros((12, 12), dtype=np.float64) for _ in range(2)]
    masks[0][2:6, 2:6] = 1
    masks[1][6:, 6:] = 1
    targets = [SemanticSegmentationTarget(1, m) for m in masks]
    scam = camseg.GradCAM(seg, "0.1")
    expected = scam(x, lambda out: (out[:, 1] * torch.from_numpy(np.stack(masks))).sum((1, 2)))
    torch.testing.assert_close(scam(x, targets), expected)
