"""camseg: class-activation maps for computational pathology.

Explain patch classifiers with CAMs (Grad-CAM, Grad-CAM++ and relatives),
train them so those maps become weakly-supervised tumour segmentations, turn
maps into masks and measure all of it -- in torch, batched, on the caller's
device, differentiable on request.

Public entry points:

- :class:`camseg.GradCAM` and the other extractors, :class:`camseg.LayerCapture`,
  :func:`camseg.list_layers`;
- :mod:`camseg.functional`: pure tensor maths for CAM weightings and map ops;
- :mod:`camseg.losses`: CAM-regularisation losses;
- :mod:`camseg.postprocess`: CAM-to-mask post-processing;
- :mod:`camseg.metrics`: segmentation, classification, faithfulness and
  localisation metrics;
- :mod:`camseg.synthetic`: PCam-like synthetic patches with exact masks;
- :mod:`camseg.slide`: slide-scale tiling, stitching and patient decisions;
- :mod:`camseg.viz`: overlays of maps and masks as uint8 tensors.
"""

from camseg import functional, losses, metrics, postprocess, slide, synthetic, viz
from camseg._targets import Targets
from camseg.attention import AttentionRelevance, AttentionRollout
from camseg.capture import CAMWarning, LayerCapture, LayerInfo, list_layers
from camseg.extractors import (
    BaseCAM,
    CAMResult,
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    LinearCAM,
    XGradCAM,
)
from camseg.fullgrad import FullGrad
from camseg.perturbation import AblationCAM, ScoreCAM

__version__ = "0.1.0.dev0"

__all__ = [
    "AblationCAM",
    "AttentionRelevance",
    "AttentionRollout",
    "BaseCAM",
    "CAMResult",
    "CAMWarning",
    "EigenCAM",
    "EigenGradCAM",
    "FullGrad",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "LayerCapture",
    "LayerInfo",
    "LinearCAM",
    "ScoreCAM",
    "Targets",
    "XGradCAM",
    "__version__",
    "functional",
    "list_layers",
    "losses",
    "metrics",
    "postprocess",
    "slide",
    "synthetic",
    "viz",
]
