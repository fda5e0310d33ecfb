"""Metrics on tensors: segmentation, classification, faithfulness, localisation, sanity.

Functions take tensors on any device and return tensors on the same device.
Segmentation metrics work on bool masks ``(B, H, W)`` with explicit reductions
(``"none"``, ``"micro"``, ``"macro"``) and an explicit ``empty=`` rule for a
zero denominator; dataset-level numbers add counts (:class:`SegmentationCounter`),
never averages of averages unless asked. Classification metrics equal
scikit-learn's. Faithfulness metrics call the model in chunks, batched over
images and perturbation steps; ROAD imputes the removed pixels with a batched
multigrid-preconditioned solver on the images' device.
"""

from camseg.metrics._aggregation import aggregate, estimated_tumour_area
from camseg.metrics._classification import (
    BinaryStats,
    average_precision,
    binary_stats,
    cohen_kappa,
    confusion_matrix,
    expected_calibration_error,
    nll,
    roc_auc,
    roc_curve,
    youden_threshold,
)
from camseg.metrics._faithfulness import (
    average_drop,
    deletion_auc,
    deletion_curve,
    increase_in_confidence,
    insertion_auc,
    insertion_curve,
)
from camseg.metrics._localisation import (
    energy_pointing_game,
    label_region_energy,
    pointing_game,
)
from camseg.metrics._road import noisy_linear_imputation, road_auc, road_curve
from camseg.metrics._sanity import randomisation_similarity, spearman
from camseg.metrics._segmentation import (
    METRIC_NAMES,
    SegmentationCounter,
    confusion_counts,
    dice,
    fall_out,
    iou,
    pixel_accuracy,
    pixel_auroc,
    pixel_average_precision,
    precision,
    recall,
    specificity,
    threshold_curve,
)

__all__ = [
    "METRIC_NAMES",
    "BinaryStats",
    "SegmentationCounter",
    "aggregate",
    "average_drop",
    "average_precision",
    "binary_stats",
    "cohen_kappa",
    "confusion_counts",
    "confusion_matrix",
    "deletion_auc",
    "deletion_curve",
    "dice",
    "energy_pointing_game",
    "estimated_tumour_area",
    "expected_calibration_error",
    "fall_out",
    "increase_in_confidence",
    "insertion_auc",
    "insertion_curve",
    "iou",
    "label_region_energy",
    "nll",
    "noisy_linear_imputation",
    "pixel_accuracy",
    "pixel_auroc",
    "pixel_average_precision",
    "pointing_game",
    "precision",
    "randomisation_similarity",
    "recall",
    "road_auc",
    "road_curve",
    "roc_auc",
    "roc_curve",
    "spearman",
    "specificity",
    "threshold_curve",
    "youden_threshold",
]
