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
import math
from collections.abc import Sequence
from typing import ClassVar, Literal, NamedTuple, TypeAlias, TypeVar

import torch
from torch import nn

from camseg import functional as CF
from camseg._checks import (
    check_finite,
    check_floating,
    check_ndim,
    check_nonnegative,
    check_one_of,
    check_tensor,
    describe,
)
from camseg._targets import Targets, gives_scores, resolve_scores
from camseg.capture import (
    Element,
    LayerCapture,
    LayerSpec,
    Reshape,
    resolve_layers,
    warn_if_all_zero,
)
from camseg.functional import weights as _W  # the weightings' kernels, on checked tensors

__all__ = [
    "BaseCAM",
    "CAMResult",
    "EigenCAM",
    "EigenGradCAM",
    "Fusion",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "LinearCAM",
    "Size",
    "XGradCAM",
]

Fusion: TypeAlias = Literal["max", "minmax"]
"""How the maps of several layers combine: ``"max"`` (camseg's rule) or ``"minmax"``
(pytorch-grad-cam's); see ``fusion`` in :meth:`BaseCAM.__call__`."""

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


_Self = TypeVar("_Self", bound="BaseCAM")


class BaseCAM:
    """Shared machinery of the extractors; subclasses implement :meth:`~camseg.BaseCAM.weigh`.

    Args:
        model: the classifier. Its output must be logits ``(B, C)`` unless
            ``targets`` is a callable.
        layers: the layer to explain (dotted name or module), or several, whose
            maps are fused: by default each layer's raw map is resized to the
            common size, divided by its per-image maximum (so each layer counts
            equally and zero stays zero) and the layers are averaged (``fusion=``
            of the call chooses pytorch-grad-cam's rule instead); the
            normalization then applies to the fused map.
        reshape: optional callable turning a layer output into ``(B, C, h, w)``
            (e.g. :func:`camseg.functional.tokens_to_grid` for ViTs).
        element: for a layer that returns a tuple, list or mapping, the index or
            key of the tensor to explain (see :class:`camseg.LayerCapture`).

    Raises:
        TypeError: if ``model`` is not a module.
        ValueError: if a layer is not part of the model.

    Threads: an extractor records only the forward passes of the thread that
    calls it, so threads may share a model and even an extractor.
    """

    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
    ) -> None:
        self.model = model
        self._capture = LayerCapture(model, layers, reshape=reshape, element=element)

    # -- hooks ---------------------------------------------------------------
    def __enter__(self: _Self) -> _Self:
        self._capture.attach()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._capture.detach()

    def __repr__(self) -> str:
        names = [n for n, _ in self._capture.layers]
        return f"{type(self).__name__}(model={type(self.model).__name__}, layers={names})"

    # -- public API ----------------------------------------------------------
    def __call__(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
        create_graph: bool = False,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        fusion: Fusion = "max",
    ) -> torch.Tensor:
        """Compute maps for a batch.

        Args:
            images: ``(B, C, H, W)``, floating point, finite, in the model's
                dtype and on its device.
            targets: what to explain; see :data:`camseg.Targets`.
            normalize: ``"minmax"`` (default, for display), ``"max"`` (zero
                stays zero) or ``None`` (raw maps).
            size: ``"input"``, ``None`` (feature resolution) or ``(H, W)``.
            create_graph: make the maps differentiable w.r.t. the model's
                parameters (one full-graph forward; for training losses).
            aug_smooth: average the raw maps over the 8 rotations and reflections
                of the images (histology has no orientation): the extractor runs on
                each turned copy, each map is turned back, the mean is normalised.
                The classes are fixed by the untransformed pass (``targets=None``
                explains its top class in every copy); logits and targets returned
                are that pass's. Costs 8 passes. pytorch-grad-cam's ``aug_smooth``
                averages already normalised maps over flips and rescalings; the
                maps differ.
            eigen_smooth: replace the channel sum of the method's weighted
                activations (:meth:`weighted_activations`) by their projection on
                the first principal component, as :func:`camseg.functional.eigencam`
                does (sign fixed to correlate with the channel sum; pytorch-grad-cam's
                ``eigen_smooth`` leaves the sign to the SVD). Removes noise that is
                not the dominant pattern; costs one batched SVD per layer.
            fusion: how the maps of several layers combine. ``"max"`` (default):
                each raw map is resized to the common size and divided by its
                per-image maximum, so each layer counts equally and zero stays
                zero, then the layers are averaged. ``"minmax"``: pytorch-grad-cam's
                rule, each map min-max scaled at its own resolution, then resized
                and averaged (its minimum becomes 0 even where the layer saw
                evidence everywhere). One layer: no effect.

        Returns:
            Maps ``(B, H, W)``, or ``(B, K, H, W)`` for ``(B, K)`` targets, on
            ``images.device`` and in ``images.dtype`` (so float32 for float32
            images under autocast, bfloat16 for a ``.bfloat16()`` model fed
            bfloat16 images). Half-precision maps are computed in float32 and
            rounded once at the end.

        Raises:
            TypeError: for non-tensor or non-floating ``images``, images whose
                dtype the model does not take, or bad targets.
            ValueError: for non-4-D, empty or non-finite ``images``, images the
                model rejects (channels, device), targets that do not fit the
                model output, layers that did not run, channels-last or token
                activations without ``reshape=``, non-finite activations or
                gradients.

        Warns:
            CAMWarning: when every gradient of a layer is zero in the call (a
                ViT hooked at its last block; the maps are then all zero), or,
                for the gradient-free methods, every activation.
        """
        return self.explain(
            images,
            targets,
            normalize=normalize,
            size=size,
            create_graph=create_graph,
            aug_smooth=aug_smooth,
            eigen_smooth=eigen_smooth,
            fusion=fusion,
        ).maps

    def explain(
        self,
        images: torch.Tensor,
        targets: Targets = None,
        *,
        normalize: CF.NormalizeMode = "minmax",
        size: Size = "input",
        create_graph: bool = False,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        fusion: Fusion = "max",
    ) -> CAMResult:
        """Like calling the extractor, but also return the logits and targets.

        Takes the arguments of :meth:`__call__` and raises the same errors.

        Returns:
            :class:`CAMResult` ``(maps, logits, targets)`` from one forward pass.
        """
        _check_images(images)
        check_one_of(normalize, "normalize", ("minmax", "max", None))
        check_one_of(fusion, "fusion", ("max", "minmax"))
        out_size = _check_size(size, images)
        if not isinstance(create_graph, bool):
            raise TypeError(
                f"Expected `create_graph` to be a bool, but got {describe(create_graph)}."
            )
        for flag, value in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if not isinstance(value, bool):
                raise TypeError(f"Expected `{flag}` to be a bool, but got {describe(value)}.")
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise ValueError(
                f"Expected {type(self).__name__} to be called outside torch.inference_mode(), "
                "since it needs gradients w.r.t. the activations. camseg already records no "
                "graph below the hooked layer; LinearCAM and EigenCAM work in inference mode."
            )
        if not aug_smooth:
            return self._explain(
                images,
                targets,
                normalize,
                out_size,
                create_graph,
                eigen_smooth=eigen_smooth,
                fusion=fusion,
            )
        # raw maps in the computation dtype, normalised and rounded once at the end
        first = self._explain(
            images,
            targets,
            None,
            out_size,
            create_graph,
            cast=False,
            eigen_smooth=eigen_smooth,
            fusion=fusion,
        )
        fixed = first.targets if first.targets is not None else targets
        total = first.maps
        for k, flip in CF.transform_group("d4")[1:]:
            turned = out_size if out_size is None or k % 2 == 0 else (out_size[1], out_size[0])
            x = CF.apply_transform(images, (k, flip))
            maps = self._explain(
                x,
                fixed,
                None,
                turned,
                create_graph,
                cast=False,
                eigen_smooth=eigen_smooth,
                fusion=fusion,
            ).maps
            total = total + CF.apply_transform(maps, (k, flip), inverse=True)
        maps = CF.normalize(total / 8, mode=normalize).to(images.dtype)
        return CAMResult(maps, first.logits, first.targets)

    # -- internals -----------------------------------------------------------
    def _explain(
        self,
        images: torch.Tensor,
        targets: Targets,
        normalize: CF.NormalizeMode,
        out_size: tuple[int, int] | None,
        create_graph: bool,
        *,
        cast: bool = True,
        eigen_smooth: bool = False,
        fusion: Fusion = "max",
    ) -> CAMResult:
        """One pass on checked arguments (``out_size`` resolved).

        ``cast=False`` keeps the maps in the computation dtype, not ``images.dtype``.
        """
        with self._capture.session(grad_at_layer=self.uses_gradients and not create_graph) as cap:
            logits, acts, grads, idx, has_k = self._forward(cap, images, targets, create_graph)
        names = [n for n, _ in self._capture.layers]
        if grads is None:  # gradient-free: maps of all-zero activations are all zero
            warn_if_all_zero(acts, names, "activation")
        raw = []
        for i, (name, a) in enumerate(zip(names, acts)):
            g = grads[i] if grads is not None else None
            raw.append(
                self._raw_map(
                    a, g, idx, name=name, image_hw=tuple(images.shape[-2:]), eigen=eigen_smooth
                )
            )
        if has_k and not self.uses_gradients and raw[0].ndim == 3 and idx is not None:
            raw = [m.unsqueeze(1).expand(-1, idx.shape[1], -1, -1) for m in raw]
        maps = _fuse(raw, out_size, fusion)
        maps = CF.normalize(maps, mode=normalize)
        maps = maps.to(images.dtype) if cast else maps
        if not create_graph:
            maps = maps.detach()
            if isinstance(logits, torch.Tensor):
                logits = logits.detach()
        return CAMResult(maps, logits, idx)

    def _forward(
        self, cap: LayerCapture, x: torch.Tensor, targets: Targets, create_graph: bool
    ) -> tuple[
        torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor | None, bool
    ]:
        names = [n for n, _ in cap.layers]
        grad_ctx = contextlib.nullcontext() if create_graph else torch.no_grad()
        with grad_ctx:
            logits = _run_model(self.model, x)
        if self.uses_gradients:
            with torch.enable_grad():
                scores, idx = resolve_scores(logits, targets)
                for n in names:
                    check_finite(cap.raw(n), f"activations of layer {n!r}")
                grads = cap.score_gradients(scores, create_graph=create_graph)
            acts = list(cap.outputs.values())
            return logits, acts, grads, idx, scores.ndim == 2
        with grad_ctx:
            acts = list(cap.outputs.values())
        for n, a in zip(names, acts):
            check_finite(a, f"activations of layer {n!r}")
        idx = None
        if gives_scores(targets):
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
        self,
        a: torch.Tensor,
        g: torch.Tensor | None,
        idx: torch.Tensor | None,
        *,
        name: str,
        image_hw: tuple[int, ...],
        eigen: bool = False,
    ) -> torch.Tensor:
        a = _as_float(a)
        _check_layout(a, name, image_hw, reshaped=self._capture.reshape is not None)
        g = _as_float(g) if g is not None else None
        if eigen:
            return _W._eigen_projection(self.weighted_activations(a, g, idx))
        return self.weigh(a, g, idx)

    _terms: ClassVar[staticmethod[[torch.Tensor, torch.Tensor], torch.Tensor] | None] = None

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Turn activations (and gradients) into raw maps.

        By default the ReLU of the channel sum of :meth:`weighted_activations`;
        methods whose map is not such a sum (Eigen-CAM) override this.
        """
        return _W._channel_sum(self.weighted_activations(activations, gradients, targets))

    def weighted_activations(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """The per-channel terms ``(B, C, h, w)`` or ``(B, K, C, h, w)`` of the map.

        Their channel sum is the raw map before its ReLU (Grad-CAM: ``w_k A_k``;
        HiResCAM: ``g * A``); ``eigen_smooth`` projects them on their first
        principal component instead. Gradient methods set the class attribute
        ``_terms`` to the kernel of their :mod:`camseg.functional` weighting (the
        function without its input checks: the extractor has checked the
        activations and gradients once); others override this method.
        """
        terms = type(self)._terms
        if terms is None or gradients is None:
            raise NotImplementedError(f"{type(self).__name__} does not define weighted activations")
        return terms(activations, gradients)


def _as_float(t: torch.Tensor) -> torch.Tensor:
    """float32 for half/bfloat16 (autocast) inputs, the dtype otherwise."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    return t


