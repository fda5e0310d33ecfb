"""Perturbation CAMs: channel weights from the scores of perturbed forward passes.

:class:`ScoreCAM` masks the images with each channel's upsampled activation map
and scores the masked copies; :class:`AblationCAM` removes one channel at a time
at the layer and measures the score's drop. Neither takes a gradient; both cost
one forward per channel and image, so camseg runs them in large batches:

- every ``(image, channel)`` pair of a call is one row of a stream of forward
  batches of at most ``batch_size`` rows (the memory bound: one batch of that
  many images, never the ``B x C`` copies at once);
- :class:`AblationCAM` replays only the network above the layer: the images run
  once up to the layer and the hook hands the layers above a batch of ablated
  copies of one image's activations, so the part below runs once per batch of
  channels instead of once per channel (pytorch-grad-cam reruns it for every
  copy). Models whose layers above reuse a tensor from below in a way that does
  not broadcast (DenseNet concatenations inside a block) fall back to full
  forwards, found out on the first replay and checked on an unablated row;
- ScoreCAM scores the all-zero image once per call for every constant channel
  (a dead ReLU channel masks the image to zero);
- ``top_k`` keeps only the ``k`` channels of largest mean activation per image
  (the others get weight 0), for a ``C / k`` speed-up.

The models must be in eval mode: perturbed copies are scored in batches, and
batch-norm statistics or dropout in training mode would mix or randomise them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from camseg import functional as CF
from camseg._checks import check_finite, check_positive_int, describe
from camseg._targets import Targets, resolve_scores
from camseg.capture import Element, LayerSpec, Reshape, replace_element, warn_if_all_zero
from camseg.extractors import (
    BaseCAM,
    CAMResult,
    Fusion,
    _as_float,
    _check_layout,
    _fuse,
    _run_model,
)
from camseg.functional import weights as _W  # the weightings' kernels, on checked tensors

__all__ = ["AblationCAM", "ScoreCAM"]

_RowScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _row_scorer(targets: Targets, idx: torch.Tensor | None) -> _RowScorer:
    """``(logits of perturbed rows, image of each row) -> scores (n,) or (n, K)``.

    Class targets are gathered per row; per-image callables are applied to the
    rows of their image; a batch callable is applied to the rows as given (it
    must act row by row).
    """

    def score(rows: torch.Tensor, images_of_rows: torch.Tensor) -> torch.Tensor:
        if idx is not None:
            s, _ = resolve_scores(rows, idx[images_of_rows])
        elif isinstance(targets, Sequence):
            s, _ = resolve_scores(rows, [targets[i] for i in images_of_rows.tolist()])
        else:
            s, _ = resolve_scores(rows, targets)
        return _as_float(s.detach())

    return score


class _Job(NamedTuple):
    """One layer of one call: what a perturbation method needs to weigh its channels."""

    images: torch.Tensor
    name: str
    module: nn.Module
    raw: torch.Tensor
    """The layer's output as recorded (before ``reshape``)."""
    acts: torch.Tensor
    """``(B, C, h, w)`` activations in the computation dtype."""
    logits: torch.Tensor
    base: torch.Tensor
    """The unperturbed scores ``(B,)`` or ``(B, K)``."""
    scorer: _RowScorer
    chosen: torch.Tensor
    """Boolean ``(B, C)``: the channels to perturb."""


