"""The square symmetries (camseg.functional.transforms): group elements, their
inverses, and dense predictions averaged over them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from camseg import functional as CF


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------- group
def test_transform_group_elements_are_distinct() -> None:
    x = torch.arange(16.0).view(1, 4, 4)
    for name, n in (("d4", 8), ("c4", 4), ("flips", 3)):
        group = CF.transform_group(name)  # type: ignore[arg-type]
        assert len(group) == n and group[0] == (0, False)
        images = {tuple(CF.apply_transform(x, e).flatten().tolist()) for e in group}
        assert len(images) == n
    assert CF.transform_group(None) == [(0, False)]


def test_d4_is_closed_under_composition() -> None:
    # composing any two elements gives an element of the group: the images of a
    # generic square are the same set before and after
    x = torch.arange(9.0).view(3, 3)
    group = CF.transform_group("d4")
    images = {tuple(CF.apply_transform(x, e).flatten().tolist()) for e in group}
    for a in group:
        for b in group:
            y = CF.apply_transform(CF.apply_transform(x, a), b)
            assert tuple(y.flatten().tolist()) in images


def test_apply_transform_matches_torch_ops() -> None:
    x = _rand(2, 3, 5, 7)
    assert torch.equal(CF.apply_transform(x, (0, True)), x.flip(-1))
    assert torch.equal(CF.apply_transform(x, (1, False)), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(CF.apply_transform(x, (2, True)), x.flip(-2))  # vertical flip
    assert CF.apply_transform(x, (0, False)) is x
    assert CF.apply_transform(x, (1, False)).shape == (2, 3, 7, 5)


@settings(deadline=None, max_examples=40)
@given(k=st.integers(-5, 8), flip=st.booleans(), h=st.integers(1, 6), w=st.integers(1, 6))
def test_inverse_round_trips(k: int, flip: bool, h: int, w: int) -> None:
    x = _rand(2, h, w, seed=h * 7 + w)
    y = CF.apply_transform(x, (k, flip))
    assert torch.equal(CF.apply_transform(y, (k, flip), inverse=True), x)
    z = CF.apply_transform(x, (k, flip), inverse=True)
    assert torch.equal(CF.apply_transform(z, (k, flip)), x)


def test_apply_transform_rejects_bad_input() -> None:
    x = _rand(4, 4)
    with pytest.raises(TypeError, match="`element`"):
        CF.apply_transform(x, (1.0, True))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`element`"):
        CF.apply_transform(x, (True, True))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`inverse`"):
        CF.apply_transform(x, (1, True), inverse=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        CF.apply_transform(torch.zeros(4), (1, False))
    with pytest.raises(TypeError, match="`x`"):
        CF.apply_transform([[1.0]], (1, False))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mean
def _ramp_net(im: torch.Tensor) -> torch.Tensor:
    # a dense prediction that is not equivariant: a fixed ramp along the width
    ramp = torch.linspace(0, 1, im.shape[-1], dtype=im.dtype)
    return im.mean(1) * ramp


@pytest.mark.parametrize("group", ["d4", "c4"])
def test_transform_mean_is_equivariant(group: str) -> None:
    x = _rand(2, 3, 6, 6)
    base = CF.transform_mean(_ramp_net, x, transforms=group)  # type: ignore[arg-type]
    for h in CF.transform_group(group):  # type: ignore[arg-type]
        moved = CF.transform_mean(_ramp_net, CF.apply_transform(x, h), transforms=group)  # type: ignore[arg-type]
        torch.testing.assert_close(moved, CF.apply_transform(base, h), rtol=0, atol=1e-12)
    # without averaging, the ramp net is not equivariant: the check above can fail
    rotated = _ramp_net(CF.apply_transform(x, (1, False)))
    assert not torch.allclose(rotated, CF.apply_transform(_ramp_net(x), (1, False)))


def test_transform_mean_of_equivariant_fn_is_fn() -> None:
    x = _rand(3, 2, 5, 5)
    torch.testing.assert_close(CF.transform_mean(lambda im: im.mean(1) ** 2, x), x.mean(1) ** 2)


def test_transform_mean_none_calls_once_and_matches() -> None:
    x = _rand(2, 3, 4, 6)
    calls: list[tuple[int, ...]] = []

    def fn(im: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(im.shape))
        return _ramp_net(im)

    out = CF.transform_mean(fn, x, transforms=None)
    assert calls == [(2, 3, 4, 6)]
    torch.testing.assert_close(out, _ramp_net(x))
    calls.clear()
    CF.transform_mean(fn, x)
    assert len(calls) == 8 and (2, 3, 6, 4) in calls  # odd quarter turns swap the sizes


def test_transform_mean_equals_explicit_average() -> None:
    x = _rand(2, 3, 5, 5)
    outs = [
        CF.apply_transform(_ramp_net(CF.apply_transform(x, e)), e, inverse=True)
        for e in CF.transform_group("d4")
    ]
    expected = torch.stack(outs).mean(0)
    torch.testing.assert_close(CF.transform_mean(_ramp_net, x), expected)


def test_transform_mean_keeps_channels_and_gradients() -> None:
    x = _rand(2, 3, 4, 4).requires_grad_(True)
    out = CF.transform_mean(lambda im: im * 2.0, x, transforms="c4")
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, torch.full_like(x, 2.0))


def test_transform_mean_rejects_bad_input() -> None:
    x = _rand(2, 3, 4, 6)
    with pytest.raises(TypeError, match="`fn`"):
        CF.transform_mean(5, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`transforms`"):
        CF.transform_mean(_ramp_net, x, transforms="d8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn\\(images\\)"):
        CF.transform_mean(lambda im: im.tolist(), x)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="B = 2"):
        CF.transform_mean(lambda im: im.mean((0, 1)), x)
    with pytest.raises(ValueError, match="one output shape"):
        CF.transform_mean(lambda im: im[:, 0, :3], x, transforms="c4")
