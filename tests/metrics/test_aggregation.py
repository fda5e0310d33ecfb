import numpy as np
import pytest
import torch

from camseg.metrics import aggregate, estimated_tumor_area


def _loop(values: np.ndarray, groups: np.ndarray, method: str, k: int, thr: float) -> np.ndarray:
    out = []
    for g in np.unique(groups):
        v = values[groups == g]
        if method == "max":
            out.append(v.max())
        elif method == "mean":
            out.append(v.mean())
        elif method == "sum":
            out.append(v.sum())
        elif method == "topk_mean":
            out.append(np.sort(v)[::-1][:k].mean())
        else:
            out.append((v > thr).mean())
    return np.array(out)


@pytest.mark.parametrize("method", ["max", "mean", "sum", "topk_mean", "fraction_above"])
@pytest.mark.parametrize("k", [1, 3])
def test_aggregate_equals_loop(method: str, k: int) -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.round(torch.rand(200, generator=g) * 20) / 20  # ties
    groups = torch.randint(-3, 40, (200,), generator=g) * 7  # unsorted, negative, sparse ids
    ids, agg = aggregate(values, groups, method=method, k=k, threshold=0.7)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ids.numpy(), np.unique(groups.numpy()))
    expect = _loop(values.double().numpy(), groups.numpy(), method, k, 0.7)
    np.testing.assert_allclose(agg.double().numpy(), expect, rtol=1e-6, atol=1e-6)


def test_aggregate_hand_values() -> None:
    probs = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.3, 0.95])
    slide = torch.tensor([0, 0, 0, 7, 7, 7])
    ids, v = aggregate(probs, slide, method="topk_mean", k=2)
    assert ids.tolist() == [0, 7]
    assert v.tolist() == pytest.approx([0.85, 0.625])
    # k larger than a group averages the whole group
    _, v = aggregate(probs, slide, method="topk_mean", k=10)
    assert v.tolist() == pytest.approx([0.6, 0.4833333])
    # "above" is strict
    _, v = aggregate(
        torch.tensor([0.7, 0.71]), torch.tensor([1, 1]), method="fraction_above", threshold=0.7
    )
    assert v.tolist() == [0.5]
    # integer values stay integers for max / sum, become float for mean
    _, v = aggregate(torch.tensor([1, 5, 2]), torch.tensor([0, 0, 1]), method="sum")
    assert v.tolist() == [6, 2] and v.dtype == torch.int64
    _, v = aggregate(torch.tensor([1, 5, 2]), torch.tensor([0, 0, 1]), method="mean")
    assert v.tolist() == [3.0, 2.0] and v.is_floating_point()


def test_estimated_tumor_area() -> None:
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    masks[1, 0, 0] = True
    masks[2] = True
    ids, area = estimated_tumor_area(masks, torch.tensor([2, 2, 1]), pixel_area=0.5)
    assert ids.tolist() == [1, 2]
    assert area.tolist() == [8.0, 2.5]


def test_errors() -> None:
    v = torch.rand(4)
    g = torch.tensor([0, 0, 1, 1])
    with pytest.raises(TypeError, match="`groups` to hold integer ids"):
        aggregate(v, g.float())
    with pytest.raises(ValueError, match="same batch size"):
        aggregate(v, g[:3])
    with pytest.raises(ValueError, match="`method` to be one of"):
        aggregate(v, g, method="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`k` to be an int >= 1"):
        aggregate(v, g, method="topk_mean", k=0)
    with pytest.raises(ValueError, match="`values` to be finite"):
        aggregate(torch.tensor([0.1, float("nan"), 0.2, 0.3]), g)
    with pytest.raises(TypeError, match="`values` to hold real numbers"):
        aggregate(v > 0.5, g)
    with pytest.raises(TypeError, match="`threshold` to be a number"):
        aggregate(v, g, method="fraction_above", threshold=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`values` to be a tensor of shape \(N,\)"):
        aggregate(v[None], g)
    with pytest.raises(TypeError, match=r"`masks` to be a torch\.bool mask"):
        estimated_tumor_area(torch.zeros(4, 2, 2), g)
    with pytest.raises(ValueError, match="`pixel_area` to be a finite number >= 0"):
        estimated_tumor_area(torch.zeros(4, 2, 2, dtype=torch.bool), g, pixel_area=-1.0)