class _PerturbationCAM(BaseCAM):
    """Shared engine of :class:`ScoreCAM` and :class:`AblationCAM`."""

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None,
        element: Element,
        batch_size: int,
        top_k: int | None,
    ) -> None:
        super().__init__(model, layers, reshape=reshape, element=element)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.top_k = None if top_k is None else check_positive_int(top_k, "top_k")

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
        kind = type(self).__name__
        if create_graph:
            raise ValueError(
                f"Expected `create_graph=False` for {kind}: its weights are scores of perturbed "
                "forward passes, which have no gradient. Use a gradient method (GradCAM, ...) "
                "for differentiable maps."
            )
        if self.model.training:
            raise ValueError(
                f"Expected the model of {kind} to be in eval mode, but `model.training` is True: "
                "perturbed copies are scored in batches, which batch-norm statistics or dropout "
                "in training mode would mix or randomise. Hint: call `model.eval()` first."
            )
        names = [n for n, _ in self._capture.layers]
        with self._capture.session(grad_at_layer=False) as cap, torch.no_grad():
            logits = _run_model(self.model, images)
            raws = [cap.raw(n) for n in names]
            acts = list(cap.outputs.values())
        for n, a in zip(names, acts):
            check_finite(a, f"activations of layer {n!r}")
        warn_if_all_zero(acts, names, "activation")
        with torch.no_grad():
            base, idx = resolve_scores(logits, targets)
            base = _as_float(base.detach())
            scorer = _row_scorer(targets, idx)
            raw = []
            for (name, module), a, r in zip(self._capture.layers, acts, raws):
                a = _as_float(a)
                _check_layout(
                    a, name, tuple(images.shape[-2:]), reshaped=self._capture.reshape is not None
                )
                chosen = self._chosen(a)
                job = _Job(images, name, module, r, a, logits, base, scorer, chosen)
                weights = self._weights(job)
                w = weights.to(a.dtype)
                w = w if w.ndim == 2 else w.transpose(1, 2)  # (B, C) or (B, K, C)
                terms = w[..., None, None] * (a if w.ndim == 2 else a.unsqueeze(1))
                project = _W._eigen_projection if eigen_smooth else _W._channel_sum
                raw.append(project(terms))
            maps = _fuse(raw, out_size, fusion)
            maps = CF.normalize(maps, mode=normalize)
        maps = maps.to(images.dtype) if cast else maps
        return CAMResult(maps, logits.detach() if isinstance(logits, torch.Tensor) else logits, idx)

    def _chosen(self, a: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B, C)``: the channels to perturb (all, or the ``top_k`` by mean)."""
        b, c = a.shape[:2]
        if self.top_k is None or self.top_k >= c:
            return torch.ones(b, c, dtype=torch.bool, device=a.device)
        top = a.mean(dim=(2, 3)).topk(self.top_k, dim=1).indices
        chosen = torch.zeros(b, c, dtype=torch.bool, device=a.device)
        return chosen.scatter_(1, top, True)

    def _weights(self, job: _Job) -> torch.Tensor:
        """Channel weights ``(B, C)`` or ``(B, C, K)`` of one layer."""
        raise NotImplementedError


def _empty_scores(base: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, C)`` or ``(B, C, K)`` filled with NaN, in the scores' dtype."""
    shape = (base.shape[0], channels, *base.shape[1:])
    return torch.full(shape, float("nan"), dtype=base.dtype, device=base.device)


