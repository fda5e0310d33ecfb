r"""CAM regularization during training, built from :mod:`camseg.losses`.

For a global-average-pool + linear head with two logits the difference of the
two class-activation maps plus the bias difference is a per-location logit
whose spatial mean is the image's logit difference. Its sigmoid is a map of
per-location tumor probabilities on a fixed scale, which is what the
region losses need (a per-image min-max normalised CAM can never be zero):

.. math::

    P_b(p) = \sigma\big((w_1 - w_0)^\top A_b(p) + (b_1 - b_0)\big),

computed with :func:`camseg.functional.linear_cam` (``relu=False``) from the
features of the same forward pass, so the terms cost no extra backbone pass
(except equivariance, which needs the maps of a transformed batch).

Terms (weights set by ``--cam NAME=WEIGHT`` or a ``[cam]`` TOML table):

- ``suppression``: :class:`camseg.losses.SuppressionLoss`, no tumor evidence
  in the centre 32×32 of negatives;
- ``center_evidence``: :class:`camseg.losses.CenterEvidenceLoss`, strong
  evidence in the centre of positives;
- ``size``: :class:`camseg.losses.SizeLoss`, the tumor area of positives
  within bounds;
- ``smoothness``: :class:`camseg.losses.SmoothnessLoss`, total variation;
- ``equivariance``: :class:`camseg.losses.EquivarianceLoss`, maps of a rotated
  or flipped batch equal the rotated or flipped maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from camseg import functional as CF
from camseg import losses as L
from camseg_pcam._validate import check_nonnegative, check_one_of
from camseg_pcam.models import GAPClassifier

__all__ = ["CAM_TERMS", "CamRegularizer", "tumor_probability_maps"]

CAM_TERMS: tuple[str, ...] = (
    "suppression",
    "center_evidence",
    "size",
    "smoothness",
    "equivariance",
)


def tumor_probability_maps(model: GAPClassifier, features: torch.Tensor) -> torch.Tensor:
    """Per-location tumor probabilities of a two-logit GAP classifier.

    Args:
        model: the classifier (its ``fc`` head has 2 outputs).
        features: the CAM layer's activations ``(B, C, h, w)``.

    Returns:
        ``(B, h, w)`` float32 maps in (0, 1); their logit's spatial mean is the
        image's logit difference.

    Raises:
        ValueError: if the head does not have 2 outputs.

    Example:
        >>> from camseg_pcam.models import build_model
        >>> _ = torch.manual_seed(0)
        >>> m = build_model("small", width=4)
        >>> logits, feats = m.forward_features(torch.rand(2, 3, 32, 32))
        >>> p = tumor_probability_maps(m, feats)
        >>> torch.allclose(torch.logit(p.double()).mean((1, 2)).float(),
        ...                logits[:, 1] - logits[:, 0], atol=1e-4)
        True
    """
    weight, bias = model.fc.weight, model.fc.bias
    if weight.shape[0] != 2:
        raise ValueError(
            f"Expected a head with 2 outputs, but got {weight.shape[0]}. "
            "Hint: build the model with num_classes=2."
        )
    feats = features.float()
    b = feats.shape[0]
    ones = torch.ones(b, dtype=torch.long, device=feats.device)
    diff = CF.linear_cam(feats, weight.float(), ones, relu=False) - CF.linear_cam(
        feats, weight.float(), torch.zeros_like(ones), relu=False
    )
    return torch.sigmoid(diff + (bias[1] - bias[0]).float())


class CamRegularizer:
    """The CAM-regularization terms of a run, as one :class:`camseg.losses.CAMRegularizer`.

    Args:
        weights: ``{term: weight}`` with terms from :data:`CAM_TERMS`.
        size: upsample the maps to ``size × size`` before the losses (0: keep the
            feature resolution).
        warmup_steps: linear warm-up of every weight over this many steps.
        size_bounds: the area bounds of the size term.

    Raises:
        ValueError: for an unknown term or a negative weight.

    Example:
        >>> from camseg_pcam.models import build_model
        >>> _ = torch.manual_seed(0)
        >>> m = build_model("small", width=4)
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
        >>> reg = CamRegularizer({"suppression": 1.0, "smoothness": 0.1})
        >>> total, parts = reg(m, x, m.forward_features(x)[1], y)
        >>> sorted(parts), bool(total >= 0)
        (['smoothness', 'suppression'], True)
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        *,
        size: int = 0,
        warmup_steps: int = 0,
        size_bounds: tuple[float, float] = (0.02, 0.9),
    ) -> None:
        factories: dict[str, Callable[[], nn.Module]] = {
            "suppression": L.SuppressionLoss,
            "center_evidence": L.CenterEvidenceLoss,
            "size": lambda: L.SizeLoss(bounds=size_bounds),
            "smoothness": L.SmoothnessLoss,
            "equivariance": lambda: L.EquivarianceLoss(transforms="d4", sample=1),
        }
        terms: dict[str, tuple[Callable[..., torch.Tensor], float]] = {}
        for name, w in weights.items():
            check_one_of(name, "cam", CAM_TERMS)
            check_nonnegative(w, f"cam[{name!r}]")
            terms[name] = (factories[name](), float(w))
        self.weights = dict(weights)
        self.size = size
        self.regularizer = L.CAMRegularizer(terms, warmup=warmup_steps)

    def maps(self, model: GAPClassifier, features: torch.Tensor) -> torch.Tensor:
        """The maps the losses see: tumor probabilities, upsampled if asked.

        Args:
            model: the (unwrapped) classifier.
            features: ``(B, C, h, w)`` activations.

        Returns:
            ``(B, h, w)`` or ``(B, size, size)`` maps in (0, 1).
        """
        p = tumor_probability_maps(model, features)
        if self.size:
            p = CF.upsample(p, (self.size, self.size))
        return p

    def __call__(
        self,
        model: GAPClassifier,
        images: torch.Tensor,
        features: torch.Tensor,
        labels: torch.Tensor,
        *,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum of the terms and each term (unweighted).

        Args:
            model: the (unwrapped) classifier that produced ``features``.
            images: the batch ``(B, 3, H, W)`` (for the equivariance term).
            features: the CAM layer's activations ``(B, C, h, w)``.
            labels: ``(B,)`` 0/1 labels.
            step: the optimiser step (for warm-up).
            generator: draws the equivariance transform.

        Returns:
            ``(total, {term: value})``.
        """
        maps = self.maps(model, features)

        def cam_fn(x: torch.Tensor) -> torch.Tensor:
            return self.maps(model, model.forward_features(x)[1])

        total, parts = self.regularizer(
            maps=maps,
            labels=labels,
            images=images,
            cam_fn=cam_fn,
            generator=generator,
            step=step,
        )
        return total, dict(parts)
