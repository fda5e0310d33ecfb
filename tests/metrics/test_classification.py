import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from camseg.metrics import (
    average_precision,
    binary_stats,
    cohen_kappa,
    confusion_matrix,
    expected_calibration_error,
    nll,
    roc_auc,
    roc_curve,
    youden_threshold,
)
from camseg.metrics._ranking import average_ranks


def _data(seed: int, n: int = 200, ties: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1
    s = torch.rand(n, generator=g) + 0.3 * y
    if ties:
        s = torch.round(s * 10) / 10
    return s, y


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [True, False])
def test_roc_auc_ap_equal_sklearn(seed: int, ties: bool) -> None:
    s, y = _data(seed, ties=ties)
    assert float(roc_auc(s, y)) == pytest.approx(skm.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert float(average_precision(s, y)) == pytest.approx(
        skm.average_precision_score(y.numpy(), s.numpy()), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_equals_sklearn(seed: int) -> None:
    s, y = _data(seed)
    fpr, tpr, thr = roc_curve(s, y)
    efpr, etpr, ethr = skm.roc_curve(y.numpy(), s.numpy(), drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), efpr, atol=1e-12)
    np.testing.assert_allclose(tpr.numpy(), etpr, atol=1e-12)
    assert math.isinf(float(thr[0]))
    np.testing.assert_allclose(thr[1:].numpy(), ethr[1:], atol=1e-7)


def test_roc_auc_hand_values_and_ties() -> None:
    # all scores tied -> 0.5; perfect separation -> 1; reversed -> 0
    y = torch.tensor([0, 1, 0, 1])
    assert float(roc_auc(torch.ones(4), y)) == 0.5
    assert float(roc_auc(torch.tensor([0.0, 1.0, 0.0, 1.0]), y)) == 1.0
    assert float(roc_auc(torch.tensor([1.0, 0.0, 1.0, 0.0]), y)) == 0.0
    # one tie between a positive and a negative counts 1/2 of 1 pair out of 4
    assert float(roc_auc(torch.tensor([0.1, 0.5, 0.5, 0.9]), y)) == pytest.approx(0.875)
    # integer scores and bool labels work too
    assert float(roc_auc(torch.tensor([1, 2, 3, 4]), y.bool())) == pytest.approx(0.75)


def test_average_ranks_match_scipy() -> None:
    from scipy.stats import rankdata

    x = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(average_ranks(x).numpy(), rankdata(x.numpy(), axis=1))


def test_youden_threshold() -> None:
    s, y = _data(7, ties=False)
    fpr, tpr, thr = skm.roc_curve(y.numpy(), s.numpy(), drop_intermediate=False)
    j = tpr - fpr
    assert float(youden_threshold(s, y)) == pytest.approx(thr[int(np.argmax(j))])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_binary_stats_equal_sklearn(threshold: float) -> None:
    s, y = _data(3, ties=False)
    st = binary_stats(s, y, threshold=threshold)
    pred = (s >= threshold).numpy()
    yn = y.numpy()
    assert float(st.sensitivity) == pytest.approx(skm.recall_score(yn, pred))
    assert float(st.specificity) == pytest.approx(skm.recall_score(1 - yn, ~pred))
    assert float(st.precision) == pytest.approx(skm.precision_score(yn, pred))
    assert float(st.f1) == pytest.approx(skm.f1_score(yn, pred))
    assert float(st.accuracy) == pytest.approx(skm.accuracy_score(yn, pred))
    assert float(st.tp + st.fp + st.fn + st.tn) == len(y)


def test_binary_stats_bool_and_zero_division() -> None:
    preds = torch.tensor([False, False, False])
    labels = torch.tensor([1, 0, 0])
    st = binary_stats(preds, labels)
    assert math.isnan(float(st.precision))
    assert float(st.sensitivity) == 0.0
    assert float(binary_stats(preds, labels, zero_division=0.0).precision) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_equals_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 4, (50,), generator=g)
    b = torch.randint(0, 4, (50,), generator=g)
    np.testing.assert_array_equal(
        confusion_matrix(b, a, num_classes=5).numpy(), skm.confusion_matrix(a, b, labels=range(5))
    )


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@pytest.mark.parametrize("seed", range(3))
def test_cohen_kappa_equals_sklearn(weights: str | None, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 5, (60,), generator=g)
    b = (a + torch.randint(-1, 2, (60,), generator=g)).clamp(0, 4)
    # non-contiguous ids: sklearn indexes the classes present, in sorted order
    a2, b2 = a * 2, b * 2
    for x, z in ((a, b), (a2, b2)):
        expect = skm.cohen_kappa_score(x.numpy(), z.numpy(), weights=weights)
        assert float(cohen_kappa(z, x, weights=weights)) == pytest.approx(expect)  # type: ignore[arg-type]
    expect = skm.cohen_kappa_score(a.numpy(), b.numpy(), weights=weights, labels=list(range(7)))
    got = cohen_kappa(b, a, weights=weights, num_classes=7)  # type: ignore[arg-type]
    assert float(got) == pytest.approx(expect)


