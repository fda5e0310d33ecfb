"""Metrics on tensors: segmentation, classification, faithfulness, localization, sanity.

Functions take tensors on any device and return tensors on the same device.
One vocabulary throughout: ``preds`` are predictions, ``masks`` true pixel
masks, ``labels`` image-level classes, ``targets`` the class a map explains,
``images`` the model inputs. Every metric reduces over the batch with
``average=``: ``"micro"`` pools the counts (the default wherever counts can be
pooled: segmentation), ``"macro"`` averages per-image values (the default where
only those exist: localization, faithfulness), ``"none"`` keeps them.
Segmentation metrics work on bool masks ``(B, H, W)`` with an explicit
``zero_division=`` rule for a zero denominator; dataset-level numbers add
counts (:class:`SegmentationCounter`), never averages of averages unless
asked. Classification metrics equal scikit-learn's. Faithfulness metrics call
the model in chunks, batched over images and perturbation steps; ROAD imputes
the removed pixels with a batched multigrid-preconditioned solver on the
images' device.
"""

from camseg.metrics._aggregation import aggregate, estimated_tumor_area
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
from camseg.metrics._localization import (
    energy_pointing_game,
    label_region_energy,
    pointing_game,
)
from camseg.metrics._road import noisy_linear_imputation, road_auc, road_curve
from camseg.metrics._sanity import ExplainFn, randomization_similarity, spearman
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
    "ExplainFn",
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
    "estimated_tumor_area",
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
    "randomization_similarity",
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
