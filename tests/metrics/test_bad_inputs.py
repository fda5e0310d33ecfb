"""Bad inputs to the metrics that once gave a silent wrong answer or the wrong exception type."""

import math

import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from camseg.metrics import (
    average_drop,
    binary_stats,
    deletion_auc,
    deletion_curve,
    increase_in_confidence,
    insertion_auc,
    insertion_curve,
    nll,
    randomization_similarity,
    road_auc,
    road_curve,
    roc_auc,
    roc_curve,
    spearman,
    youden_threshold,
)


def _model(out: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(144, out)).eval()


def _saliency(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    score = m(x).gather(1, t[:, None]).sum()
    return torch.autograd.grad(score, x)[0].abs().sum(1)


@pytest.mark.parametrize("fn", [average_drop, increase_in_confidence])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_explanation_metrics_refuse_non_finite_images(fn, bad) -> None:  # type: ignore[no-untyped-def]
    # increase_in_confidence used to return 0 % and average_drop NaN for the same image
    images = torch.rand(2, 2, 6, 6)
    images[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match="Expected `images` to be finite, but it holds 1 NaN"):
        fn(_model(), images, torch.rand(2, 6, 6), 1)


PERTURBATION_METRICS = [
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    average_drop,
    increase_in_confidence,
    road_auc,
    road_curve,
]


@pytest.mark.parametrize("fn", PERTURBATION_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("targets", [-1, [0, -2], torch.tensor([-1, 0])])
def test_negative_targets_are_a_value_error(fn, targets) -> None:  # type: ignore[no-untyped-def]
    # an int -1 used to reach torch's gather and raise its RuntimeError
    images, maps = torch.rand(2, 2, 6, 6), torch.rand(2, 6, 6)
    with pytest.raises(ValueError, match="Expected `targets` to be >= 0, but got -"):
        fn(_model(), images, maps, targets)


@pytest.mark.parametrize("fn", PERTURBATION_METRICS, ids=lambda f: f.__name__)
def test_perturbation_metrics_refuse_nan_images(fn) -> None:  # type: ignore[no-untyped-def]
    images = torch.rand(2, 2, 6, 6)
    images[0, 1, 0, 0] = math.nan
    with pytest.raises(ValueError, match="Expected `images` to be finite"):
        fn(_model(), images, torch.rand(2, 6, 6), 0)


def test_randomization_similarity_checks_targets_against_the_model() -> None:
    images = torch.rand(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"`targets` in \[0, 2\] for 3 classes, but got 5"):
        randomization_similarity(_model(), _saliency, images, layers=["2"], targets=5)
    with pytest.raises(ValueError, match="Expected `targets` to be >= 0, but got -1"):
        randomization_similarity(_model(), _saliency, images, layers=["2"], targets=-1)
    with pytest.raises(ValueError, match=r"Expected `targets` in \[0, 1\] for a single-logit head"):
        randomization_similarity(_model(1), _saliency, images, layers=["2"], targets=2)


def test_randomization_similarity_names_a_constant_map() -> None:
    images = torch.rand(2, 2, 6, 6)

    first: list[torch.Tensor] = []

    def dies(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # maps that vanish once the first layer is randomized
        if not first:
            first.append(m[0].weight.detach().clone())
        trained = bool(torch.equal(m[0].weight, first[0]))
        return _saliency(m, x, t) if trained else torch.zeros(x.shape[0], 6, 6)

    with pytest.raises(ValueError, match=r"the maps after randomizing '0' to vary.*map 0"):
        randomization_similarity(_model(), dies, images, layers=["0"], seed=1)
    first.clear()
    rho = randomization_similarity(_model(), dies, images, layers=["0"], seed=1, zero_division=0.0)
    assert rho.tolist() == [[0.0, 0.0]]


def test_randomization_similarity_uses_the_capture_layer_check() -> None:
    with pytest.raises(ValueError, match=r"Hint: camseg\.list_layers\(model\)"):
        randomization_similarity(_model(), _saliency, torch.rand(1, 2, 6, 6), layers=["3"])
    with pytest.raises(ValueError, match="to name each layer once"):
        randomization_similarity(_model(), _saliency, torch.rand(1, 2, 6, 6), layers=["2", "2"])
    # modules of the model work as well as names
    model = _model()
    by_name = randomization_similarity(model, _saliency, torch.rand(2, 2, 6, 6), layers=["2"])
    by_module = randomization_similarity(
        model, _saliency, torch.rand(2, 2, 6, 6), layers=[model[2]]
    )
    assert by_name.shape == by_module.shape == (1, 2)


def test_spearman_of_a_constant_map_is_an_error_or_the_value_asked_for() -> None:
    a, b = torch.rand(3, 5), torch.rand(3, 5)
    b[1] = 2.0
    with pytest.raises(ValueError, match=r"Expected `b` to vary within each map, but map 1"):
        spearman(a, b)
    got = spearman(a, b, zero_division=0.0)
    assert float(got[1]) == 0.0 and -1 <= float(got[0]) <= 1
    with pytest.raises(TypeError, match="`zero_division` to be None"):
        spearman(a, b, zero_division="0")  # type: ignore[arg-type]


@pytest.mark.parametrize("eps", [-1.0, 0.0, 1.0, math.nan, math.inf])
def test_nll_eps_must_lie_in_the_open_unit_interval(eps: float) -> None:
    with pytest.raises(ValueError, match=r"Expected `eps` to be a number in \(0, 1\)"):
        nll(torch.tensor([0.0, 0.5]), torch.tensor([1, 0]), eps=eps)
    with pytest.raises(TypeError, match="Expected `eps` to be a number"):
        nll(torch.tensor([0.5]), torch.tensor([1]), eps="1e-12")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf])
def test_binary_stats_threshold_must_be_finite(threshold: float) -> None:
    with pytest.raises(ValueError, match="Expected `threshold` to be a finite number"):
        binary_stats(torch.tensor([0.2, 0.9]), torch.tensor([0, 1]), threshold=threshold)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_roc_curve_and_youden_take_integer_scores(dtype: torch.dtype) -> None:
    # torch.full(inf) in an integer dtype used to overflow
    scores = torch.tensor([3, 7, 7, 1, 0, 9, 4, 2], dtype=dtype)
    labels = torch.tensor([0, 1, 0, 0, 0, 1, 1, 0])
    fpr, tpr, thr = roc_curve(scores, labels)
    s_fpr, s_tpr, s_thr = skm.roc_curve(
        labels.numpy(), scores.double().numpy(), drop_intermediate=False
    )
    torch.testing.assert_close(fpr, torch.from_numpy(s_fpr))
    torch.testing.assert_close(tpr, torch.from_numpy(s_tpr))
    assert thr.dtype == torch.float64 and math.isinf(float(thr[0]))
    torch.testing.assert_close(thr[1:], torch.from_numpy(s_thr[1:]))
    assert float(youden_threshold(scores, labels)) == float(
        youden_threshold(scores.double(), labels)
    )
    assert float(roc_auc(scores, labels)) == pytest.approx(
        skm.roc_auc_score(labels.numpy(), scores.numpy())
    )


def test_roc_curve_refuses_integers_beyond_float64_precision() -> None:
    scores = torch.tensor([2**60, 2**60 + 1, 0])
    with pytest.raises(ValueError, match=r"integer `scores` within \+-2\*\*53"):
        roc_curve(scores, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"integer `scores` within \+-2\*\*53"):
        youden_threshold(scores, torch.tensor([0, 1, 0]))
