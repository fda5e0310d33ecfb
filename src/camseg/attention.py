"""Attention-based maps for vision transformers: attention rollout and gradient-weighted relevance.

CAMs need a spatial feature map; a ViT's class decision is read from its class
token, which gathers patch evidence through attention. These two methods follow
that flow instead:

- :class:`AttentionRollout` (Abnar & Zuidema, ACL 2020): every layer's attention,
  heads fused and the residual added as the identity, multiplied through the
  layers; the class token's row over the patch tokens is the map.
  Class-agnostic and gradient-free.
- :class:`AttentionRelevance` (Chefer, Gur & Wolf, ICCV 2021, "Generic
  Attention-model Explainability", Eqs. 5-6): ``R = I``, then for each layer
  ``R = R + mean_h((dy/dA * A)^+) R``; the class token's row over the patch
  tokens is the map. Class-specific; one forward and one backward.

How the attention is obtained: the attention modules of torchvision and timm
ViTs compute it in a fused kernel and never return it. camseg recomputes each
attention module's output explicitly from its own input and weights (queries,
keys, softmax, values, output projection), checks that the result equals the
module's output, and hands the recomputed output to the rest of the network,
so the attention probabilities ``A`` are part of the graph. Supported:
``nn.MultiheadAttention`` used as self-attention without masks (torchvision's
``VisionTransformer``) and timm-style ``Attention`` modules (``qkv``,
``num_heads``, ``proj``, optional ``q_norm``/``k_norm``/``norm``); anything else
is a clear error rather than a silent wrong map.

Tokens: the first ``prefix_tokens`` tokens are the class token (index 0, the
row read out) and any distillation or register tokens (ViT: 1; DeiT distilled:
2; DINOv2 with 4 registers: 5); the rest form a row-major patch grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from camseg import functional as CF
from camseg._checks import check_one_of, check_positive_int, describe
from camseg._targets import Targets, resolve_scores
from camseg.capture import LayerSpec, resolve_layers
from camseg.extractors import (
    CAMResult,
    Size,
    _as_float,
    _check_images,
    _check_size,
    _run_model,
)

__all__ = ["AttentionRelevance", "AttentionRollout"]

HeadFusion = Literal["mean", "max", "min"]


def _is_attention(module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    return (
        isinstance(getattr(module, "qkv", None), nn.Linear)
        and isinstance(getattr(module, "num_heads", None), int)
        and isinstance(getattr(module, "proj", None), nn.Module)
    )


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, N, E) -> (B, heads, N, E / heads)``."""
    b, n, e = x.shape
    return x.reshape(b, n, heads, e // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, N, d) -> (B, N, heads * d)``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _mha(m: nn.MultiheadAttention, name: str, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """Recompute ``nn.MultiheadAttention``'s self-attention; return (output, attention)."""
    names = ("query", "key", "value")
    given = [args[i] if len(args) > i else kwargs.get(n) for i, n in enumerate(names)]
    if not all(isinstance(t, torch.Tensor) for t in given):
        raise ValueError(f"Expected the attention layer {name!r} to get query, key and value.")
    q_in, k_in, v_in = (t for t in given if isinstance(t, torch.Tensor))
    masked = any(kwargs.get(k) is not None for k in ("attn_mask", "key_padding_mask"))
    masked = masked or len(args) > 4  # key_padding_mask / attn_mask given by position
    if masked or m.bias_k is not None or m.add_zero_attn:
        raise ValueError(
            f"Expected the attention layer {name!r} to run without masks, bias_k or "
            "add_zero_attn (camseg recomputes plain self-attention), but it does not."
        )
    if not (torch.equal(q_in, k_in) and torch.equal(q_in, v_in)):
        raise ValueError(
            f"Expected the attention layer {name!r} to be self-attention (query = key = value), "
            "but its inputs differ."
        )
    x = q_in if m.batch_first else q_in.transpose(0, 1)
    if m._qkv_same_embed_dim:
        w_q, w_k, w_v = m.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    b_q, b_k, b_v = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None,) * 3
    q = _heads(F.linear(x, w_q, b_q), m.num_heads)
    k = _heads(F.linear(x, w_k, b_k), m.num_heads)
    v = _heads(F.linear(x, w_v, b_v), m.num_heads)
    attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    out = m.out_proj(_merge(attn @ v))
    return (out if m.batch_first else out.transpose(0, 1)), attn