def test_ece_hand_value_and_perfect_calibration() -> None:
    # two bins: (0.8, 1.0] holds {0.95 right, 0.85 wrong}: |0.5 - 0.9| * 2 / 4;
    # (0.6, 0.8] holds {0.75 right, 0.65 right}: |1 - 0.7| * 2 / 4
    ece = expected_calibration_error(
        torch.tensor([0.95, 0.85, 0.25, 0.65]), torch.tensor([1, 0, 0, 1]), n_bins=5
    )
    assert float(ece) == pytest.approx(0.35)
    # multiclass form gives the same for the two-column version
    p = torch.tensor([0.95, 0.85, 0.25, 0.65])
    probs2 = torch.stack([1 - p, p], dim=1)
    assert float(
        expected_calibration_error(probs2, torch.tensor([1, 0, 0, 1]), n_bins=5)
    ) == pytest.approx(0.35)
    # confident and always right -> 0
    assert float(expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([1, 0]))) == 0


def test_nll_equals_sklearn_log_loss() -> None:
    p = torch.tensor([0.9, 0.2, 0.6, 0.3], dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 1])
    assert float(nll(p, y)) == pytest.approx(skm.log_loss(y.numpy(), p.numpy()))
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert float(nll(probs, torch.tensor([0, 2]))) == pytest.approx(
        -(math.log(0.7) + math.log(0.8)) / 2, rel=1e-6
    )


# ------------------------------------------------------------------ errors


def test_errors() -> None:
    s = torch.rand(4)
    with pytest.raises(ValueError, match="`labels` to hold binary labels"):
        roc_auc(s, torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(s, torch.tensor([1, 1, 1, 1]))
    with pytest.raises(ValueError, match="both classes"):
        roc_curve(s, torch.tensor([0, 0, 0, 0]))
    with pytest.raises(ValueError, match="same batch size"):
        roc_auc(s, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="`scores` to be finite"):
        roc_auc(torch.tensor([0.1, float("nan"), 0.3, 0.2]), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TypeError, match="`scores` to hold real scores"):
        roc_auc(torch.tensor([True, False]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"`scores` to be a torch\.Tensor"):
        roc_auc([0.1, 0.2], torch.tensor([0, 1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one positive"):
        average_precision(s, torch.zeros(4))
    with pytest.raises(ValueError, match=r"`scores` to be a tensor of shape \(N,\)"):
        average_precision(torch.rand(2, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="`threshold` to be a number"):
        binary_stats(s, torch.tensor([0, 1, 1, 0]), threshold="0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`zero_division` to be a number"):
        binary_stats(s, torch.tensor([0, 1, 1, 0]), zero_division=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`preds` to hold integer class ids"):
        confusion_matrix(torch.rand(3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="class ids >= 0"):
        confusion_matrix(torch.tensor([0, -1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="Expected class ids in"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match="`weights` to be one of"):
        cohen_kappa(torch.tensor([0, 1]), torch.tensor([0, 1]), weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`probs` to lie in \[0, 1\]"):
        expected_calibration_error(torch.tensor([1.2, 0.1]), torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="`probs` to have a floating-point dtype"):
        expected_calibration_error(torch.tensor([1, 0]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="`labels` in \\[0, 1\\]"):
        nll(torch.tensor([[0.5, 0.5]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="`n_bins` to be an int >= 1"):
        expected_calibration_error(torch.tensor([0.2]), torch.tensor([1]), n_bins=0)
