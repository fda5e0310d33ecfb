"""FullGrad: saliency from the full-gradient decomposition (Srinivas & Fleuret, NeurIPS 2019).

A ReLU network with biases is, around each input, an affine function: its
output is the input gradient times the input plus the sum, over every bias
``b`` of the network, of ``b`` times the gradient at that bias (the paper's
full-gradient decomposition). FullGrad turns each of those terms into a map:

- the input term ``|dy/dx * x|``, one map per input channel;
- one term per *bias layer* output: ``|b_c * dy/dz_c|`` for every channel ``c``
  of the layer output ``z``, where ``b`` is the layer's bias (a batch norm's
  implicit bias in eval mode);

each map is min-max scaled on its own (per image and channel), resized to the
output size and the maps are summed. Unlike the CAMs of ``camseg.extractors``
it needs no layer choice: every bias layer counts, and the input gradient adds
pixel-level detail.

One call runs one forward pass recording the full graph (the input gradient
needs it, so the "no graph below the layer" path of the gradient CAMs does not
apply) and one backward that yields the gradients at the images and at every
bias layer together (:func:`torch.autograd.grad`; parameter ``.grad`` is never
touched). The forward hooks live for the call only and are removed in
``finally``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from camseg import functional as CF
from camseg._checks import check_finite, check_nonnegative, describe
from camseg._targets import Targets, resolve_scores
from camseg.capture import CAMWarning, gradients
from camseg.extractors import BaseCAM, CAMResult, Fusion, _as_float, _run_model
from camseg.functional import weights as _W  # eigen_smooth's projection, on checked tensors

__all__ = ["FullGrad"]

#: module types whose output carries a bias term (exact types, as pytorch-grad-cam)
_BIAS_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.BatchNorm2d)

_Self = TypeVar("_Self", bound="FullGrad")


def _bias_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The bias layers ``(name, module)`` of ``model``, in registration order.

    Those are the modules whose type is exactly ``nn.Conv2d`` or ``nn.BatchNorm2d`` and
    that have a bias.
    The type must be exactly one of those two (as in pytorch-grad-cam): a
    subclass may do more after adding its bias (timm's ``BatchNormAct2d`` applies
    an activation), so the gradient at its output would not be the gradient at
    the bias. Modules without a bias (``Conv2d(bias=False)``,
    ``BatchNorm2d(affine=False)``) are left out.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if type(module) in _BIAS_LAYER_TYPES and getattr(module, "bias", None) is not None
    ]


def _layer_bias(module: nn.Module) -> torch.Tensor:
    r"""The bias ``(C,)`` that a bias layer adds to each output channel.

    ``nn.Conv2d``: its ``bias``. ``nn.BatchNorm2d`` in eval mode computes
    :math:`\gamma (z - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`, whose implicit bias is
    :math:`\beta - \mu \gamma / \sqrt{\sigma^2 + \epsilon}` with the running
    statistics :math:`\mu, \sigma^2` (the authors' and pytorch-grad-cam's rule).
    """
    if isinstance(module, nn.BatchNorm2d):
        assert module.running_mean is not None and module.running_var is not None
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return module.bias - module.running_mean * scale
    bias = module.bias
    assert isinstance(bias, torch.Tensor)
    return bias


def _scale_maps(t: torch.Tensor, eps: float) -> torch.Tensor:
    """Per map ``(..., h, w)``: ``(t - min) / (max - min + eps)``; all zeros for a constant map."""
    flat = t.flatten(-2)
    flat = flat - flat.amin(dim=-1, keepdim=True)
    den = flat.amax(dim=-1, keepdim=True) + eps
    den = torch.where(den > 0, den, torch.ones_like(den))  # only a constant map has den == 0
    return (flat / den).reshape(t.shape)


def _term(products: torch.Tensor, eps: float, size: tuple[int, int]) -> torch.Tensor:
    """One term's map ``(..., H, W)`` from its products ``(..., C, h, w)``.

    ``|products|`` is scaled per channel, summed over the channels and resized;
    the sum comes before the (linear) bilinear resize, which gives the same map
    as resizing every channel first, for a fraction of the memory.
    """
    summed = _scale_maps(products.abs(), eps).sum(dim=-3)
    return CF.upsample(summed, size)


class FullGrad(BaseCAM):
    r"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient and bias-gradient maps, summed.

    With :math:`y` the target score, :math:`x` the images and :math:`z^l` the
    output of bias layer :math:`l` with bias :math:`b^l`, the raw map is

    .. math::

        M = \sum_{c} \psi\big(|\partial_{x_c} y \odot x_c|\big)
            + \sum_l \sum_c \psi\big(|b^l_c \, \partial_{z^l_c} y|\big)

    where :math:`\psi` min-max scales one map (per image and channel:
    :math:`(m - \min m) / (\max m - \min m + \epsilon)`) and resizes it
    bilinearly to the output size. This is pytorch-grad-cam's ``FullGrad``: the
    raw maps (``normalize=None``) are equal to float64 rounding on torchvision
    models (``tests/test_fullgrad.py``); its final min-max adds ``1e-7`` to the
    denominator where camseg's ``normalize`` is exact, so normalised maps differ
    by less than ``1e-7 / (max - min)`` of the raw map. The authors' code scales
    each layer's channels jointly rather than one by one, and resizes with
    ``align_corners=True``; their maps differ.

    Bias layers (the attribute ``layers``): every module whose type is exactly
    ``nn.Conv2d`` or ``nn.BatchNorm2d`` and that has a bias, as in
    pytorch-grad-cam. Batch norms contribute their implicit bias in eval mode,
    :math:`\beta - \mu\gamma / \sqrt{\sigma^2 + \epsilon}`. Subclasses of those
    types are not counted (a subclass may apply more after the bias: timm's
    ``BatchNormAct2d`` applies an activation), nor are layers without a bias
    (``Conv2d(bias=False)`` before a batch norm, ``BatchNorm2d(affine=False)``),
    nor linear layers (their bias gradient has no spatial extent). A layer used
    twice in the forward contributes one term per use; a layer that does not run
    (an auxiliary head in eval mode) contributes none.

    Calls take the arguments of :meth:`BaseCAM.__call__` with these meanings:
    ``size=None`` is the input's size (the map is formed at the images'
    resolution); ``fusion`` has no effect (FullGrad sums its terms by
    definition); ``eigen_smooth=True`` projects the per-term maps (the input's,
    then one per bias-layer output) on their first principal component instead
    of summing them (pytorch-grad-cam projects at 1/8 of the size with the SVD's
    arbitrary sign, so those maps differ); ``create_graph=True`` makes the maps
    differentiable w.r.t. the parameters (and the images, if they require
    grad). Cost: one forward recording the full graph and one backward through
    the whole network -- the time and memory of a training step, not the one
    forward of the gradient CAMs. Hooks live for each call (a ``with`` block is
    accepted and holds none); under :func:`torch.no_grad` the forward records
    its graph anyway, as the gradient CAMs do; :func:`torch.inference_mode`
    raises.

    Args:
        model: the classifier; its batch norms must use their running
            statistics (eval mode).
        eps: added to the denominator of each per-map min-max scaling.
            ``1e-7`` (the default) is pytorch-grad-cam's; ``0`` is the plain
            min-max (a constant map becomes zeros). It also damps channels whose
            term is nearly constant, which plain min-max would blow up to a full
            ``[0, 1]`` range.

    Raises:
        TypeError: if ``model`` is not a module or ``eps`` not a number.
        ValueError: if ``model`` has no bias layer, or ``eps`` is negative or
            not finite. A call raises ``ValueError`` when a counted batch norm is
            in training mode or keeps no running statistics (its implicit bias
            is then that of the batch, which couples the images), besides the
            errors of :meth:`BaseCAM.__call__`.

    Warns:
        CAMWarning: when every map of the call is zero (the scores do not
            depend on the images).

    References:
        Srinivas & Fleuret, "Full-Gradient Representation for Neural Network
        Visualization", NeurIPS 2019.

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        ...                       nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
        >>> fg = camseg.FullGrad(model)
        >>> [name for name, _ in fg.layers]           # the bias layers: BN '1' and conv '3'
        ['1', '3']
        >>> maps = fg(torch.rand(4, 3, 16, 16), targets=1)
        >>> maps.shape, float(maps.min()), float(maps.max())
        (torch.Size([4, 16, 16]), 0.0, 1.0)
    """

    def __init__(self, model: nn.Module, *, eps: float = 1e-7) -> None:
        # BaseCAM.__init__ would hook one chosen layer; FullGrad hooks every bias layer per call
        if not isinstance(model, nn.Module):
            raise TypeError(f"Expected `model` to be a torch.nn.Module, but got {describe(model)}.")
        check_nonnegative(eps, "eps")
        layers = _bias_layers(model)
        if not layers:
            raise ValueError(
                f"Expected `model` to contain bias layers for FullGrad (nn.Conv2d or "
                f"nn.BatchNorm2d with a bias), but {type(model).__name__} has none. Hint: "
                "FullGrad's maps are made of the gradients at those biases; use a CAM method "
                "(camseg.GradCAM, ...) for this model."
            )
        self.model = model
        self.eps = float(eps)
        self.layers: list[tuple[str, nn.Module]] = layers
        """The bias layers ``(name, module)`` whose terms make the map."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"FullGrad(model={type(self.model).__name__}, layers={len(self.layers)})"

    def _check_statistics(self) -> None:
        for name, module in self.layers:
            if isinstance(module, nn.BatchNorm2d) and (
                module.training or module.running_mean is None or module.running_var is None
            ):
                why = "is in training mode" if module.training else "keeps no running statistics"
                raise ValueError(
                    f"Expected the batch norms of FullGrad's `model` to use their running "
                    f"statistics (eval mode), but layer {name!r} {why}: its bias would be that of "
                    "the batch, which couples the images. Hint: call `model.eval()` before "
                    "FullGrad (and `model.train()` after)."
                )

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
        """One pass on checked arguments; ``fusion`` has no effect (see the class notes)."""
        self._check_statistics()
        size = out_size if out_size is not None else (int(images.shape[-2]), int(images.shape[-1]))
        if create_graph and images.requires_grad:
            x = images
        else:
            x = images.detach().requires_grad_(True)
        with torch.enable_grad():
            logits, records = self._record(x)
            scores, idx = resolve_scores(logits, targets)
            if not scores.requires_grad:
                raise ValueError(
                    "Expected the target scores to depend on the images, but they carry no "
                    "gradient. Hint: a `targets` callable must return a differentiable function "
                    "of the model output."
                )
            grads = gradients(
                scores, [x] + [out for _, _, out in records], create_graph=create_graph
            )
        has_k = scores.ndim == 2
        check_finite(grads[0], "gradient of the images", "Hint: check the model for overflow.")
        for (name, _, _), g in zip(records, grads[1:]):
            check_finite(g, f"gradient of layer {name!r}", "Hint: check the model for overflow.")
        with torch.set_grad_enabled(create_graph):
            inputs = _as_float(x if create_graph else x.detach())
            inputs = inputs.unsqueeze(1) if has_k else inputs
            maps = _term(_as_float(grads[0]) * inputs, self.eps, size)
            terms = [maps]  # kept only for eigen_smooth; otherwise a running sum
            for (_, module, _), g in zip(records, grads[1:]):
                g = _as_float(g)
                bias = _layer_bias(module).to(g.dtype)
                term = _term(bias[:, None, None] * g, self.eps, size)
                if eigen_smooth:
                    terms.append(term)
                else:
                    maps = maps + term
            if eigen_smooth:
                maps = _W._eigen_projection(torch.stack(terms, dim=-3))
        if maps.numel() and not bool(maps.detach().ne(0).any()):
            warnings.warn(
                "Every FullGrad map is zero in this call: no term varies over the image. "
                "Hint: check that the target scores depend on the images.",
                CAMWarning,
                stacklevel=4,
            )
        maps = CF.normalize(maps, mode=normalize)
        maps = maps.to(images.dtype) if cast else maps
        if not create_graph:
            maps = maps.detach()
            logits = logits.detach() if isinstance(logits, torch.Tensor) else logits
        return CAMResult(maps, logits, idx)

    def _record(self, x: torch.Tensor) -> tuple[Any, list[tuple[str, nn.Module, torch.Tensor]]]:
        """``model(x)`` with every bias layer's outputs recorded, in the order they ran.

        Each output is recorded as it is (or as a leaf that requires grad, if it
        has no graph) and a copy is handed on, so in-place operations after the
        layer (``ReLU(inplace=True)``) cannot change what is differentiated.
        Only this thread's forward is recorded; the hooks are removed on return.
        """
        records: list[tuple[str, nn.Module, torch.Tensor]] = []
        thread = threading.get_ident()
        batch = x.shape[0]

        def make_hook(name: str) -> Callable[[nn.Module, Any, Any], Any]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
                if threading.get_ident() != thread:
                    return None
                if not isinstance(output, torch.Tensor) or output.ndim != 4:
                    raise ValueError(
                        f"Expected bias layer {name!r} to output a tensor (B, C, h, w), but got "
                        f"{describe(output)}. Hint: FullGrad handles batched 2-D feature maps."
                    )
                if output.shape[0] != batch:
                    raise ValueError(
                        f"Expected bias layer {name!r} to output one feature map per image "
                        f"({batch}), but got shape {tuple(output.shape)}: FullGrad's maps "
                        "need each layer's batch to be the images'."
                    )
                recorded = output if output.requires_grad else output.detach().requires_grad_()
                records.append((name, module, recorded))
                return recorded.clone()

            return hook

        handles = []
        try:
            for name, module in self.layers:
                handles.append(module.register_forward_hook(make_hook(name)))
            logits = _run_model(self.model, x)
        finally:
            for handle in handles:
                handle.remove()
        return logits, records
