"""ScoreCAM and AblationCAM: equal to a one-forward-per-channel loop, batched, checked."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import camseg
from camseg import functional as CF

from .conftest import tolerance


class SkipNet(nn.Module):
    """conv -> ReLU -> conv (hooked) -> concatenated with the first features -> GAP -> linear.

    The concatenation reuses a tensor from below the hooked layer, so the
    layers above cannot be replayed on a batch of ablated copies of one image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        z = torch.cat([s, self.block(s)], dim=1)
        return self.fc(z.mean(dim=(2, 3)))


def _layer_output(model, layer, x):
    out = {}
    handle = model.get_submodule(layer).register_forward_hook(
        lambda m, i, o: out.setdefault("a", o)
    )
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return logits, out["a"]


def _score(logits, t):
    return logits[:, t]


def _naive_scorecam(model, layer, x, targets):
    """One forward per image and channel, as in the paper and pytorch-grad-cam."""
    _, a = _layer_output(model, layer, x)
    maps = []
    for b in range(x.shape[0]):
        scores = []
        for k in range(a.shape[1]):
            up = F.interpolate(
                a[b : b + 1, k : k + 1], size=x.shape[-2:], mode="bilinear", align_corners=True
            )
            m = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                scores.append(model(x[b : b + 1] * m)[0, targets[b]])
        w = torch.softmax(torch.stack(scores), dim=0)
        maps.append((w[:, None, None] * a[b]).sum(0).clamp(min=0))
    return torch.stack(maps)


def _naive_ablationcam(model, layer, x, targets, value=0.0):
    logits, a = _layer_output(model, layer, x)
    module = model.get_submodule(layer)
    maps = []
    for b in range(x.shape[0]):
        y = logits[b, targets[b]]
        w = []
        for k in range(a.shape[1]):
            rows = a[b : b + 1].clone()
            rows[:, k] = value
            handle = module.register_forward_hook(lambda m, i, o, rows=rows: rows)
            with torch.no_grad():
                yk = model(x[b : b + 1])[0, targets[b]]
            handle.remove()
            w.append((y - yk) / y.abs())
        w = torch.stack(w)
        maps.append((w[:, None, None] * a[b]).sum(0).clamp(min=0))
    return torch.stack(maps)


@pytest.fixture
def net64(tiny_net):
    return tiny_net.double().eval()


@pytest.fixture
def x64(images):
    return images.double()


def test_scorecam_equals_the_per_channel_loop(net64, x64):
    targets = [0, 1, 2, 1]
    ours = camseg.ScoreCAM(net64, "features.3", batch_size=5)(
        x64, targets=targets, normalize=None, size=None
    )
    torch.testing.assert_close(
        ours, _naive_scorecam(net64, "features.3", x64, targets), atol=1e-12, rtol=1e-10
    )


@pytest.mark.parametrize("model_cls,layer", [("tiny", "features.3"), ("skip", "block")])
def test_ablationcam_equals_the_per_channel_loop(model_cls, layer, net64, x64):
    torch.manual_seed(3)
    model = net64 if model_cls == "tiny" else SkipNet().double().eval()
    with torch.no_grad():
        model.fc.bias += 3.0  # positive scores, so /|y| is the paper's /y
    targets = [0, 1, 2, 1]
    cam = camseg.AblationCAM(model, layer, batch_size=4)
    ours = cam(x64, targets=targets, normalize=None, size=None)
    torch.testing.assert_close(
        ours, _naive_ablationcam(model, layer, x64, targets), atol=1e-12, rtol=1e-10
    )
    # the tiny net's head is replayed alone; the skip net's concatenation forces full forwards
    assert cam._replay_above == {layer: model_cls == "tiny"}