def _timm(m: Any, name: str, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """Recompute a timm-style ``Attention`` (``qkv``, ``num_heads``, ``proj``)."""
    if any(v is not None for k, v in kwargs.items() if "mask" in k) or len(args) > 1:
        raise ValueError(
            f"Expected the attention layer {name!r} to run without a mask (camseg recomputes "
            "plain self-attention), but it got one."
        )
    x = args[0] if args else kwargs["x"]
    b, n, _ = x.shape
    heads = int(m.num_heads)
    qkv = m.qkv(x).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q = getattr(m, "q_norm", nn.Identity())(q)
    k = getattr(m, "k_norm", nn.Identity())(k)
    scale = getattr(m, "scale", q.shape[-1] ** -0.5)
    attn = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)
    out = getattr(m, "norm", nn.Identity())(_merge(attn @ v))
    return m.proj(out), attn


def _replace(output: Any, recomputed: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (recomputed, *output[1:])
    return recomputed


class _AttentionMap:
    """Shared machinery: hooks that expose every attention layer's probabilities."""

    uses_gradients: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        prefix_tokens: int = 1,
        grid: tuple[int, int] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Expected `model` to be an nn.Module, but got {describe(model)}.")
        self.model = model
        if layers is None:
            found = [(n, m) for n, m in model.named_modules() if _is_attention(m)]
            if not found:
                raise ValueError(
                    f"Expected `model` to contain attention layers (nn.MultiheadAttention or "
                    f"timm-style Attention), but {type(model).__name__} has none. Hint: pass "
                    "`layers=` explicitly."
                )
            self.layers = found
        else:
            self.layers = resolve_layers(model, layers)
            for n, m in self.layers:
                if not _is_attention(m):
                    raise ValueError(
                        f"Expected `layers` to be attention modules (nn.MultiheadAttention or "
                        f"timm-style Attention), but layer {n!r} is {type(m).__name__}."
                    )
        self.prefix_tokens = check_positive_int(prefix_tokens, "prefix_tokens")
        if grid is not None and not (
            isinstance(grid, tuple)
            and len(grid) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in grid)
        ):
            raise ValueError(
                f"Expected `grid` to be None or (h, w) positive ints, but got {grid!r}."
            )
        self.grid = grid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, layers={len(self.layers)})"
        )

    def __call__(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
    ) -> torch.Tensor:
        """Maps ``(B, H, W)`` (``(B, K, H, W)`` for ``(B, K)`` targets) for a batch.

        Args:
            images: ``(B, C, H, W)``, floating point, finite.
            targets: what to explain (see :data:`camseg.Targets`); ignored by
                the class-agnostic :class:`AttentionRollout` except for the
                logits reported and the ``K`` of ``(B, K)`` targets.
            normalize: ``"minmax"``, ``"max"`` or ``None``.
            size: ``"input"``, ``None`` (the patch grid) or ``(H, W)``.

        Raises:
            ValueError: for a model in training mode, attention layers camseg cannot
                reproduce, token counts that do not form the grid, bad images or
                targets.
        """
        return self.explain(images, targets, normalize=normalize, size=size).maps

    def explain(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
    ) -> CAMResult:
        """Like calling it, but also return the logits and targets (:class:`camseg.CAMResult`)."""
        _check_images(images)
        check_one_of(normalize, "normalize", ("minmax", "max", None))
        out_size = _check_size(size, images)
        if self.model.training:
            raise ValueError(
                f"Expected the model of {type(self).__name__} to be in eval mode, but "
                "`model.training` is True (attention dropout would change the attention). "
                "Hint: call `model.eval()` first."
            )
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise ValueError(
                f"Expected {type(self).__name__} to be called outside torch.inference_mode(): "
                "it needs gradients w.r.t. the attention."
            )
        attns: list[torch.Tensor] = []
        handles = [
            m.register_forward_hook(self._hook(n, attns), with_kwargs=True) for n, m in self.layers
        ]
        try:
            if self.uses_gradients:
                with torch.enable_grad():
                    x = images.detach().requires_grad_(True)
                    logits = _run_model(self.model, x)
                    scores, idx = resolve_scores(logits, targets)
                    rel = self._relevance(attns, scores)
            else:
                with torch.no_grad():
                    logits = _run_model(self.model, images)
                    _, idx = resolve_scores(logits, targets)
                    rel = self._relevance(attns, None)
                    if idx is not None and idx.ndim == 2:
                        rel = rel.unsqueeze(1).expand(-1, idx.shape[1], -1)
        finally:
            for h in handles:
                h.remove()
        maps = self._to_grid(rel.detach())
        if out_size is not None:
            maps = CF.upsample(maps, out_size)
        maps = CF.normalize(maps, mode=normalize).to(images.dtype)
        out_logits = logits.detach() if isinstance(logits, torch.Tensor) else logits
        return CAMResult(maps, out_logits, idx)

    def _hook(self, name: str, attns: list[torch.Tensor]) -> Any:
        def hook(m: Any, args: tuple, kwargs: dict, output: Any) -> Any:
            fn = _mha if isinstance(m, nn.MultiheadAttention) else _timm
            recomputed, attn = fn(m, name, args, kwargs)
            actual = output[0] if isinstance(output, tuple) else output
            if not isinstance(actual, torch.Tensor) or actual.shape != recomputed.shape:
                raise ValueError(
                    f"Expected camseg's recomputation of attention layer {name!r} to match its "
                    f"output, but got shape {tuple(recomputed.shape)} against {describe(actual)}."
                )
            err = float((recomputed.detach() - actual.detach()).abs().max())
            rel = {torch.float64: 1e-9, torch.float32: 1e-3}.get(actual.dtype, 5e-2)  # half types
            tol = rel * (1.0 + float(actual.detach().abs().max()))
            if not err <= tol:
                raise ValueError(
                    f"Expected camseg's recomputation of attention layer {name!r} to match its "
                    f"output, but they differ by {err:.3g}: the layer is a variant camseg does "
                    "not reproduce (relative position bias, masks, a custom forward)."
                )
            attns.append(attn)  # the graph's own tensor (relevance differentiates w.r.t. it)
            return _replace(output, recomputed)

        return hook

    def _relevance(self, attns: list[torch.Tensor], scores: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _to_grid(self, rel: torch.Tensor) -> torch.Tensor:
        """Class-token rows ``(..., N)`` -> maps ``(..., h, w)`` over the patch tokens."""
        lead = rel.shape[:-1]
        flat = rel.reshape(-1, rel.shape[-1], 1)
        grid = CF.tokens_to_grid(flat, grid=self.grid, prefix_tokens=self.prefix_tokens)
        return grid[:, 0].reshape(*lead, *grid.shape[-2:])


def _check_layers_ran(attns: list[torch.Tensor], expected: int) -> None:
    if len(attns) != expected:
        raise ValueError(
            f"Expected each of the {expected} attention layers to run once per forward, but "
            f"they ran {len(attns)} times in total. Hint: pass `layers=` with the layers on the "
            "path from the images to the output."
        )


class AttentionRollout(_AttentionMap):
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020).

    For each layer the heads' attention ``A`` (``(B, heads, N, N)``) is fused
    (mean by default), optionally its weakest entries are discarded, the
    residual stream is added as ``I`` and the rows are renormalised:
    ``Ã = (A + I) / rowsum``. The rollout is ``Ã_L ... Ã_1``; the map is the
    class token's row over the patch tokens. Gradient-free and class-agnostic.

    Args:
        model: a vision transformer in eval mode.
        layers: its attention modules, in forward order (default: every
            ``nn.MultiheadAttention`` and timm-style ``Attention`` found).
        prefix_tokens: class plus distillation/register tokens before the
            patch tokens (1 for ViT, 2 for DeiT distilled, 5 for DINOv2 with 4
            registers); the class token is the first.
        grid: ``(h, w)`` of the patch grid (default: square).
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over heads.
        discard_ratio: the fraction of each image's weakest fused attention
            entries set to 0 before the identity is added (0: the paper; the
            class token's attention to itself is never discarded).

    Example:
        >>> import camseg, torchvision
        >>> _ = torch.manual_seed(0)
        >>> vit = torchvision.models.VisionTransformer(
        ...     image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        ...     mlp_dim=32, num_classes=3).eval()
        >>> camseg.AttentionRollout(vit)(torch.rand(2, 3, 32, 32), size=None).shape
        torch.Size([2, 4, 4])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        prefix_tokens: int = 1,
        grid: tuple[int, int] | None = None,
        head_fusion: HeadFusion = "mean",
        discard_ratio: float = 0.0,
    ) -> None:
        super().__init__(model, layers, prefix_tokens=prefix_tokens, grid=grid)
        check_one_of(head_fusion, "head_fusion", ("mean", "max", "min"))
        if (
            isinstance(discard_ratio, bool)
            or not isinstance(discard_ratio, (int, float))
            or not 0.0 <= float(discard_ratio) < 1.0
        ):
            raise ValueError(
                f"Expected `discard_ratio` to be a number in [0, 1), but got {discard_ratio!r}."
            )
        self.head_fusion = head_fusion
        self.discard_ratio = float(discard_ratio)

    def _relevance(self, attns: list[torch.Tensor], scores: torch.Tensor | None) -> torch.Tensor:
        _check_layers_ran(attns, len(self.layers))
        rollout = None
        for attn in map(_as_float, attns):
            if self.head_fusion == "mean":
                fused = attn.mean(dim=1)
            elif self.head_fusion == "max":
                fused = attn.amax(dim=1)
            else:
                fused = attn.amin(dim=1)
            b, n, _ = fused.shape
            if self.discard_ratio > 0:
                flat = fused.reshape(b, -1).clone()
                drop = int(flat.shape[1] * self.discard_ratio)
                low = flat.topk(drop, dim=1, largest=False).indices
                keep_cls = low != 0
                flat.scatter_(1, low, torch.where(keep_cls, 0.0, flat.gather(1, low)))
                fused = flat.reshape(b, n, n)
            eye = torch.eye(n, dtype=fused.dtype, device=fused.device)
            step = fused + eye
            step = step / step.sum(dim=-1, keepdim=True)
            rollout = step if rollout is None else step @ rollout
        assert rollout is not None
        return rollout[:, 0]


