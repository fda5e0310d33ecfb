# Type stub of the C extension camseg._cpu (src/camseg/_cpu.c); see camseg._native.
from typing import Any

def range_f32(maps: Any, b: int, n: int, lo: Any, hi: Any, /) -> bool: ...
def otsu_f32(
    maps: Any,
    b: int,
    h: int,
    w: int,
    keep: Any | None,
    nbins: int,
    min_size: int,
    out: Any | None,
    connectivity: int,
    lo: Any,
    hi: Any,
    thr: Any,
    /,
) -> bool: ...
def histogram_f32(maps: Any, b: int, n: int, nbins: int, counts: Any, /) -> None: ...
def small_objects(
    masks: Any, b: int, h: int, w: int, min_size: int, connectivity: int, /
) -> None: ...
