"""The CAM regularizer of the example: its maps and its terms."""

from __future__ import annotations

import pytest
import torch
from camseg_pcam.models import build_model
from camseg_pcam.regularize import CAM_TERMS, CamRegularizer, tumor_probability_maps

import camseg


def test_tumor_probability_maps_by_hand() -> None:
    model = build_model("small", width=4)
    with torch.no_grad():
        model.fc.weight.copy_(torch.zeros(2, 32))
        model.fc.weight[1, 0] = 2.0
        model.fc.weight[0, 1] = 1.0
        model.fc.bias.copy_(torch.tensor([0.5, 0.0]))
    feats = torch.zeros(1, 32, 2, 2)
    feats[0, 0] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    feats[0, 1] = torch.tensor([[0.0, 3.0], [0.0, 0.0]])
    # logit difference per location: 2*A0 - A1 - 0.5
    expected = torch.sigmoid(torch.tensor([[[1.5, -3.5], [-0.5, -0.5]]]))
    torch.testing.assert_close(tumor_probability_maps(model, feats), expected)


def test_regularizer_terms_and_errors() -> None:
    torch.manual_seed(0)
    model = build_model("small", width=4)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])
    feats = model.forward_features(x)[1]
    reg = CamRegularizer(
        {
            "suppression": 1.0,
            "center_evidence": 0.5,
            "size": 0.5,
            "smoothness": 0.1,
            "equivariance": 0.2,
        },
        size=16,
    )
    total, parts = reg(model, x, feats, y, generator=torch.Generator().manual_seed(0))
    weights = {
        "suppression": 1.0,
        "center_evidence": 0.5,
        "size": 0.5,
        "smoothness": 0.1,
        "equivariance": 0.2,
    }
    torch.testing.assert_close(total, sum(weights[k] * v for k, v in parts.items()))
    maps = reg.maps(model, feats)
    assert maps.shape == (4, 16, 16)
    expected = camseg.losses.suppression_loss(maps, y)
    torch.testing.assert_close(parts["suppression"], expected)
    total.backward()
    assert model.fc.weight.grad is not None
    with pytest.raises(ValueError, match="Expected `cam` to be one of"):
        CamRegularizer({"sparsity": 1.0})
    with pytest.raises(ValueError, match=r"`cam\['size'\]` to be a finite number >= 0"):
        CamRegularizer({"size": -1.0})


def test_regularizer_rejects_bad_weights_with_the_term_name() -> None:
    with pytest.raises(ValueError, match=r"`cam\['smoothness'\]` to be a finite number >= 0.*nan"):
        CamRegularizer({"smoothness": float("nan")})
    with pytest.raises(TypeError, match=r"`cam\['size'\]` to be a number >= 0"):
        CamRegularizer({"size": True})
    assert set(CAM_TERMS) == {
        "suppression",
        "center_evidence",
        "size",
        "smoothness",
        "equivariance",
    }


def test_tumor_probability_maps_need_two_logits() -> None:
    model = build_model("small", width=4, num_classes=3)
    feats = model.forward_features(torch.rand(1, 3, 16, 16))[1]
    with pytest.raises(ValueError, match="head with 2 outputs, but got 3"):
        tumor_probability_maps(model, feats)