class AttentionRelevance(_AttentionMap):
    """Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021, Eqs. 5-6).

    With ``A`` each layer's attention ``(B, heads, N, N)`` and ``∇A`` the gradient
    of the target score with respect to it, the relevance starts at ``R = I`` and
    each layer, in forward order, adds ``Ā R`` with
    ``Ā = mean_h((∇A ⊙ A)^+)``. The map is the class token's row of ``R`` over
    the patch tokens. Class-specific: one forward and one backward per target
    column. The authors' earlier LRP-based rule (CVPR 2021) needs relevance
    propagation through every layer and is not implemented.

    Args:
        model: a vision transformer in eval mode.
        layers: its attention modules (default: every one found).
        prefix_tokens: class plus distillation/register tokens (see
            :class:`AttentionRollout`).
        grid: ``(h, w)`` of the patch grid (default: square).

    Example:
        >>> import camseg, torchvision
        >>> _ = torch.manual_seed(0)
        >>> vit = torchvision.models.VisionTransformer(
        ...     image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        ...     mlp_dim=32, num_classes=3).eval()
        >>> camseg.AttentionRelevance(vit)(torch.rand(2, 3, 32, 32), targets=1).shape
        torch.Size([2, 32, 32])
    """

    uses_gradients = True

    def _relevance(self, attns: list[torch.Tensor], scores: torch.Tensor | None) -> torch.Tensor:
        _check_layers_ran(attns, len(self.layers))
        assert scores is not None
        columns = [scores] if scores.ndim == 1 else list(scores.unbind(1))
        out = []
        for i, s in enumerate(columns):
            grads = torch.autograd.grad(s.sum(), attns, retain_graph=i < len(columns) - 1)
            b, _, n, _ = attns[0].shape
            dtype = _as_float(attns[0]).dtype
            rel = torch.eye(n, dtype=dtype, device=attns[0].device).expand(b, n, n)
            for attn, g in zip(attns, grads):
                cam = (_as_float(g) * _as_float(attn)).clamp(min=0).mean(dim=1)
                rel = rel + cam @ rel
            out.append(rel[:, 0].detach())
        return out[0] if scores.ndim == 1 else torch.stack(out, dim=1)
