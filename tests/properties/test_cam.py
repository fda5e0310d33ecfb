"""Property-based tests of the CAM engine (hypothesis)."""

from __future__ import annotations

import hypothesis.strategies as st
import torch
from hypothesis import given, settings
from torch import nn

import camseg
from camseg import functional as CF

SETTINGS = settings(max_examples=25, deadline=None)


def _net(seed: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, classes),
    )


METHODS = st.sampled_from(
    [camseg.GradCAM, camseg.GradCAMPlusPlus, camseg.HiResCAM, camseg.XGradCAM, camseg.LayerCAM]
)


@SETTINGS
@given(
    seed=st.integers(0, 10_000), batch=st.integers(1, 5), method=METHODS, side=st.integers(4, 10)
)
def test_batch_equals_images_one_by_one(seed, batch, method, side):
    model = _net(seed)
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))
    targets = torch.randint(0, 3, (batch,), generator=torch.Generator().manual_seed(seed + 1))
    cam = method(model, "3")
    together = cam(x, targets=targets, normalize=None)
    for i in range(batch):
        alone = cam(x[i : i + 1], targets=targets[i : i + 1], normalize=None)
        torch.testing.assert_close(together[i : i + 1], alone, atol=1e-5, rtol=1e-4)


@SETTINGS
@given(seed=st.integers(0, 10_000), method=METHODS, mode=st.sampled_from(["minmax", "max"]))
def test_normalised_maps_lie_in_unit_interval(seed, method, mode):
    model = _net(seed)
    x = torch.randn(3, 3, 7, 9, generator=torch.Generator().manual_seed(seed)) * 3
    maps = method(model, "3")(x, normalize=mode, size=(11, 5))
    assert maps.shape == (3, 11, 5)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


@SETTINGS
@given(seed=st.integers(0, 10_000), c=st.floats(0.01, 100.0))
def test_scaling_score_scales_raw_gradcam(seed, c):
    model = _net(seed)
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    cam = camseg.GradCAM(model, "3")
    base = cam(x, targets=lambda lg: lg[:, 1], normalize=None, size=None)
    scaled = cam(x, targets=lambda lg: c * lg[:, 1], normalize=None, size=None)
    torch.testing.assert_close(scaled, c * base, atol=1e-6 * max(c, 1.0), rtol=1e-4)


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["minmax", "max", None]))
def test_normalize_is_idempotent_and_scale_invariant(seed, mode):
    m = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    once = CF.normalize(m, mode=mode)
    if mode is not None:
        torch.testing.assert_close(CF.normalize(once, mode=mode), once)
        torch.testing.assert_close(CF.normalize(7.0 * m, mode=mode), once)


def test_create_graph_maps_pass_gradcheck_in_float64():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    head = nn.Linear(3, 2).double()
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64)

    for method in (camseg.GradCAM, camseg.HiResCAM, camseg.LayerCAM, camseg.XGradCAM):

        def f(weight: torch.Tensor, method=method) -> torch.Tensor:
            model = _Functional(conv, head, weight)
            return method(model, "act")(x, targets=1, normalize=None, size=None, create_graph=True)

        w = conv.weight.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(f, (w,), eps=1e-6, atol=1e-5)


class _Functional(nn.Module):
    """A conv -> ReLU -> GAP -> linear net whose conv weight is an input (for gradcheck)."""

    def __init__(self, conv: nn.Conv2d, head: nn.Linear, weight: torch.Tensor) -> None:
        super().__init__()
        self.conv, self.head, self.weight = conv, head, weight
        self.act = nn.Softplus()  # smooth, so finite differences are valid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(torch.nn.functional.conv2d(x, self.weight, self.conv.bias, padding=1))
        return self.head(a.mean((2, 3)))
