"""Layers that return a tuple, list, namedtuple or dict: ``element=`` chooses the tensor."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn

import camseg

Pair = namedtuple("Pair", ["features", "aux"])


class Block(nn.Module):
    """conv -> ReLU, returning the features together with a side output."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.kind = kind

    def forward(self, x):
        f = torch.relu(self.conv(x))
        aux = None  # a side output that is not a tensor
        if self.kind == "tensor":
            return f
        if self.kind == "tuple":
            return (aux, f)
        if self.kind == "list":
            return [aux, f]
        if self.kind == "namedtuple":
            return Pair(f, aux)
        return {"aux": aux, "features": f}


class Net(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.block = Block(kind)
        self.fc = nn.Linear(6, 3)
        self.kind = kind

    def forward(self, x):
        out = self.block(x)
        if self.kind == "tensor":
            f = out
        elif self.kind in ("tuple", "list"):
            f = out[1]
        elif self.kind == "namedtuple":
            f = out.features
        else:
            f = out["features"]
        return self.fc(f.mean((2, 3)))


ELEMENT = {"tuple": 1, "list": -1, "namedtuple": 0, "dict": "features"}


def _pair(kind):
    torch.manual_seed(0)
    plain = Net("tensor").eval()
    other = Net(kind).eval()
    other.load_state_dict(plain.state_dict())
    return plain, other


@pytest.mark.parametrize("kind", list(ELEMENT))
@pytest.mark.parametrize(
    "cls", [camseg.GradCAM, camseg.LayerCAM, camseg.EigenCAM, camseg.ScoreCAM, camseg.AblationCAM]
)
def test_element_selects_the_tensor_of_a_container_output(kind, cls):
    plain, other = _pair(kind)
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    expected = cls(plain, "block")(x, targets=[0, 2])
    got = cls(other, "block", element=ELEMENT[kind])(x, targets=[0, 2])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_linear_cam_and_create_graph_with_element():
    plain, other = _pair("dict")
    x = torch.rand(2, 3, 10, 10)
    lin = camseg.LinearCAM(other, "block", head="fc", element="features")(x, targets=1)
    torch.testing.assert_close(lin, camseg.LinearCAM(plain, "block", head="fc")(x, targets=1))
    maps = camseg.GradCAM(other, "block", element="features")(x, targets=1, create_graph=True)
    maps.sum().backward()
    assert other.block.conv.weight.grad is not None


def test_element_with_multihead_attention_tokens():
    torch.manual_seed(0)

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)  # (B, 16, 8)
            out, _weights = self.attn(t, t, t)
            return self.head(out.mean(1))

    model = Tokens().eval()
    x = torch.rand(2, 3, 16, 16)
    cam = camseg.GradCAM(
        model,
        "attn",
        element=0,
        reshape=lambda t: camseg.functional.tokens_to_grid(t, prefix_tokens=0),
    )
    maps = cam(x, targets=1, size=None)
    assert maps.shape == (2, 4, 4) and float(maps.max()) == 1.0
    with pytest.raises(TypeError, match="element=0"):
        camseg.GradCAM(model, "attn")(x, targets=1)


def test_bad_element():
    plain, other = _pair("tuple")
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="element.*2 outputs"):
        camseg.GradCAM(other, "block", element=5)(x)
    with pytest.raises(TypeError, match="element.*int index"):
        camseg.GradCAM(other, "block", element="features")(x)
    with pytest.raises(TypeError, match="to be a tensor"):
        camseg.GradCAM(other, "block", element=0)(x)
    _, d = _pair("dict")
    with pytest.raises(ValueError, match="key"):
        camseg.GradCAM(d, "block", element="nope")(x)
    with pytest.raises(TypeError, match="element.*str key"):
        camseg.GradCAM(d, "block", element=0)(x)
    with pytest.raises(TypeError, match="element=` with one of the keys"):
        camseg.GradCAM(d, "block")(x)
    with pytest.raises(TypeError, match="returns a tensor"):
        camseg.GradCAM(plain, "block", element=0)(x)
    for bad in (1.5, True, [0]):
        with pytest.raises(TypeError, match="element"):
            camseg.LayerCapture(plain, "block", element=bad)
