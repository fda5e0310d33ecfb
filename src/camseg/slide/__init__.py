"""Slide scale: region readers, tissue tiles, sliding-window CAMs, slide and patient decisions.

- Reading: :func:`open_slide` (OpenSlide or tifffile) -> :class:`RegionReader`
  (protocol), :class:`ArrayReader`, :class:`TiffReader`, :class:`OpenSlideReader`.
- Annotations in: :func:`read_annotations` (ASAP XML, GeoJSON) -> :class:`Annotation`
  -> :func:`annotation_mask`.
- Heatmaps and masks out: :func:`write_geojson` (QuPath), :func:`write_tiff_overlay`
  (pyramidal TIFF), :func:`mask_polygons`.
- Tissue: :class:`TissueFilter`, :func:`tissue_fraction`,
  :func:`laplacian_variance`, :func:`slide_tissue_mask`.
- Sliding windows: :func:`tile_grid`, :func:`blend_window`, :func:`read_tiles`,
  :func:`select_level`, :func:`sliding_window` -> :class:`SlideMaps` -> :func:`slide_mask`.
- Decisions: :func:`slide_metrics` (Youden threshold), :func:`tumor_regions`,
  :func:`node_class`, :func:`pn_stage`, :func:`patient_stages`,
  :func:`stage_kappa`, :func:`downsample_mask`.
- Splits: :func:`group_split` (no patient in two splits).
- Demo data: :func:`make_slide` -> :class:`SyntheticSlide` (exact tumour mask).
- Scale-out: :func:`run_sharded`, :func:`merge_slide_maps`, :func:`shard_indices`,
  :func:`dist_info`, :func:`atomic_save`.
"""

from camseg.slide._annotations import (
    EXCLUDE_GROUPS,
    Annotation,
    annotation_mask,
    read_annotations,
)
from camseg.slide._decisions import (
    NODE_CLASSES,
    PN_STAGES,
    SlideMetrics,
    TumorRegions,
    downsample_mask,
    node_class,
    patient_stages,
    pn_stage,
    slide_metrics,
    stage_kappa,
    tumor_regions,
)
from camseg.slide._distributed import (
    atomic_save,
    dist_info,
    merge_slide_maps,
    run_sharded,
)
from camseg.slide._export import mask_polygons, write_geojson, write_tiff_overlay
from camseg.slide._open import open_slide, openslide_available
from camseg.slide._readers import (
    MAX_REGION_PIXELS,
    ArrayReader,
    OpenSlideReader,
    RegionReader,
    TiffReader,
    check_reader,
    check_region,
)
from camseg.slide._sliding import (
    MAX_TILES,
    CAMExtractor,
    SlideMaps,
    blend_window,
    read_tiles,
    select_level,
    slide_mask,
    sliding_window,
    tile_grid,
)
from camseg.slide._splits import group_split, shard_indices
from camseg.slide._synthetic import SyntheticSlide, make_slide
from camseg.slide._tissue import (
    TissueFilter,
    laplacian_variance,
    slide_tissue_mask,
    tissue_fraction,
)

__all__ = [
    "EXCLUDE_GROUPS",
    "MAX_REGION_PIXELS",
    "MAX_TILES",
    "NODE_CLASSES",
    "PN_STAGES",
    "Annotation",
    "ArrayReader",
    "CAMExtractor",
    "OpenSlideReader",
    "RegionReader",
    "SlideMaps",
    "SlideMetrics",
    "SyntheticSlide",
    "TiffReader",
    "TissueFilter",
    "TumorRegions",
    "annotation_mask",
    "atomic_save",
    "blend_window",
    "check_reader",
    "check_region",
    "dist_info",
    "downsample_mask",
    "group_split",
    "laplacian_variance",
    "make_slide",
    "mask_polygons",
    "merge_slide_maps",
    "node_class",
    "open_slide",
    "openslide_available",
    "patient_stages",
    "pn_stage",
    "read_annotations",
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
    "tumor_regions",
    "write_geojson",
    "write_tiff_overlay",
]
