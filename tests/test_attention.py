"""Attention rollout and gradient-weighted relevance against hand computations on tiny ViTs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camseg


def _vit(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    vit = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=3,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=3,
    )
    nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    return vit.eval().to(dtype)


def _images(dtype=torch.float64, b=2):
    return torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=dtype)


def _manual_forward(vit, x):
    """torchvision's ViT forward written out, with each layer's attention from torch's own
    ``need_weights=True`` path (so differentiable and independent of camseg's recomputation)."""
    t = vit._process_input(x)
    t = torch.cat([vit.class_token.expand(x.shape[0], -1, -1), t], dim=1)
    t = t + vit.encoder.pos_embedding
    attns = []
    for blk in vit.encoder.layers:
        h = blk.ln_1(t)
        mha = blk.self_attention
        _, a = mha(h, h, h, need_weights=True, average_attn_weights=False)
        _, _, w_v = mha.in_proj_weight.chunk(3)
        _, _, b_v = mha.in_proj_bias.chunk(3)
        v = F.linear(h, w_v, b_v)
        b, n, e = v.shape
        v = v.reshape(b, n, mha.num_heads, e // mha.num_heads).transpose(1, 2)
        out = mha.out_proj((a @ v).transpose(1, 2).reshape(b, n, e))
        attns.append(a)
        t = t + out
        t = t + blk.mlp(blk.ln_2(t))
    return vit.heads(vit.encoder.ln(t)[:, 0]), attns


def test_manual_forward_is_the_model():
    vit, x = _vit(), _images()
    with torch.no_grad():
        torch.testing.assert_close(_manual_forward(vit, x)[0], vit(x), atol=1e-12, rtol=0)


def _rollout_by_hand(attns, fusion="mean"):
    r = None
    for a in attns:
        f = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[fusion]
        step = f + torch.eye(f.shape[-1], dtype=f.dtype)
        step = step / step.sum(-1, keepdim=True)
        r = step if r is None else step @ r
    return r[:, 0, 1:].reshape(-1, 4, 4)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_equals_the_hand_computation(fusion):
    vit, x = _vit(), _images()
    with torch.no_grad():
        logits, attns = _manual_forward(vit, x)
    ours = camseg.AttentionRollout(vit, head_fusion=fusion)
    res = ours.explain(x, normalize=None, size=None)
    torch.testing.assert_close(res.maps, _rollout_by_hand(attns, fusion), atol=1e-12, rtol=0)
    torch.testing.assert_close(res.logits, logits, atol=1e-12, rtol=0)


def test_relevance_equals_the_hand_computation():
    vit, x = _vit(), _images()
    logits, attns = _manual_forward(vit, x)
    targets = torch.tensor([2, 0])
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), attns)
    r = torch.eye(17, dtype=torch.float64).expand(2, 17, 17)
    for a, g in zip(attns, grads):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    expected = r[:, 0, 1:].reshape(2, 4, 4).detach()
    ours = camseg.AttentionRelevance(vit)(x, targets=targets, normalize=None, size=None)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)
    assert float(expected.amax((1, 2)).min()) > 0
    # (B, K) targets: one map per column
    both = camseg.AttentionRelevance(vit)(x, targets=torch.tensor([[2, 1], [0, 1]]), size=None)
    one = camseg.AttentionRelevance(vit)(x, targets=[1, 1], size=None)
    assert both.shape == (2, 2, 4, 4)
    torch.testing.assert_close(both[:, 1], one, atol=1e-12, rtol=0)
    assert all(p.grad is None for p in vit.parameters())


def test_maps_keep_device_dtype_and_the_model_unchanged():
    vit, x = _vit(dtype=torch.float32), _images(torch.float32)
    with torch.no_grad():
        before = vit(x)
    for cls in (camseg.AttentionRollout, camseg.AttentionRelevance):
        maps = cls(vit)(x, targets=1)
        assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
        assert float(maps.amax((1, 2)).min()) == pytest.approx(1.0)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), before, atol=0, rtol=0)
    assert not any(m._forward_hooks for m in vit.modules())
    with torch.inference_mode():
        assert camseg.AttentionRollout(vit)(x).shape == (2, 32, 32)
        with pytest.raises(ValueError, match="inference_mode"):
            camseg.AttentionRelevance(vit)(x)


def test_discard_ratio_drops_the_weakest_entries_but_not_the_class_token():
    vit, x = _vit(), _images()
    with torch.no_grad():
        _, attns = _manual_forward(vit, x)
    ratio = 0.5
    r = None
    for a in attns:
        f = a.mean(1)
        flat = f.reshape(2, -1).clone()
        low = flat.topk(int(flat.shape[1] * ratio), dim=1, largest=False).indices
        for i in range(2):
            for j in low[i].tolist():
                if j != 0:
                    flat[i, j] = 0
        f = flat.reshape_as(f)
        step = f + torch.eye(17, dtype=f.dtype)
        step = step / step.sum(-1, keepdim=True)
        r = step if r is None else step @ r
    expected = r[:, 0, 1:].reshape(2, 4, 4)
    ours = camseg.AttentionRollout(vit, discard_ratio=ratio)(x, normalize=None, size=None)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)


