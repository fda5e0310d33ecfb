"""From class-activation maps to masks: thresholds, gating, tissue, morphology, CRF.

Every function works on a batch, on the maps' device: thresholds return one
value per image, ``(B,)``, and the caller compares (``maps >= t[:, None, None]``);
masks are ``torch.bool`` tensors ``(B, H, W)``. :func:`cams_to_masks` chains the
pieces into one call. Connected-component operations cross a clear CPU boundary
(one :func:`scipy.ndimage.label` call for the whole batch); everything else
stays in torch.
"""

from camseg import _native
from camseg.postprocess._crf import crf_refine
from camseg.postprocess._gate import gate
from camseg.postprocess._morphology import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    fill_holes,
    keep_largest_component,
    remove_small_objects,
)
from camseg.postprocess._pipeline import cams_to_masks
from camseg.postprocess._pseudo import pseudo_masks
from camseg.postprocess._thresholds import (
    best_threshold,
    threshold_fixed,
    threshold_otsu,
    threshold_percentile,
)
from camseg.postprocess._tissue import tissue_mask

__all__ = [
    "best_threshold",
    "binary_closing",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "cams_to_masks",
    "crf_refine",
    "fill_holes",
    "gate",
    "keep_largest_component",
    "native_kernels",
    "pseudo_masks",
    "remove_small_objects",
    "threshold_fixed",
    "threshold_otsu",
    "threshold_percentile",
    "tissue_mask",
]


def native_kernels() -> bool:
    """Whether the compiled CPU kernels (Otsu, map range, small objects) are in use.

    They are an optional speed-up of the CPU paths with the same results; they are off
    when the extension was not built or ``CAMSEG_NO_NATIVE=1`` was set before import.
    Benchmarks record this value next to their timings.

    Returns:
        True when the kernels are built and enabled.

    Example:
        >>> isinstance(native_kernels(), bool)
        True
    """
    return _native.available()
