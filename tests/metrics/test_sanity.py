import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from camseg.metrics import randomization_similarity, spearman


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2)
    ).eval()


def _saliency(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    score = m(x).gather(1, t[:, None]).sum()
    return torch.autograd.grad(score, x)[0].abs()[:, 0]


def test_spearman_equals_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.round(torch.rand(4, 5, 5, generator=g) * 5)
    b = a + torch.rand(4, 5, 5, generator=g) * 3
    got = spearman(a, b)
    for i in range(4):
        expect = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert float(got[i]) == pytest.approx(expect)
    # a constant map has no rank variance: undefined, so an error unless `zero_division` says
    with pytest.raises(ValueError, match="`a` to vary within each map, but map 0 is constant"):
        spearman(torch.ones(1, 4), torch.rand(1, 4))
    nan = spearman(torch.ones(1, 4), torch.rand(1, 4), zero_division=float("nan"))
    assert torch.isnan(nan).all()


def test_randomization_leaves_model_and_rng_alone() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(3, 1, 4, 4)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    rho = randomization_similarity(model, _saliency, images, layers=["4", "1", "0"])
    assert torch.equal(torch.rand(3), expected_next)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert rho.shape == (3, 3)
    assert (rho <= 1).all() and (rho >= -1).all()
    # randomising the head changes input-gradient maps
    assert (rho[0] < 0.99).all()
    # deterministic in `seed`
    again = randomization_similarity(model, _saliency, images, layers=["4", "1", "0"])
    torch.testing.assert_close(rho, again)


def test_map_independent_of_model_gives_one() -> None:
    model = _model()
    images = torch.rand(2, 1, 4, 4)
    edge = torch.arange(16.0).view(1, 4, 4).expand(2, 4, 4)

    def fixed(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return edge.clone()

    rho = randomization_similarity(model, fixed, images, layers=["4", "0"])
    torch.testing.assert_close(rho, torch.ones(2, 2, dtype=torch.float64))


def test_targets_are_fixed_before_randomization() -> None:
    model = _model()
    images = torch.rand(2, 1, 4, 4)
    seen = []

    def record(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return _saliency(m, x, t)

    randomization_similarity(model, record, images, layers=["4"], targets=1)
    assert all(t.tolist() == [1, 1] for t in seen)
    seen.clear()
    randomization_similarity(model, record, images, layers=["4", "0"])
    with torch.no_grad():
        pred = model(images).argmax(1)
    assert all(torch.equal(t, pred) for t in seen) and len(seen) == 3
    np.testing.assert_array_equal(seen[0].numpy(), pred.numpy())


def test_errors() -> None:
    model = _model()
    images = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="`layers` to name a submodule"):
        randomization_similarity(model, _saliency, images, layers=["layer9"])
    with pytest.raises(ValueError, match="at least one module"):
        randomization_similarity(model, _saliency, images, layers=[])
    with pytest.raises(TypeError, match="`layers` to be a sequence"):
        randomization_similarity(model, _saliency, images, layers="4")
    with pytest.raises(TypeError, match="`explain_fn` to be callable"):
        randomization_similarity(model, None, images, layers=["4"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`model` to be a torch\.nn\.Module"):
        randomization_similarity(lambda x: x, _saliency, images, layers=["4"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`explain_fn\(\.\.\.\)` to be a tensor of shape"):
        randomization_similarity(model, lambda m, x, t: x, images, layers=["4"])
    with pytest.raises(TypeError, match=r"`explain_fn` to return a torch\.Tensor"):
        randomization_similarity(model, lambda m, x, t: None, images, layers=["4"])  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match=r"`a` and `b` to have the same shape"):
        spearman(torch.rand(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="`a` to be finite"):
        spearman(torch.tensor([[float("nan"), 1.0]]), torch.rand(1, 2))
    with pytest.raises(ValueError, match=r"`a` to be a tensor of shape \(B, \.\.\.\)"):
        spearman(torch.rand(3), torch.rand(3))
