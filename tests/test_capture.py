"""LayerCapture and list_layers."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import camseg
from camseg import functional as CF


def test_capture_records_and_differentiates_to_the_layer_only(tiny_net, images):
    with camseg.LayerCapture(tiny_net, "features.3") as cap:
        logits = tiny_net(images)
        g = cap.grad(logits, torch.tensor([0, 1, 2, 0]))
        a = cap.output
    assert a.shape == g.shape == (4, 6, 12, 12)
    assert all(p.grad is None for p in tiny_net.parameters())
    # against a hand-written autograd.grad on an independent forward
    with torch.no_grad():
        feats = tiny_net.features(images)
    feats.requires_grad_(True)
    scores = tiny_net.fc(tiny_net.pool(feats).flatten(1)).gather(
        1, torch.tensor([[0], [1], [2], [0]])
    )
    (expected,) = torch.autograd.grad(scores.sum(), feats)
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(a.detach(), feats.detach())


def test_capture_several_layers_and_k_targets(tiny_net, images):
    with camseg.LayerCapture(tiny_net, ["features.1", tiny_net.features[3]]) as cap:
        logits = tiny_net(images)
        grads = cap.grad(logits, torch.tensor([[0, 1]] * 4))
        outs = cap.outputs
    assert list(outs) == ["features.1", "features.3"]
    assert isinstance(grads, list) and grads[0].shape == (4, 2, 6, 12, 12)
    with camseg.LayerCapture(tiny_net, "features.1") as cap:
        single = cap.grad(tiny_net(images), 1)
    torch.testing.assert_close(grads[0][:, 1], single)


def test_capture_create_graph_gives_differentiable_maps(tiny_net, images):
    with camseg.LayerCapture(tiny_net, "features.3") as cap:
        logits = tiny_net(images)
        maps = CF.gradcam(cap.output, cap.grad(logits, 1, create_graph=True))
    loss = maps.mean() + logits.logsumexp(1).mean()
    loss.backward()
    assert tiny_net.features[0].weight.grad is not None


def test_capture_outside_block_and_twice(tiny_net, images):
    cap = camseg.LayerCapture(tiny_net, "features.3")
    with pytest.raises(ValueError, match="inside the capture's `with` block"):
        _ = cap.output
    with cap:
        logits = tiny_net(images)
    with pytest.raises(ValueError, match="inside the capture's `with` block"):
        cap.grad(logits, 0)
    with cap, pytest.raises(ValueError, match="entered once per thread"):
        cap.__enter__()
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())


def test_capture_under_no_grad_explains_what_to_do(tiny_net, images):
    with camseg.LayerCapture(tiny_net, "features.3") as cap:
        with torch.no_grad():
            logits = tiny_net(images)
        with pytest.raises(ValueError, match="recorded with gradients disabled"):
            cap.grad(logits, 0)


def test_capture_shared_module_and_multiple_outputs(images):
    shared = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(shared, shared, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with camseg.LayerCapture(model, "0") as cap:
        model(images)
        with pytest.raises(ValueError, match="to run once per forward pass, but it ran 2 times"):
            _ = cap.output
    with camseg.LayerCapture(model, ["2", "4"]) as multi:
        model(images)
        with pytest.raises(ValueError, match="one captured layer"):
            _ = multi.output


def test_capture_non_tensor_output(images):
    class TupleOut(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t = TupleOut()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.t(x)[0].mean((2, 3)))

    net = Net()
    with pytest.raises(TypeError, match="'t' to output a tensor, but it returned"):
        camseg.GradCAM(net, "t")(images)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_bad_layers_argument(tiny_net):
    with pytest.raises(TypeError, match="non-empty sequence"):
        camseg.LayerCapture(tiny_net, [])
    with pytest.raises(TypeError, match="dotted name or an nn.Module"):
        camseg.LayerCapture(tiny_net, [3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="each layer once"):
        camseg.LayerCapture(tiny_net, ["fc", "fc"])
    with pytest.raises(ValueError, match="the model itself"):
        camseg.LayerCapture(tiny_net, "")
    with pytest.raises(TypeError, match="`reshape` to be a callable"):
        camseg.LayerCapture(tiny_net, "fc", reshape=3)  # type: ignore[arg-type]


def test_list_layers_on_resnet18_leaves_flags():
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    model.train()
    bn = model.bn1
    before = bn.running_mean.clone()
    rows = camseg.list_layers(model, input_size=(3, 96, 96))
    by_name = {r.name: r for r in rows}
    assert by_name["layer4"].output_shape == (2, 512, 3, 3)
    assert by_name["layer4"].type == "Sequential"
    assert by_name["fc"].output_shape == (2, 2)
    assert model.training and all(m.training for m in model.modules())
    torch.testing.assert_close(bn.running_mean, before)
    leaves = camseg.list_layers(model, input_size=(3, 64, 64), leaves_only=True)
    assert "layer4" not in {r.name for r in leaves} and "layer4.1.conv2" in {r.name for r in leaves}


def test_list_layers_errors(tiny_net):
    with pytest.raises(ValueError, match="`input_size` to be a tuple of positive ints"):
        camseg.list_layers(tiny_net, input_size=(3, 0, 8))
    with pytest.raises(TypeError, match="`model` to be a torch.nn.Module"):
        camseg.list_layers(lambda x: x)  # type: ignore[arg-type]


def test_grad_returns_a_tensor_for_one_layer_and_a_list_for_a_sequence(tiny_net, images):
    with camseg.LayerCapture(tiny_net, "features.3") as one:
        g = one.grad(tiny_net(images), 1)
    assert isinstance(g, torch.Tensor)
    with camseg.LayerCapture(tiny_net, ["features.3"]) as seq:
        gs = seq.grad(tiny_net(images), 1)
    assert isinstance(gs, list) and len(gs) == 1
    torch.testing.assert_close(gs[0], g)


def test_capture_under_no_grad_records_a_copy(images):
    torch.manual_seed(0)
    body = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(body, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        expected = body(images)
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx(), camseg.LayerCapture(model, "0") as cap:
            model(images)
            torch.testing.assert_close(cap.output, expected)
            assert (cap.output < 0).any()  # the in-place ReLU did not reach the record


def test_recording_session_api(tiny_net, images):
    cap = camseg.LayerCapture(tiny_net, "features.3")
    cap.attach()
    try:
        tiny_net(images)  # attached, not recording
        with pytest.raises(ValueError, match="inside the capture's `with` block"):
            _ = cap.output
        with cap.session(grad_at_layer=True) as rec, torch.no_grad():
            logits = tiny_net(images)
            assert rec is cap and cap.output.requires_grad and logits.requires_grad
            (g,) = cap.score_gradients(logits[:, 1])
        assert g.shape == (4, 6, 12, 12)
        with pytest.raises(ValueError, match="attached once per thread"):
            cap.attach()
    finally:
        cap.detach()
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())


def test_threads_each_record_their_own_forwards(tiny_net):
    import threading

    cap = camseg.LayerCapture(tiny_net, "features.3")
    xs = [torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        expected = [tiny_net.features(x) for x in xs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        try:
            with cap:
                barrier.wait()
                for _ in range(20):
                    cap.clear()
                    with torch.no_grad():
                        tiny_net(xs[i])
                    torch.testing.assert_close(cap.output, expected[i])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert all(len(m._forward_hooks) == 0 for m in tiny_net.modules())
