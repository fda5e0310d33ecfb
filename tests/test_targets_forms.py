"""The target forms users bring from pytorch-grad-cam: NumPy integers and one callable
per image (its target objects), resolved in the one interpreter of ``targets``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camseg
from camseg.metrics import deletion_auc

from .conftest import TinyGAPNet


class ClassifierOutputTarget:
    """pytorch-grad-cam's target object, re-stated: a per-image output -> that class's logit."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.ndim == 1:
            return model_output[self.category]
        return model_output[:, self.category]


class RawScoresOutputTarget:
    """pytorch-grad-cam's "all scores" target: the whole per-image output."""

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output


def _setup() -> tuple[TinyGAPNet, torch.Tensor]:
    torch.manual_seed(0)
    net = TinyGAPNet().double()
    g = torch.Generator().manual_seed(1)
    return net, torch.rand(3, 3, 12, 12, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "numpy_targets",
    [
        np.array([2, 0, 1]),
        np.array([2, 0, 1], dtype=np.int32),
        [np.int64(2), np.int64(0), np.int64(1)],
        list(np.argmax(np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), axis=1)),
    ],
)
def test_numpy_class_ids_equal_ints(numpy_targets: object) -> None:
    net, x = _setup()
    with camseg.GradCAM(net, "features.1") as cam:
        expected = cam(x, [2, 0, 1])
        torch.testing.assert_close(cam(x, numpy_targets), expected, rtol=0, atol=0)  # type: ignore[arg-type]
    with camseg.LinearCAM(net, "features", head="fc") as lin:
        torch.testing.assert_close(lin(x, numpy_targets), lin(x, [2, 0, 1]), rtol=0, atol=0)  # type: ignore[arg-type]


def test_numpy_scalar_and_k_targets() -> None:
    net, x = _setup()
    with camseg.GradCAM(net, "features.1") as cam:
        torch.testing.assert_close(cam(x, np.int64(1)), cam(x, 1), rtol=0, atol=0)  # type: ignore[arg-type]
        k = np.array([[0, 1]] * 3)
        torch.testing.assert_close(cam(x, k), cam(x, torch.tensor(k)), rtol=0, atol=0)  # type: ignore[arg-type]


def test_numpy_bad_values_get_the_usual_errors() -> None:
    net, x = _setup()
    with camseg.GradCAM(net, "features.1") as cam:
        with pytest.raises(TypeError, match="integer"):
            cam(x, np.array([1.0, 0.0, 2.0]))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="`targets` in"):
            cam(x, np.array([1, 0, 7]))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`targets`"):
            cam(x, np.float64(1.0))  # type: ignore[arg-type]


def test_per_image_callables_equal_class_ids() -> None:
    net, x = _setup()
    objects = [ClassifierOutputTarget(2), ClassifierOutputTarget(0), ClassifierOutputTarget(1)]
    for cls in (camseg.GradCAM, camseg.GradCAMPlusPlus, camseg.LayerCAM):
        with cls(net, "features.1") as cam:
            got = cam.explain(x, objects)  # type: ignore[arg-type]
            torch.testing.assert_close(got.maps, cam(x, [2, 0, 1]), rtol=0, atol=1e-12)
            assert got.targets is None  # scores, not classes
    # LayerCapture takes the same form
    cap = camseg.LayerCapture(net, "features.1")
    with cap.session(grad_at_layer=True):
        logits = net(x)
        by_objects = cap.grad(logits, objects)  # type: ignore[arg-type]
    with cap.session(grad_at_layer=True):
        by_ids = cap.grad(net(x), [2, 0, 1])
    torch.testing.assert_close(by_objects, by_ids)


def test_per_image_callable_with_several_numbers_is_summed() -> None:
    net, x = _setup()
    with camseg.GradCAM(net, "features.1") as cam:
        got = cam(x, [RawScoresOutputTarget()] * 3, normalize=None)  # type: ignore[arg-type]
        summed = cam(x, lambda z: z.sum(1), normalize=None)
    torch.testing.assert_close(got, summed, rtol=0, atol=1e-12)


def test_per_image_callables_errors() -> None:
    net, x = _setup()
    with camseg.GradCAM(net, "features.1") as cam:
        with pytest.raises(ValueError, match="one `targets` callable per image"):
            cam(x, [ClassifierOutputTarget(0)] * 2)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"`targets\[1\]`"):
            cam(x, [ClassifierOutputTarget(0), lambda z: 3, ClassifierOutputTarget(0)])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="`targets`"):
            cam(x, [ClassifierOutputTarget(0), 1, 2])  # type: ignore[list-item]
    lin = camseg.LinearCAM(net, "features", head="fc")
    with lin, pytest.raises(TypeError, match="closed-form CAM needs the class"):
        lin(x, [ClassifierOutputTarget(0)] * 3)  # type: ignore[arg-type]
    # class-index consumers (the metrics) say they need classes
    with pytest.raises(TypeError, match="sequence of callables"):
        deletion_auc(
            net, x, torch.rand(3, 12, 12, dtype=torch.float64), [ClassifierOutputTarget(0)] * 3
        )  # type: ignore[arg-type]


def test_metrics_take_numpy_class_ids() -> None:
    net, x = _setup()
    maps = torch.rand(3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = deletion_auc(net, x, maps, np.array([2, 0, 1]))  # type: ignore[arg-type]
    b = deletion_auc(net, x, maps, [2, 0, 1])
    torch.testing.assert_close(a, b)
