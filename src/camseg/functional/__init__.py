"""Pure tensor maths for class-activation maps: no hooks, no state.

:mod:`camseg.functional` holds the CAM weightings (functions of activations
and gradients) and the operations on maps. The extractors in :mod:`camseg` only
wire hooks and call these functions, so a map computed by an extractor equals
the function applied to the captured tensors.
"""

from camseg.functional.maps import NormalizeMode, normalize, tokens_to_grid, upsample
from camseg.functional.weights import (
    eigencam,
    gradcam,
    gradcam_pp,
    hirescam,
    layercam,
    linear_cam,
    xgradcam,
)

__all__ = [
    "NormalizeMode",
    "eigencam",
    "gradcam",
    "gradcam_pp",
    "hirescam",
    "layercam",
    "linear_cam",
    "normalize",
    "tokens_to_grid",
    "upsample",
    "xgradcam",
]