def _check_images(images: object) -> None:
    x = check_tensor(images, "images")
    check_ndim(x, "images", 4, "(B, C, H, W)")
    if x.shape[0] == 0:
        raise ValueError(
            "Expected `images` to hold at least one image, but got an empty batch (B = 0)."
        )
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(
            "Expected `images` to have at least one pixel (H, W > 0), but got shape "
            f"{tuple(x.shape)}."
        )
    check_floating(x, "images")
    check_finite(x, "images")


def _first(model: nn.Module, kind: type[nn.Module]) -> tuple[str, nn.Module] | None:
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, kind)), None)


def _run_model(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)``; a RuntimeError caused by the images becomes a TypeError/ValueError."""
    try:
        return model(images)
    except RuntimeError as err:
        if isinstance(err, torch.OutOfMemoryError):
            raise
        better = _explain_model_error(model, images)
        if better is None:
            raise
        raise better from err


def _explain_model_error(model: nn.Module, images: torch.Tensor) -> Exception | None:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    autocast = torch.is_autocast_enabled() or torch.is_autocast_enabled("cpu")
    if param is not None and param.device != images.device:
        return ValueError(
            f"Expected `images` on the model's device {param.device}, but got {images.device}. "
            f"Hint: `images.to({str(param.device)!r})`."
        )
    if param is not None and param.dtype != images.dtype and not autocast:
        return TypeError(
            f"Expected `images` in the model's dtype {param.dtype}, but got {images.dtype}, and "
            f"the model raised. Hint: `images.to({param.dtype})` (or use torch.autocast)."
        )
    for kind in (nn.Conv2d, nn.Conv1d, nn.Conv3d):
        first = _first(model, kind)
        if first is not None:
            name, conv = first
            assert isinstance(conv, nn.Conv2d | nn.Conv1d | nn.Conv3d)
            if kind is nn.Conv2d and conv.in_channels != images.shape[1]:
                return ValueError(
                    f"Expected `images` to have {conv.in_channels} channels (the model's first "
                    f"convolution {name!r} takes {conv.in_channels}), but got shape "
                    f"{tuple(images.shape)}."
                )
            break
    return None


def _aspect_matches(h: int, w: int, image_hw: tuple[int, ...]) -> bool:
    if min(h, w, *image_hw) <= 0:
        return False
    return abs(math.log((h / w) / (image_hw[0] / image_hw[1]))) <= math.log(1.5)


def _check_layout(a: torch.Tensor, name: str, image_hw: tuple[int, ...], *, reshaped: bool) -> None:
    """Reject activations that are not ``(B, C, h, w)``: tokens, or channels-last features."""
    if a.ndim == 3:
        raise ValueError(
            f"Expected the activations of layer {name!r} to have shape (B, C, h, w), but got "
            f"shape {tuple(a.shape)} (tokens (B, N, C)?). Hint: pass `reshape=` (e.g. "
            "functools.partial(camseg.functional.tokens_to_grid, prefix_tokens=1) for a ViT "
            "with a class token)."
        )
    if a.ndim != 4:
        raise ValueError(
            f"Expected the activations of layer {name!r} to have shape (B, C, h, w), but got "
            f"shape {tuple(a.shape)}. Hint: pass `reshape=` to turn them into (B, C, h, w)."
        )
    _, d1, d2, d3 = a.shape
    if (
        not reshaped
        and d3 > max(d1, d2)
        and _aspect_matches(d1, d2, image_hw)
        and not _aspect_matches(d2, d3, image_hw)
    ):
        raise ValueError(
            f"Expected the activations of layer {name!r} to have shape (B, C, h, w), but got "
            f"shape {tuple(a.shape)}, which looks channels-last (B, h, w, C) as in Swin stages. "
            "Hint: pass `reshape=lambda a: a.permute(0, 3, 1, 2)`; if the layout really is "
            "(B, C, h, w), pass `reshape=lambda a: a` to skip this check."
        )


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


def _fuse(raw: list[torch.Tensor], size: tuple[int, int] | None, fusion: Fusion) -> torch.Tensor:
    """One raw map from the layers' maps (see ``fusion`` in :meth:`BaseCAM.__call__`)."""
    if len(raw) == 1:
        return raw[0] if size is None else CF.upsample(raw[0], size)
    if size is None:
        size = max((tuple(m.shape[-2:]) for m in raw), key=lambda s: s[0] * s[1])  # type: ignore[assignment]
    assert size is not None
    if fusion == "minmax":
        scaled = [CF.upsample(CF.normalize(m, mode="minmax"), size) for m in raw]
    else:
        scaled = [CF.normalize(CF.upsample(m, size), mode="max") for m in raw]
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

    _terms = staticmethod(_W._gradcam_terms)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhyay et al., WACV 2018): :func:`camseg.functional.gradcam_pp`.

    Args:
        model: the classifier.
        layers: layer(s) to explain.
        reshape: optional token reshape.
        element: index or key of a tuple/dict layer output.
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

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
        eps: float = 0.0,
    ) -> None:
        check_nonnegative(eps, "eps")
        super().__init__(model, layers, reshape=reshape, element=element)
        self.eps = eps

    def weighted_activations(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """The terms of :func:`camseg.functional.gradcam_pp` with this extractor's ``eps``."""
        assert gradients is not None
        return _W._gradcam_pp_terms(activations, gradients, self.eps)


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): :func:`camseg.functional.hirescam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.HiResCAM(model, "1")(torch.rand(2, 3, 8, 8), size=None).shape
        torch.Size([2, 8, 8])
    """

    _terms = staticmethod(_W._hirescam_terms)


class GradCAMElementWise(BaseCAM):
    """Element-wise Grad-CAM: :func:`camseg.functional.gradcam_elementwise`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.GradCAMElementWise(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    _terms = staticmethod(_W._gradcam_elementwise_terms)


class EigenGradCAM(BaseCAM):
    """Eigen-Grad-CAM: :func:`camseg.functional.eigengradcam` (class-dependent Eigen-CAM).

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.EigenGradCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    _terms = staticmethod(_W._hirescam_terms)  # g * A, projected rather than summed

    def weigh(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """Apply :func:`camseg.functional.eigengradcam`."""
        return _W._eigen_projection(self.weighted_activations(activations, gradients, targets))


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al., BMVC 2020): :func:`camseg.functional.xgradcam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.XGradCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    _terms = staticmethod(_W._xgradcam_terms)


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al., TIP 2021): :func:`camseg.functional.layercam`.

    Example:
        >>> import camseg
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> camseg.LayerCAM(model, "1")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8])
    """

    _terms = staticmethod(_W._layercam_terms)


class LinearCAM(BaseCAM):
    """Closed-form CAM of a GAP + linear head (Zhou et al., CVPR 2016); no backward.

    Equals Grad-CAM times ``h * w`` when the layer's output is global-average
    pooled into the linear ``head``; after normalization the two agree. Works
    under :func:`torch.inference_mode`.

    Args:
        model: the classifier.
        layers: the layer whose pooled output feeds ``head``.
        head: the linear head (dotted name or module), e.g. ``"fc"``.
        reshape: optional token reshape.
        element: index or key of a tuple/dict layer output.

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

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        head: LayerSpec = "fc",
        reshape: Reshape | None = None,
        element: Element = None,
    ) -> None:
        super().__init__(model, layers, reshape=reshape, element=element)
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

    def weighted_activations(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """``W[c, k] * A_k`` for the target class ``c`` (``+-W[0]`` for a single-logit head)."""
        assert targets is not None
        weight = self.head.weight.to(activations.dtype)
        if weight.shape[0] == 1:
            w = (2 * targets - 1).to(weight.dtype).unsqueeze(-1) * weight[0]
        else:
            w = weight[targets]  # (B, C) or (B, K, C)
        a = activations if w.ndim == 2 else activations.unsqueeze(1)
        return w[..., None, None] * a


def _resolve_head(model: nn.Module, head: LayerSpec) -> list[tuple[str, nn.Module]]:
    if not isinstance(head, (str, nn.Module)):
        raise TypeError(f"Expected `head` to be a layer name or module, but got {describe(head)}.")
    return resolve_layers(model, head, name="head")


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

    def weighted_activations(
        self,
        activations: torch.Tensor,
        gradients: torch.Tensor | None,
        targets: torch.Tensor | None,
    ) -> torch.Tensor:
        """The activations themselves (``eigen_smooth`` leaves Eigen-CAM unchanged)."""
        return activations
