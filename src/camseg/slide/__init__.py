"""Slide scale: region readers, tissue tiles, sliding-window CAMs, slide and patient decisions.

- Reading: :class:`RegionReader` (protocol), :class:`ArrayReader`,
  :class:`TiffReader`, :class:`OpenSlideReader`.
- Tissue: :class:`TissueFilter`, :func:`tissue_fraction`,
  :func:`laplacian_variance`, :func:`slide_tissue_mask`.
- Sliding windows: :func:`tile_grid`, :func:`blend_window`, :func:`read_tiles`,
  :func:`select_level`, :func:`sliding_window` -> :class:`SlideMaps` -> :func:`slide_mask`.
- Decisions: :func:`slide_metrics` (Youden threshold), :func:`tumour_regions`,
  :func:`node_class`, :func:`pn_stage`, :func:`patient_stages`,
  :func:`stage_kappa`, :func:`downsample_mask`.
- Splits: :func:`group_split` (no patient in two splits).
- Demo data: :func:`make_slide` -> :class:`SyntheticSlide` (exact tumour mask).
- Scale-out: :func:`run_sharded`, :func:`merge_slide_maps`, :func:`shard_indices`,
  :func:`dist_info`, :func:`atomic_save`.
"""

from camseg.slide._decisions import (
    NODE_CLASSES,
    PN_STAGES,
    SlideMetrics,
    TumourRegions,
    downsample_mask,
    node_class,
    patient_stages,
    pn_stage,
    slide_metrics,
    stage_kappa,
    tumour_regions,
)
from camseg.slide._distributed import (
    atomic_save,
    dist_info,
    merge_slide_maps,
    run_sharded,
    shard_indices,
)
from camseg.slide._readers import (
    ArrayReader,
    OpenSlideReader,
    RegionReader,
    TiffReader,
    check_region,
)
from camseg.slide._sliding import (
    SlideMaps,
    blend_window,
    read_tiles,
    select_level,
    slide_mask,
    sliding_window,
    tile_grid,
)
from camseg.slide._splits import group_split
from camseg.slide._synthetic import SyntheticSlide, make_slide
from camseg.slide._tissue import (
    TissueFilter,
    laplacian_variance,
    slide_tissue_mask,
    tissue_fraction,
)

__all__ = [
    "NODE_CLASSES",
    "PN_STAGES",
    "ArrayReader",
    "OpenSlideReader",
    "RegionReader",
    "SlideMaps",
    "SlideMetrics",
    "SyntheticSlide",
    "TiffReader",
    "TissueFilter",
    "TumourRegions",
    "atomic_save",
    "blend_window",
    "check_region",
    "dist_info",
    "downsample_mask",
    "group_split",
    "laplacian_variance",
    "make_slide",
    "merge_slide_maps",
    "node_class",
    "patient_stages",
    "pn_stage",
    "read_tiles",
    "run_sharded",
    "select_level",
    "shard_indices",
    "slide_mask",
    "slide_metrics",
    "slide_tissue_mask",
    "sliding_window",
    "stage_kappa",
    "tile_grid",
    "tissue_fraction",
    "tumour_regions",
]
