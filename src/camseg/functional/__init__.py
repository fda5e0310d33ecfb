"""Pure tensor maths for class-activation maps: no hooks, no state.

:mod:`camseg.functional` holds the CAM weightings (functions of activations
and gradients), the operations on maps, and the one Gaussian blur that the
faithfulness metrics and tissue detection share. The extractors in
:mod:`camseg` only wire hooks and call these functions, so a map computed by an
extractor equals the function applied to the captured tensors.
"""

from camseg.functional.filters import gaussian_blur
from camseg.functional.maps import NormalizeMode, normalize, tokens_to_grid, upsample
from camseg.functional.transforms import Group, apply_transform, transform_group, transform_mean
from camseg.functional.weights import (
    eigencam,
    eigengradcam,
    gradcam,
    gradcam_elementwise,
    gradcam_pp,
    hirescam,
    layercam,
    linear_cam,
    xgradcam,
)

__all__ = [
    "Group",
    "NormalizeMode",
    "apply_transform",
    "eigencam",
    "eigengradcam",
    "gaussian_blur",
    "gradcam",
    "gradcam_elementwise",
    "gradcam_pp",
    "hirescam",
    "layercam",
    "linear_cam",
    "normalize",
    "tokens_to_grid",
    "transform_group",
    "transform_mean",
    "upsample",
    "xgradcam",
]