def test_ablation_value_is_the_value_of_the_ablated_channel(net64, x64):
    ours = camseg.AblationCAM(net64, "features.3", ablation_value=-2.5)(
        x64, targets=[1, 1, 1, 1], normalize=None, size=None
    )
    ref = _naive_ablationcam(net64, "features.3", x64, [1, 1, 1, 1], value=-2.5)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_batch_size_does_not_change_the_maps(cls, net64, x64):
    maps = [cls(net64, "features.3", batch_size=n)(x64, targets=2) for n in (1, 7, 1000)]
    for m in maps[1:]:
        torch.testing.assert_close(m, maps[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_target_forms_agree(cls, net64, x64):
    cam = cls(net64, "features.3")
    by_index = cam(x64, targets=[2, 0, 1, 2])
    per_image = cam(x64, targets=[lambda o, c=c: o[c] for c in (2, 0, 1, 2)])
    torch.testing.assert_close(per_image, by_index, atol=1e-12, rtol=0)
    row_wise = cam(x64, targets=lambda logits: logits[:, 1])
    torch.testing.assert_close(row_wise, cam(x64, targets=1), atol=1e-12, rtol=0)
    k_maps = cam(x64, targets=torch.tensor([[2, 0]] * 4))
    assert k_maps.shape == (4, 2, 12, 12)
    torch.testing.assert_close(k_maps[:, 0], cam(x64, targets=2), atol=1e-12, rtol=0)
    torch.testing.assert_close(k_maps[:, 1], cam(x64, targets=0), atol=1e-12, rtol=0)


def test_scorecam_scores_constant_channels_with_one_zero_image(net64, x64):
    with torch.no_grad():  # two dead channels: their maps mask the image to zero
        net64.features[2].weight[:2] = 0
        net64.features[2].bias[:2] = -1.0
    calls = []
    handle = net64.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    ours = camseg.ScoreCAM(net64, "features.3", batch_size=100)(
        x64, targets=[0, 1, 2, 1], normalize=None, size=None
    )
    handle.remove()
    _, a = _layer_output(net64, "features.3", x64)
    live = int((a.flatten(2).amax(2) > a.flatten(2).amin(2)).sum())
    assert live <= 4 * 4
    # the images, the live (image, channel) pairs in one batch, one zero image
    assert calls == [4, live, 1]
    torch.testing.assert_close(
        ours, _naive_scorecam(net64, "features.3", x64, [0, 1, 2, 1]), atol=1e-12, rtol=1e-10
    )


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_top_k_perturbs_only_the_strongest_channels(cls, net64, x64):
    calls = []
    handle = net64.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    cam = cls(net64, "features.3", top_k=2, batch_size=1000)
    top = cam(x64, targets=1, normalize=None, size=None)
    handle.remove()
    assert sum(calls) <= 4 + 4 * 2 + 4  # the images, 2 channels each, a replay check / zero image
    full = cls(net64, "features.3", top_k=6)(x64, targets=1, normalize=None, size=None)
    torch.testing.assert_close(
        full,
        cls(net64, "features.3")(x64, targets=1, normalize=None, size=None),
        atol=1e-12,
        rtol=0,
    )
    assert not torch.equal(top, full)
    # the two kept channels are those of largest mean activation
    _, a = _layer_output(net64, "features.3", x64)
    assert cam._chosen(a).sum(1).tolist() == [2, 2, 2, 2]
    assert torch.equal(
        cam._chosen(a).nonzero()[:, 1].view(4, 2).sort(1).values,
        a.mean((2, 3)).topk(2, 1).indices.sort(1).values,
    )


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_devices_dtypes_and_inference_mode(cls, device, dtype, tiny_net, images):
    ref = cls(copy.deepcopy(tiny_net).double().eval(), "features.3")(images.double(), targets=1)
    model = tiny_net.to(device=device, dtype=dtype).eval()
    x = images.to(device=device, dtype=dtype)
    with torch.inference_mode():
        maps = cls(model, "features.3")(x, targets=1)
    assert maps.device.type == device.type and maps.dtype == dtype
    tol = tolerance(dtype)
    if dtype == torch.bfloat16:  # scores of bfloat16 forwards: compare where the maps are clear
        assert float((maps.double().cpu() - ref).abs().mean()) < 0.1
    else:
        torch.testing.assert_close(maps.double().cpu(), ref, **tol)


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_aug_smooth_and_multi_layer(cls, net64, x64):
    smooth = cls(net64, "features.3")(x64, targets=1, aug_smooth=True)
    assert smooth.shape == (4, 12, 12)
    assert float(smooth.amax((1, 2)).min()) == pytest.approx(1.0)
    fused = cls(net64, ["features.1", "features.3"])(x64, targets=1, normalize=None)
    one = [cls(net64, n)(x64, targets=1, normalize=None) for n in ("features.1", "features.3")]
    expected = torch.stack([CF.normalize(m, mode="max") for m in one]).mean(0)
    torch.testing.assert_close(fused, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", [camseg.ScoreCAM, camseg.AblationCAM])
def test_bad_input(cls, tiny_net, images):
    tiny_net.eval()
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises((TypeError, ValueError), match="batch_size"):
            cls(tiny_net, "features.3", batch_size=bad)
        with pytest.raises((TypeError, ValueError), match="top_k"):
            cls(tiny_net, "features.3", top_k=bad)
    with pytest.raises(ValueError, match="create_graph"):
        cls(tiny_net, "features.3")(images, create_graph=True)
    tiny_net.train()
    with pytest.raises(ValueError, match="eval mode"):
        cls(tiny_net, "features.3")(images)
    tiny_net.eval()
    with pytest.raises(ValueError, match=r"targets.*\[0, 2\]"):
        cls(tiny_net, "features.3")(images, targets=3)
    with pytest.raises(ValueError, match="images"):
        cls(tiny_net, "features.3")(images[:0])


def test_ablationcam_rejects_reshape_and_bad_ablation_values(tiny_net):
    with pytest.raises(ValueError, match="reshape"):
        camseg.AblationCAM(tiny_net, "features.3", reshape=lambda a: a)
    for bad in (float("nan"), float("inf"), "0", None, True):
        with pytest.raises(ValueError, match="ablation_value"):
            camseg.AblationCAM(tiny_net, "features.3", ablation_value=bad)


def test_scorecam_on_tokens_with_reshape():
    torch.manual_seed(0)

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.block = nn.Linear(8, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)  # (B, N, C)
            t = torch.relu(self.block(t))
            return self.head(t.mean(1))

    model = Tokens().eval()
    x = torch.rand(2, 3, 16, 16)
    reshape = lambda t: t.transpose(1, 2).reshape(t.shape[0], t.shape[2], 4, 4)  # noqa: E731
    maps = camseg.ScoreCAM(model, "block", reshape=reshape)(x, targets=1, size=None)
    assert maps.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="reshape"):
        camseg.ScoreCAM(model, "block")(x, targets=1)
