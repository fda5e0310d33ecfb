"""CAM extractors: a model, a layer and a weighting make maps.

Each extractor wires a :class:`~camseg.LayerCapture` to one function of
:mod:`camseg.functional`; the maths lives there. One call runs one forward pass:

- gradient methods run the network below the hooked layer without recording an
  autograd graph (as in :func:`torch.no_grad`), switch autograd on at the layer
  and take ``d score / d activations`` with :func:`torch.autograd.grad`, so the
  backward walks only the head. With ``create_graph=True`` the whole forward
  records a graph and the maps are differentiable w.r.t. the parameters.
- :class:`LinearCAM` and :class:`EigenCAM` need no gradient at all.

Use an extractor in a ``with`` block (hooks live for the block) or call it
directly (hooks live for the call). Either way the model's hooks, training
flags, ``requires_grad`` flags and parameter ``.grad`` are left as found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal, NamedTuple, TypeAlias

import torch
from torch import nn

from camseg import functional as CF
from camseg._checks import check_finite, check_floating, check_one_of, describe
from camseg._targets import Targets, resolve_scores
from camseg.capture import (
    LayerCapture,
    LayerSpec,
    Reshape,
    _reshape_batched,
    gradients,
    resolve_layers,
)

__all__ = [
    "BaseCAM",
    "CAMResult",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "LinearCAM",
    "Size",
    "XGradCAM",
]

Size: TypeAlias = Literal["input"] | tuple[int, int] | None
"""Output size of the maps: ``"input"`` (the input's ``(H, W)``), ``None`` (the
feature resolution of the layer; the largest one when several layers fuse) or an
explicit ``(H, W)``."""


class CAMResult(NamedTuple):
    """Everything one extractor call produced."""

    maps: torch.Tensor
    """Maps ``(B, H, W)`` or ``(B, K, H, W)``."""
    logits: torch.Tensor
    """The model output of the same forward pass (as the model returned it)."""
    targets: torch.Tensor | None
    """The explained classes ``(B,)`` or ``(B, K)`` (``None`` for a callable target)."""


class BaseCAM:
    """Shared machinery of the extractors; subclasses implement :meth:`weigh`.

    Args:
        model: the classifier. Its output must be logits ``(B, C)`` unless
            ``targets`` is a callable.
        layers: the layer to explain (dotted name or module), or several, whose
            maps are fused: each layer's raw map is resized to the common size,
            divided by its per-image maximum (so each layer counts equally and
            zero stays zero) and the layers are averaged; the normalisation
            then applies to the fused map.
        reshape: optional callable turning a layer output into ``(B, C, h, w)``
            (e.g. :func:`camseg.functional.tokens_to_grid` for ViTs).

    Raises:
        TypeError: if ``model`` is not a module.
        ValueError: if a layer is not part of the model.
    """

    method: ClassVar[str] = "base"
    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
    ) -> None:
        self.model = model
        self._capture = LayerCapture(model, layers, reshape=reshape)
        self._in_block = False

    # -- hooks ---------------------------------------------------------------
    def __enter__(self) -> BaseCAM:
        self._capture.__enter__()
        self._capture._paused = True
        self._in_block = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._in_block = False
        self._capture._paused = False
        self._capture.__exit__(*exc_info)

    @contextlib.contextmanager
    def _hooks(self) -> Iterator[LayerCapture]:
        cap = self._capture
        if self._in_block:
            cap.clear()
            cap._paused = False
            try:
                yield cap
            finally:
                cap._paused = True
                cap.clear()
        else:
            with cap:
                yield cap

    def __repr__(self) -> str:
        names = [n for n, _ in self._capture.layers]
        return f"{type(self).__name__}(model={type(self.model).__name__}, layers={names})"

    # -- public API ----------------------------------------------------------
    def __call__(
        self,
        x: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
        create_graph: bool = False,
    ) -> torch.Tensor:
        """Compute maps for a batch.

        Args:
            x: images ``(B, C, H, W)``, floating point.
            targets: what to explain; see :data:`camseg.Targets`.
            normalize: ``"minmax"`` (default, for display), ``"max"`` (zero
                stays zero) or ``None`` (raw maps).
            size: ``"input"``, ``None`` (feature resolution) or ``(H, W)``.
            create_graph: make the maps differentiable w.r.t. the model's
                parameters (one full-graph forward; for training losses).

        Returns:
            Maps ``(B, H, W)``, or ``(B, K, H, W)`` for ``(B, K)`` targets, on
            ``x.device``; float32 under autocast, else the activations' dtype.

        Raises:
            TypeError: for a non-tensor or non-floating ``x`` or bad targets.
            ValueError: for a non-4-D or empty ``x``, targets that do not fit
                the model output, layers that did not run, non-finite
                activations or gradients.
        """
        return self.compute(
            x, targets, normalize=normalize, size=size, create_graph=create_graph
        ).maps

    def compute(
        self,
        x: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
        create_graph: bool = False,
    ) -> CAMResult:
        """Like calling the extractor, but also return the logits and targets.

        Returns:
            :class:`CAMResult` ``(maps, logits, targets)`` from one forward pass.
        """
        _check_images(x)
        check_one_of(normalize, "normalize", ("minmax", "max", None))
        out_size = _check_size(size, x)
        if not isinstance(create_graph, bool):
            raise TypeError(
                f"Expected `create_graph` to be a bool, but got {describe(create_graph)}."
            )
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise ValueError(
                f"Expected {type(self).__name__} to be called outside torch.inference_mode(), "
                "since it needs gradients w.r.t. the activations. camseg already records no "
                "graph below the hooked layer; LinearCAM and EigenCAM work in inference mode."
            )
        with self._hooks() as cap:
            logits, acts, grads, idx, has_k = self._forward(cap, x, targets, create_graph)
        raw = []
        for i, a in enumerate(acts):
            g = grads[i] if grads is not None else None
            raw.append(self._raw_map(a, g, idx))
        if has_k and not self.uses_gradients and raw[0].ndim == 3 and idx is not None:
            raw = [m.unsqueeze(1).expand(-1, idx.shape[1], -1, -1) for m in raw]
        maps = _fuse(raw, out_size)
        maps = CF.normalize(maps, normalize)
        if not create_graph:
            maps = maps.detach()
            if isinstance(logits, torch.Tensor):
                logits = logits.detach()
        return CAMResult(maps, logits, idx)

    # -- internals -----------------------------------------------------------
    def _forward(
        self, cap: LayerCapture, x: torch.Tensor, targets: Targets, create_graph: bool
    ) -> tuple[
        torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor | None, bool
    ]:
        names = [n for n, _ in cap.layers]
        if self.uses_gradients:
            cap._enable_grad_at_layer = not create_graph
            grad_ctx = contextlib.nullcontext() if create_graph else torch.no_grad()
            try:
                with grad_ctx:
                    logits = self.model(x)
            finally:
                cap._enable_grad_at_layer = False
            with torch.enable_grad():
                scores, idx = resolve_scores(logits, targets)
                raws = [cap.raw(n) for n in names]
                for n, a in zip(names, raws):
                    check_finite(a, f"activations of layer {n!r}")
                grads = gradients(scores, raws, create_graph=create_graph)
            for n, g in zip(names, grads):
                check_finite(g, f"gradient of layer {n!r}", "Hint: check the logits for overflow.")
            acts = list(cap.outputs.values())
            if cap.reshape is not None:
                reshape = cap.reshape
                grads = [_reshape_batched(reshape, g, scores.ndim == 2) for g in grads]
            return logits, acts, grads, idx, scores.ndim == 2
        grad_ctx = contextlib.nullcontext() if create_graph else torch.no_grad()
        with grad_ctx:
            logits = self.model(x)
            acts = list(cap.outputs.values())
        for n, a in zip(names, acts):
            check_finite(a, f"activations of layer {n!r}")
        idx = None
        if callable(targets) and not isinstance(targets, torch.Tensor):
            if self._needs_targets():
                raise TypeError(
                    f"Expected `targets` of {type(self).__name__} to be class indices (None, int, "
                    "sequence or LongTensor), but got a callable: a closed-form CAM needs the "
                    "class."
                )
        elif targets is not None or self._needs_targets():
            _, idx = resolve_scores(logits, targets)
        return logits, acts, None, idx, idx is not None and idx.ndim == 2

    def _needs_targets(self) -> bool:
        return True

    def _raw_map(
        self, a: torch.Tensor, g: torch.Tensor | None, idx: torch.Tensor | None
    ) -> torch.Tensor:
        a = _as_float(a)
        if a.ndim != 4:
            raise ValueError(
                f"Expected the captured activations to have shape (B, C, h, w), but got shape "
                f"{tuple(a.shape)}. Hint: pass `reshape=` (e.g. camseg.functional.tokens_to_grid "
                "for transformer tokens)."
            )
        return self.weigh(a, _as_float(g) if g is not None else None, idx)

    _weighting: ClassVar[staticmethod[[torch.Tensor, torch.Tensor], torch.Tensor] | None] = None

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Turn activations (and gradients) into raw maps.

        Gradient methods set the class attribute ``_weighting`` to a function
        of :mod:`camseg.functional`; others override this method.
        """
        weighting = type(self)._weighting
        if weighting is None or gradients is None:
            raise NotImplementedError(f"{type(self).__name__} does not define a weighting")
        return weighting(activations, gradients)