class ScoreCAM(_PerturbationCAM):
    """Score-CAM (Wang et al., CVPR Workshops 2020), batched.

    For each channel ``k`` of the layer the activation map ``A_k`` is upsampled
    bilinearly to the image size (``align_corners=True``, as pytorch-grad-cam),
    scaled to ``[0, 1]`` per image (``(U - min) / (max - min + 1e-8)``) and
    multiplied into the image; the model scores the masked image. The channel
    weights are the softmax over channels of those scores, and the map is
    ``ReLU(sum_k w_k A_k)``. This is pytorch-grad-cam's rule (its maps agree to
    float64 precision, see ``tests/test_reference.py``); the authors' code
    weights by the softmax class probability instead, and the paper subtracts a
    baseline score, which the softmax over channels cancels.

    Args:
        model: the classifier, in eval mode.
        layers: the layer(s) to explain.
        reshape: optional token reshape.
        element: index or key of a tuple/dict layer output.
        batch_size: masked images per forward batch (the memory bound: about
            ``batch_size`` images' forward activations at a time). 16 is the
            fastest of 8 ... 64 on a 2-core CPU (``benchmarks/bench_perturbation.py``);
            a GPU wants more.
        top_k: score only the ``k`` channels of largest mean activation per
            image; the others get weight 0 (``None``: all channels).

    Cost: one forward per image and scored channel (a ResNet-18 at ``layer4``:
    512 per image); constant channels share one forward of the zero image.
    ``targets`` may be any :data:`camseg.Targets`; a batch callable is applied to
    the logits of each batch of masked images and must act row by row.

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
        >>> maps = camseg.ScoreCAM(model, "1")(torch.rand(2, 3, 16, 16), targets=1)
        >>> maps.shape, bool(maps.min() >= 0), bool(maps.max() <= 1)
        (torch.Size([2, 16, 16]), True, True)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
        batch_size: int = 16,
        top_k: int | None = None,
    ) -> None:
        super().__init__(
            model, layers, reshape=reshape, element=element, batch_size=batch_size, top_k=top_k
        )

    def _weights(self, job: _Job) -> torch.Tensor:
        images, a, base, scorer, chosen = job.images, job.acts, job.base, job.scorer, job.chosen
        b_all, c = a.shape[:2]
        flat = a.flatten(2)
        constant = flat.amax(dim=2) == flat.amin(dim=2)
        scores = _empty_scores(base, c)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        for pairs in (chosen & ~constant).nonzero().split(self.batch_size):
            b, k = pairs[:, 0], pairs[:, 1]
            up = F.interpolate(a[b, k][:, None], size=size, mode="bilinear", align_corners=True)
            lo = up.amin(dim=(2, 3), keepdim=True)
            hi = up.amax(dim=(2, 3), keepdim=True)
            masks = (up - lo) / (hi - lo + 1e-8)
            out = _run_model(self.model, images[b] * masks.to(images.dtype))
            scores[b, k] = scorer(out, b)
        if bool((chosen & constant).any()):
            # a constant channel masks the image to zero: one forward for all of them
            out = _run_model(self.model, torch.zeros_like(images[:1]))
            rows = torch.arange(b_all, device=out.device)
            zero = scorer(out.expand(b_all, *out.shape[1:]), rows)
            scores = torch.where(
                constant.view(*constant.shape, *([1] * (scores.ndim - 2))),
                zero.unsqueeze(1).expand_as(scores),
                scores,
            )
        mask = chosen.view(*chosen.shape, *([1] * (scores.ndim - 2))).expand_as(scores)
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)


class AblationCAM(_PerturbationCAM):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020), batched.

    Each channel ``k`` of the layer's output is set to ``ablation_value`` and the
    layers above are run again; the channel's weight is the relative drop of the
    target score, ``w_k = (y - y_k) / |y|`` (``y - y_k`` when ``y = 0``), and the
    map is ``ReLU(sum_k w_k A_k)``. For a positive score this is the paper's
    ``(y - y_k) / y`` and pytorch-grad-cam's rule; dividing by ``|y|`` keeps
    "the score dropped" meaning "important" for negative scores as well.

    Only the network above the layer runs again (see the module notes), so at a
    late layer (``layer4`` of a ResNet) one call costs little more than one
    forward pass.

    Args:
        model: the classifier, in eval mode.
        layers: the layer(s) to explain; outputs must be ``(B, C, h, w)`` (token
            layers are not supported).
        element: index or key of a tuple/dict layer output.
        batch_size: ablated copies per forward batch: that many rows of the
            layers above (or, on the fallback, that many images' forward
            activations). Larger is faster: each batch runs the layers below
            once.
        top_k: ablate only the ``k`` channels of largest mean activation per
            image; the others get weight 0 (``None``: all channels).
        ablation_value: the value an ablated channel takes. ``0`` is the
            paper's. pytorch-grad-cam uses 0 when the layer's minimum is 0 (ReLU
            outputs: the maps are equal) and otherwise a value below the minimum
            that it lowers by ``1e7`` from one copy to the next, which no fixed
            value reproduces.

    Raises:
        ValueError: if ``reshape`` is given, or ``ablation_value`` is not finite.

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
        >>> camseg.AblationCAM(model, "1")(torch.rand(2, 3, 16, 16), targets=1).shape
        torch.Size([2, 16, 16])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
        batch_size: int = 128,
        top_k: int | None = None,
        ablation_value: float = 0.0,
    ) -> None:
        if reshape is not None:
            raise ValueError(
                "Expected `reshape=None` for AblationCAM: it ablates channels of (B, C, h, w) "
                f"layer outputs, but got {describe(reshape)}. Hint: ScoreCAM takes `reshape=`."
            )
        if (
            isinstance(ablation_value, bool)
            or not isinstance(ablation_value, (int, float))
            or not math.isfinite(ablation_value)
        ):
            raise ValueError(
                f"Expected `ablation_value` to be a finite number, but got {ablation_value!r}."
            )
        super().__init__(
            model, layers, reshape=None, element=element, batch_size=batch_size, top_k=top_k
        )
        self.ablation_value = float(ablation_value)
        self._replay_above: dict[str, bool] = {}

    def _weights(self, job: _Job) -> torch.Tensor:
        images, raw, a, base, scorer, chosen = (
            job.images,
            job.raw,
            job.acts,
            job.base,
            job.scorer,
            job.chosen,
        )
        b_all, c = a.shape[:2]
        ablated = base.unsqueeze(1).expand(b_all, c, *base.shape[1:]).clone()  # unablated: w = 0
        for b in range(b_all):
            channels = chosen[b].nonzero().squeeze(1)
            for ks in channels.split(self.batch_size):
                rows = raw[b].expand(len(ks), *raw.shape[1:]).clone()
                rows[torch.arange(len(ks), device=rows.device), ks] = self.ablation_value
                out = self._replay(job, images[b : b + 1], raw[b], rows, job.logits[b])
                image_of_rows = torch.full((len(ks),), b, dtype=torch.long, device=out.device)
                ablated[b, ks] = scorer(out, image_of_rows)
        scale = base.abs()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return (base.unsqueeze(1) - ablated) / scale.unsqueeze(1)

    def _replay(
        self,
        job: _Job,
        image: torch.Tensor,
        unablated: torch.Tensor,
        rows: torch.Tensor,
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of the model with the layer's output replaced by ``rows`` (one image)."""
        name, module = job.name, job.module
        if self._replay_above.get(name, True):
            first = name not in self._replay_above
            given = torch.cat([unablated[None], rows]) if first else rows
            try:
                out = _forward_with_output(self.model, module, image, given, self._capture.element)
            except RuntimeError:
                out = None  # a tensor from below does not broadcast over the copies
            ok = isinstance(out, torch.Tensor) and out.shape[:1] == given.shape[:1]
            if ok and first:
                assert isinstance(out, torch.Tensor)
                ok = _close(out[0], logits)
                out = out[1:]
            self._replay_above[name] = ok
            if ok:
                assert isinstance(out, torch.Tensor)
                return out
        copies = image.expand(len(rows), *image.shape[1:])
        return _forward_with_output(self.model, module, copies, rows, self._capture.element)


def _forward_with_output(
    model: nn.Module,
    module: nn.Module,
    images: torch.Tensor,
    output: torch.Tensor,
    element: Element,
) -> Any:
    """``model(images)`` with ``module``'s output (its ``element``) replaced by ``output``."""

    def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
        return replace_element(out, element, output)

    handle = module.register_forward_hook(hook)
    try:
        return _run_model(model, images)
    finally:
        handle.remove()


def _close(replayed: torch.Tensor, expected: torch.Tensor) -> bool:
    """True when the replayed unablated logits equal the real ones up to rounding."""
    if not isinstance(expected, torch.Tensor) or replayed.shape != expected.shape:
        return False
    r, e = _as_float(replayed), _as_float(expected)
    tol = float(torch.finfo(e.dtype).eps) ** 0.5 * (1.0 + float(e.abs().max()))
    return bool((r - e).abs().max() <= tol)
