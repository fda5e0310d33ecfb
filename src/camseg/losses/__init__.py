"""CAM-regularisation losses: train a classifier so that its maps segment tumour.

Each loss is a pure function plus a thin :class:`torch.nn.Module` holding its
hyper-parameters. Losses on the maps of the current forward pass cost no extra
pass (:func:`suppression_loss`, :func:`center_evidence_loss`, :func:`size_loss`,
:func:`smoothness_loss`, :func:`mask_loss`); those that need more forward passes
take a ``cam_fn: images -> maps`` or ``score_fn: images -> scores`` so they work
with any extractor (:func:`equivariance_loss`, :func:`puzzle_loss`,
:func:`attention_mining_loss`). :class:`CAMRegularizer` sums named losses with
weights and warm-up ramps.

All losses are ``>= 0``, zero at their optimum, differentiable, and computed in
float32 or float64 (half-precision inputs under autocast are promoted).
"""

from camseg._checks import Reduction
from camseg.losses._common import CamFn, Region, ScoreFn
from camseg.losses._consistency import (
    AttentionMiningLoss,
    EquivarianceLoss,
    PuzzleLoss,
    attention_mining_loss,
    equivariance_loss,
    puzzle_loss,
)
from camseg.losses._dense import MaskLoss, SmoothnessLoss, mask_loss, smoothness_loss
from camseg.losses._mil import (
    MILLoss,
    Pooling,
    PseudoMaskLoss,
    mil_loss,
    mil_pool,
    pseudo_mask_loss,
)
from camseg.losses._region import (
    CenterEvidenceLoss,
    SizeLoss,
    SuppressionLoss,
    center_evidence_loss,
    region_mask,
    size_loss,
    suppression_loss,
)
from camseg.losses._regularizer import CAMRegularizer, RegularizerOutput

__all__ = [
    "AttentionMiningLoss",
    "CAMRegularizer",
    "CamFn",
    "CenterEvidenceLoss",
    "EquivarianceLoss",
    "MILLoss",
    "MaskLoss",
    "Pooling",
    "PseudoMaskLoss",
    "PuzzleLoss",
    "Reduction",
    "Region",
    "RegularizerOutput",
    "ScoreFn",
    "SizeLoss",
    "SmoothnessLoss",
    "SuppressionLoss",
    "attention_mining_loss",
    "center_evidence_loss",
    "equivariance_loss",
    "mask_loss",
    "mil_loss",
    "mil_pool",
    "pseudo_mask_loss",
    "puzzle_loss",
    "region_mask",
    "size_loss",
    "smoothness_loss",
    "suppression_loss",
]