class TimmAttention(nn.Module):
    """The layout of timm's ``Attention`` (fused attention, as timm runs it)."""

    def __init__(self, dim, heads, bias=None):
        super().__init__()
        self.num_heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.LayerNorm(dim // heads)
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.bias = bias  # a relative position bias camseg does not reproduce

    def forward(self, x, attn_mask=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.bias is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            a = torch.softmax((q * self.scale) @ k.transpose(-2, -1) + self.bias, -1)
            out = a @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TimmViT(nn.Module):
    """Patch embedding, class + distillation tokens, pre-norm blocks, head on the class token."""

    def __init__(self, bias=None):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, stride=8)
        self.tokens = nn.Parameter(torch.randn(1, 2, 16))
        self.norms = nn.ModuleList(nn.LayerNorm(16) for _ in range(2))
        self.blocks = nn.ModuleList(TimmAttention(16, 4, bias) for _ in range(2))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.tokens.expand(x.shape[0], -1, -1), t], dim=1)
        for norm, attn in zip(self.norms, self.blocks):
            t = t + attn(norm(t))
        return self.head(t[:, 0])


def test_timm_style_attention_with_a_distillation_token():
    torch.manual_seed(0)
    model = TimmViT().eval().double()
    x = _images()
    found = camseg.AttentionRollout(model, prefix_tokens=2)
    assert [n for n, _ in found.layers] == ["blocks.0", "blocks.1"]
    res = found.explain(x, size=None, normalize=None)
    assert res.maps.shape == (2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(res.logits, model(x), atol=1e-12, rtol=0)
    # by hand: the same attention with an explicit softmax
    attns = []
    handles = [
        b.register_forward_hook(
            lambda m, i, o: attns.append(
                torch.softmax(
                    (m.q_norm(_qkv(m, i[0])[0]) * m.scale) @ _qkv(m, i[0])[1].transpose(-2, -1), -1
                )
            )
        )
        for b in model.blocks
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    r = None
    for a in attns:
        step = a.mean(1) + torch.eye(18, dtype=a.dtype)
        step = step / step.sum(-1, keepdim=True)
        r = step if r is None else step @ r
    torch.testing.assert_close(res.maps, r[:, 0, 2:].reshape(2, 4, 4), atol=1e-12, rtol=0)
    assert camseg.AttentionRelevance(model, prefix_tokens=2)(x, targets=0).shape == (2, 32, 32)


def _qkv(m, x):
    b, n, c = x.shape
    q, k, v = m.qkv(x).reshape(b, n, 3, m.num_heads, c // m.num_heads).permute(2, 0, 3, 1, 4)
    return q, k, v


def test_unsupported_attention_and_bad_input():
    torch.manual_seed(0)
    biased = TimmViT(bias=torch.randn(18, 18)).eval()
    with pytest.raises(ValueError, match="does not reproduce"):
        camseg.AttentionRollout(biased, prefix_tokens=2)(torch.rand(1, 3, 32, 32))
    vit = _vit(dtype=torch.float32)
    x = _images(torch.float32)
    with pytest.raises(ValueError, match="attention layers"):
        camseg.AttentionRollout(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="layers.*attention modules"):
        camseg.AttentionRollout(vit, "conv_proj")
    with pytest.raises(ValueError, match="square grid"):
        camseg.AttentionRollout(vit, prefix_tokens=2)(x)
    for bad in (0, -1, 1.5, True):
        with pytest.raises((TypeError, ValueError), match="prefix_tokens"):
            camseg.AttentionRollout(vit, prefix_tokens=bad)
    for bad in (-0.1, 1.0, "x", True):
        with pytest.raises(ValueError, match="discard_ratio"):
            camseg.AttentionRollout(vit, discard_ratio=bad)
    with pytest.raises(ValueError, match="head_fusion"):
        camseg.AttentionRollout(vit, head_fusion="median")
    with pytest.raises(ValueError, match="grid"):
        camseg.AttentionRollout(vit, grid=(0, 4))
    with pytest.raises(TypeError, match="model"):
        camseg.AttentionRollout("vit")
    vit.train()
    with pytest.raises(ValueError, match="eval mode"):
        camseg.AttentionRelevance(vit)(x)
    vit.eval()
    with pytest.raises(ValueError, match="targets"):
        camseg.AttentionRelevance(vit)(x, targets=5)
    with pytest.raises(ValueError, match="images"):
        camseg.AttentionRollout(vit)(x[:0])


@pytest.mark.parametrize("cls", [camseg.AttentionRollout, camseg.AttentionRelevance])
def test_devices_and_dtypes(cls, device, dtype):
    ref = cls(_vit())(_images(), targets=1)
    vit = _vit().to(device=device, dtype=dtype)
    maps = cls(vit)(_images().to(device=device, dtype=dtype), targets=1)
    assert maps.device.type == device.type and maps.dtype == dtype
    if dtype == torch.bfloat16:  # bfloat16 attention: compare on average
        assert float((maps.double().cpu() - ref).abs().mean()) < 0.1
    else:
        torch.testing.assert_close(maps.double().cpu(), ref, atol=1e-4, rtol=1e-4)