def _as_float(t: torch.Tensor) -> torch.Tensor:
    """float32 for half/bfloat16 (autocast) inputs, the dtype otherwise."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def _check_images(x: object) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"Expected `x` to be a torch.Tensor of images (B, C, H, W), but got {describe(x)}."
        )
    if x.ndim != 4:
        raise ValueError(
            f"Expected `x` to be a tensor of shape (B, C, H, W), but got shape {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise ValueError("Expected `x` to hold at least one image, but got an empty batch (B = 0).")
    check_floating(x, "x")


def _check_size(size: Size, x: torch.Tensor) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, str):
        if size != "input":
            raise ValueError(f"Expected `size` to be 'input', None or (H, W), but got {size!r}.")
        return (int(x.shape[-2]), int(x.shape[-1]))
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        return (int(size[0]), int(size[1]))
    raise ValueError(
        f"Expected `size` to be 'input', None or (H, W) positive ints, but got {size!r}."
    )


def _fuse(raw: list[torch.Tensor], size: tuple[int, int] | None) -> torch.Tensor:
    if len(raw) == 1:
        return raw[0] if size is None else CF.upsample(raw[0], size)
    if size is None:
        size = max((tuple(m.shape[-2:]) for m in raw), key=lambda s: s[0] * s[1])  # type: ignore[assignment]
    assert size is not None
    scaled = [CF.normalize(CF.upsample(m, size), "max") for m in raw]
    return torch.stack(scaled, dim=0).mean(dim=0)


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): :func:`camseg.functional.gradcam`.

    Costs about one plain forward pass: the network below the layer records no
    graph and the backward walks only the head.

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        >>> x = torch.rand(4, 3, 16, 16)
        >>> with camseg.GradCAM(model, "1") as cam:
        ...     maps = cam(x, targets=1)
        >>> maps.shape, bool(maps.min() >= 0), bool(maps.max() <= 1)
        (torch.Size([4, 16, 16]), True, True)
    """

    method = "gradcam"
    _weighting = staticmethod(CF.gradcam)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018): :func:`camseg.functional.gradcam_pp`.

    Args:
        model: the classifier.
        layers: layer(s) to explain.
        reshape: optional token reshape.
        eps: added to the denominator of alpha (0: the exact formula;
            ``1e-6`` reproduces pytorch-grad-cam).

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        >>> camseg.GradCAMPlusPlus(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    method = "gradcam_pp"

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        eps: float = 0.0,
    ) -> None:
        super().__init__(model, layers, reshape=reshape)
        self.eps = eps

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Apply :func:`camseg.functional.gradcam_pp`."""
        assert gradients is not None
        return CF.gradcam_pp(activations, gradients, eps=self.eps)


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): :func:`camseg.functional.hirescam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.HiResCAM(model, "1")(torch.rand(2, 3, 8, 8), size=None).shape
        torch.Size([2, 8, 8])
    """

    method = "hirescam"
    _weighting = staticmethod(CF.hirescam)


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): :func:`camseg.functional.xgradcam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.XGradCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    method = "xgradcam"
    _weighting = staticmethod(CF.xgradcam)


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., TIP 2021): :func:`camseg.functional.layercam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.LayerCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    method = "layercam"
    _weighting = staticmethod(CF.layercam)


class LinearCAM(BaseCAM):
    """Closed-form CAM of a GAP + linear head (Zhou et al., CVPR 2016); no backward.

    Equals Grad-CAM times ``h * w`` when the layer's output is global-average
    pooled into the linear ``head``; after normalisation the two agree. Works
    under :func:`torch.inference_mode`.

    Args:
        model: the classifier.
        layers: the layer whose pooled output feeds ``head``.
        head: the linear head (dotted name or module), e.g. ``"fc"``.
        reshape: optional token reshape.

    Raises:
        TypeError: if ``head`` is not an ``nn.Linear``.
        ValueError: if ``head`` is not part of the model.

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> lin = camseg.LinearCAM(model, "1", head="4")(x, targets=1)
        >>> grad = camseg.GradCAM(model, "1")(x, targets=1)
        >>> torch.allclose(lin, grad, atol=1e-5)
        True
    """

    method = "linear_cam"
    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        head: LayerSpec = "fc",
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layers, reshape=reshape)
        ((_, module),) = _resolve_head(model, head)
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"Expected `head` to be an nn.Linear, but got {type(module).__name__}. Hint: pass "
                "the final linear layer, e.g. head='fc' for torchvision ResNets."
            )
        self.head = module

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Apply :func:`camseg.functional.linear_cam` with the head's weight."""
        assert targets is not None
        weight = self.head.weight
        return CF.linear_cam(activations, weight.to(activations.dtype), targets)


def _resolve_head(model: nn.Module, head: LayerSpec) -> list[tuple[str, nn.Module]]:
    if not isinstance(head, (str, nn.Module)):
        raise TypeError(f"Expected `head` to be a layer name or module, but got {describe(head)}.")
    return resolve_layers(model, head)


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): :func:`camseg.functional.eigencam`.

    Gradient-free and class-agnostic: targets only select which logits are
    reported; ``(B, K)`` targets repeat the one map ``K`` times. Works under
    :func:`torch.inference_mode`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.EigenCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    method = "eigencam"
    uses_gradients = False

    def _needs_targets(self) -> bool:
        return False

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Apply :func:`camseg.functional.eigencam`."""
        return CF.eigencam(activations)
